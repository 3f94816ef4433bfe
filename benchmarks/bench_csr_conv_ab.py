"""Direct sparse convolution, another checkout's csr_conv2d against this one's, in one process.

Issue 20 (session 7) changed csr_conv2d's tile from 4 to 8 output rows and made it read each
nonzero's input offset from a per-call table (csr_conv_offsets) instead of decoding the tap.
This script builds the baseline kernel from a ``cl_kernels`` folder (e.g. ``git archive 712a590
cl_kernels | tar -x -C /tmp/base``; its csr_conv2d takes no offsets and tiles 4 x 8) and times
it, this checkout's ``csr_conv2d`` and the dense ``conv2d`` interleaved, round by round, at
ResNet-32's 3x3 shapes (batch 128, "same" padding) and a given density. Ratios are medians of
per-round ratios (wall time, or CPU time with --cpu-time), so a busy machine slows both sides.

    python benchmarks/bench_csr_conv_ab.py --baseline /tmp/base/cl_kernels --device 1:0
"""
from __future__ import annotations

import argparse
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pyopencl as cl

from minidnn.backend.opencl_backend import OpenCLBackend

SHAPES = [(16, 32), (32, 16), (64, 8)]   # ResNet-32's stages: channels, plane size


class BaselineCSRConv:
    """The baseline checkout's csr_conv2d (4 x 8 tiles, taps decoded in the loop), launched as
    its CSROps did for a stride-1 convolution whose input was padded to whole tiles first."""

    def __init__(self, be: OpenCLBackend, folder: str) -> None:
        self.be, self.rt, root = be, be.runtime, Path(folder)
        headers = "".join(h.read_text() for h in sorted(root.glob("*.h")))
        source = f"/* baseline {root} {zlib.crc32(headers.encode()):08x} */\n" + \
            (root / "csr_conv.cl").read_text()
        with warnings.catch_warnings():   # Intel's runtime logs on every build
            warnings.simplefilter("ignore", cl.CompilerWarning)
            prog = cl.Program(self.rt.context, source).build(options=["-I", str(root)])
        self.kernel = cl.Kernel(prog, "csr_conv2d")

    def conv2d(self, x, row_ptr, taps, values, o: int, pad: int):
        n, c, h, w = (int(s) for s in x.shape)
        oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
        hp, wp = -(-oh // 4) * 4 + 2, -(-ow // 8) * 8 + 2
        xp = self.be.sparse._pad_planes(x, hp, wp, pad)   # as the baseline padded (4-row tiles)
        y = self.rt.empty((n, o, oh, ow))
        blocks = -(-oh // 4) * -(-ow // 8)
        l0 = min(blocks, 16)
        local = (l0, 1, min(n, max(1, 16 // l0)))
        gs = tuple(-(-g // l) * l for g, l in zip((blocks, o, n), local))
        i32 = np.int32
        self.kernel(self.rt.queue, gs, local, xp.data, row_ptr.data, taps.data, values.data,
                    values.data, i32(0), y.data, i32(c), i32(hp), i32(wp), i32(o), i32(oh),
                    i32(ow), i32(3), i32(3), i32(1), i32(0), i32(1), i32(n), xp.data, i32(0),
                    i32(0), i32(1))
        return y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, help="the baseline's cl_kernels folder")
    ap.add_argument("--device", default="1:0")
    ap.add_argument("--density", type=float, default=0.4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--cpu-time", action="store_true", help="time.process_time, not wall time")
    args = ap.parse_args()
    if not 0 < args.density <= 1 or args.batch_size < 1 or args.rounds < 1:
        ap.error("--density in (0, 1], --batch-size and --rounds >= 1")
    clock = time.process_time if args.cpu_time else time.perf_counter
    be = OpenCLBackend(device=args.device)
    rt, base = be.runtime, BaselineCSRConv(be, args.baseline)
    rng = np.random.default_rng(0)
    print(f"device {be.device_name}; density {args.density}, batch {args.batch_size}, "
          f"median of {args.rounds} interleaved rounds ({'CPU' if args.cpu_time else 'wall'} time)")

    def timed(fn) -> float:
        rt.synchronize()
        t = clock()
        fn()
        rt.synchronize()
        return clock() - t

    for c, hw in SHAPES:
        x = be.from_host(rng.standard_normal((args.batch_size, c, hw, hw)).astype(np.float32))
        w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
        w[rng.random(w.shape) >= args.density] = 0
        wd = be.from_host(w)
        row_ptr, col_idx, values = be.csr_from_dense(be.from_host(w.reshape(c, -1)))
        taps = be.csr_conv_taps(col_idx, 3, 3)
        runs = {"dense": lambda: be.conv2d(x, wd, None, 1, 1),
                "old": lambda: base.conv2d(x, row_ptr, taps, values, c, 1),
                "new": lambda: be.csr_conv2d(x, row_ptr, taps, values, (c, 9 * c), None, 3, 3,
                                             1, 1, 1)}
        want = be.to_host(runs["dense"]())
        for name in ("old", "new"):
            err = float(np.abs(be.to_host(runs[name]()) - want).max())
            if err > 1e-3:
                raise SystemExit(f"{name} csr_conv2d differs from conv2d by {err}")
        t = {k: [] for k in runs}
        for _ in range(args.rounds):
            for k, fn in runs.items():
                t[k].append(timed(fn))
        med = {k: float(np.median(v)) for k, v in t.items()}
        ratio = lambda a, b: float(np.median(np.array(t[a]) / np.array(t[b])))
        print(f"{c:3d} ch {hw:2d}x{hw:<2d}  dense {1e3 * med['dense']:6.2f} ms  "
              f"csr old {1e3 * med['old']:6.2f}  new {1e3 * med['new']:6.2f}   "
              f"new/old {ratio('old', 'new'):.2f}x  old vs dense {ratio('dense', 'old'):.2f}x  "
              f"new vs dense {ratio('dense', 'new'):.2f}x", flush=True)


if __name__ == "__main__":
    main()
