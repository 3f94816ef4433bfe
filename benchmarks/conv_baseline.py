"""The forward / input-gradient direct convolution kernels of another checkout, for A/B runs.

``BaselineConv(backend, DIR)`` builds ``DIR/conv.cl`` (a ``cl_kernels`` folder, e.g. from
``git archive main cl_kernels | tar -x -C /tmp/main``) in the backend's OpenCL context and
launches its ``conv2d_k<KW>`` kernels (16 output channels x 8 pixels of one row per work-item)
as that checkout's ``ConvOps`` did, so old and new kernels can be timed in one process
(benchmarks/bench_conv_kernels.py, bench_conv_ab.py).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array  # noqa: F401  (cl.array)


class BaselineConv:
    """The forward / input-gradient kernels (conv2d_k<KW>, 16-channel tile) of another
    checkout's ``cl_kernels`` folder, built in ``be``'s context, launched as its ConvOps did."""

    def __init__(self, be, folder: str) -> None:
        self.rt, root = be.runtime, Path(folder)
        headers = "".join(h.read_text() for h in sorted(root.glob("*.h")))
        source = f"/* baseline {root} {zlib.crc32(headers.encode()):08x} */\n" + \
            (root / "conv.cl").read_text()
        self.prog = cl.Program(self.rt.context, source).build(options=["-I", str(root)])
        self.pack = cl.Kernel(self.prog, "conv2d_pack_w")
        self.kernels = {kw: cl.Kernel(self.prog, f"conv2d_k{kw}") for kw in (0, 3, 5)}
        self.buffers: dict[tuple, cl.array.Array] = {}  # packed filters, as the backend's scratch

    def _buffer(self, role: str, shape: tuple[int, ...]):
        key = (role, shape)
        if key not in self.buffers:
            self.buffers[key] = cl.array.empty(self.rt.queue, shape, np.float32)
        return self.buffers[key]

    def conv2d(self, x, w, bias, pad: int, groups: int):
        """As ConvOps.conv2d, with the baseline's kernels."""
        return self.run(x, w, bias, int(w.shape[0]), pad, groups, False)

    def conv2d_input_grad(self, dy, w, x_shape, pad: int, groups: int):
        """As ConvOps.conv2d_input_grad, with the baseline's kernels."""
        return self.run(dy, w, None, int(x_shape[1]), pad, groups, True)

    def run(self, x, w, bias, out_channels: int, pad: int, groups: int, transposed: bool):
        """conv2d(x, w) + bias (transposed: the input gradient of a layer with filters w, x =
        dy)."""
        o, cg, kh, kw = (int(s) for s in w.shape)
        n, c, h, wd = (int(s) for s in x.shape)
        cog, cig = (cg, o // groups) if transposed else (o // groups, cg)
        pad_y, pad_x = (kh - 1 - pad, kw - 1 - pad) if transposed else (pad, pad)
        nob = -(-cog // 16)
        wp = self._buffer("wp", (groups * nob * cig * kh * kw * 16,))
        ob = (np.int32(16),) if self.pack.num_args == 8 else ()  # later packs take OB
        self.pack(self.rt.queue, (-(-cig // 8) * 8, groups * nob), (8, 1), w.data,
                  *(np.int32(v) for v in (groups, cog, cig, kh * kw, int(transposed))), *ob,
                  wp.data)
        oh, ow = h + 2 * pad_y - kh + 1, wd + 2 * pad_x - kw + 1
        y = self.rt.empty((n, out_channels, oh, ow))  # as the backend allocates its output
        blocks = oh * -(-ow // 8)
        name = f"conv2d_k{kw if kw in (3, 5) else 0}"
        event = self.kernels[kw if kw in (3, 5) else 0](
            self.rt.queue, (-(-blocks // 8) * 8, groups * nob, n), (8, 1, 1), x.data,
            wp.data, wp.data if bias is None else bias.data, np.int32(bias is not None), y.data,
            *(np.int32(v) for v in (c, h, wd, out_channels, oh, ow, kh, kw, pad_y, pad_x,
                                    groups, n)))
        if self.rt.kernel_events is not None:  # a profiling backend: counted as its own
            self.rt.kernel_events.append((f"base:{name}", event))
        return y
