"""OpenCL dense direct convolution with stride 1, the ``ConvOps`` group of OpenCLBackend.

``conv2d`` computes a stride-1 convolution straight from the NCHW input: no im2row buffer
(at ResNet-32's first stage, 75 MB per layer and batch of 128), no GEMM output to transpose
back to NCHW, the bias added in the same pass. ``conv2d_input_grad`` is the same kernel on dy
with the filters flipped and their channel axes swapped, which replaces the input-gradient
GEMM and row2im's scatter. Filters are first packed into pieces of the work-item tile's output
channels (16, or 8 for the two-row tile; a small pass: weights change every step).
``conv2d_weight_grad`` reduces dy x x over pixels directly (no im2row rows, no transposed dy,
no GEMM), in image chunks whose partial sums a second pass adds in a fixed order. Kernels:
``cl_kernels/conv.cl``, ``conv_kw.h``, ``conv_rows.h`` and ``conv_wgrad.h``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Array, conv_output_size
from .cl_runtime import CLRuntime
from ..errors import ShapeError

_i32 = np.int32
CONST_KW = (3, 5)         # filter widths with their own kernel; others run <prefix>0
# Work-item tiles of the forward / input-gradient kernels (conv.cl): name -> (kernel name prefix,
# output channels, output rows); each covers 8 pixels of a row. Chosen per CPU runtime (platform
# name) from issue 20's interleaved A/B (benchmarks/bench_conv_kernels.py --tiles
# c16r1,c8r2 --baseline, the zoo's layer shapes, Zen 4, load 1.2-4 on 2 cores, median ratio
# of CPU times; docs/results.md, issue 20, lane F): under PoCL 3.1 the two-row tile ran
# 0.99-1.25x as fast as the 16-channel one (1.08-1.33x main's kernel, two runs); under
# Intel's runtime 0.65-0.9x (its compiler turns the 16-channel tile's 48 FMAs per filter row
# into FMAs with broadcast memory operands, 89-105 GFLOP per CPU-second on the wide layers
# against a 102 FMA ceiling), so there the 16-channel tile stays.
TILES = {"c16r1": ("conv2d_k", 16, 1), "c8r2": ("conv2d_r2_k", 8, 2)}
TILE_BY_PLATFORM = {"Portable Computing Language": "c8r2", "Intel(R) OpenCL": "c16r1"}
TILE_DEFAULT = "c16r1"    # other runtimes, GPUs: the 16-channel tile, as before issue 20
MAIN_LS = (8, 1, 1)       # (pixel blocks, channel blocks, images): fixed (PoCL recompiles)
PACK_LS = (8, 1)          # conv2d_pack_w
REDUCE_LS = (64,)
WGRAD_OB = {3: 8, 5: 4}   # output channels per weight-gradient work-item (DW_OB), else 8
WGRAD_CACHE = 1 << 14     # floats of dy one chunk of a work-item reads (64 KB; 1.0-1.14x 128 KB)
WGRAD_MIN_ITEMS = 256     # work-items the weight gradient is split into at least, if it can
# Widest layer, in (output, input) channel pairs per group, whose weight gradient runs the direct
# kernel; wider ones are lowered (im2row + gemm), a large well-shaped product there. Per CPU
# runtime (platform name), from issue 20's per-layer measurements (bench_wgrad_ab.py, CPU time,
# Zen 4, 2 cores, shared machine): after the kernel's rolling "same"-padding walk, the direct
# kernel was faster than the lowering on every zoo layer measured under both PoCL 3.1 and Intel's
# runtime, up to VGG16's 512 -> 512 at 8x8 (1.18x both) and AlexNet's 256 -> 384 (1.02x PoCL,
# 1.27x Intel); before it, PoCL's limit was 2048 and Intel's 8192. Other runtimes and GPUs:
# the limit measured before (unmeasured since).
WGRAD_MAX_PAIRS = {"Portable Computing Language": 512 * 512, "Intel(R) OpenCL": 512 * 512}
WGRAD_MAX_PAIRS_DEFAULT = 8192


class ConvOps:
    """``conv2d`` and ``conv2d_input_grad`` on a ``CLRuntime`` (contracts in base.py)."""

    provides = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "conv2d_weight_grad_direct")

    def __init__(self, runtime: CLRuntime) -> None:
        self.rt = runtime
        platform = runtime.device.platform.name.strip()
        self.wgrad_max_pairs = (WGRAD_MAX_PAIRS.get(platform, WGRAD_MAX_PAIRS_DEFAULT)
                                if runtime.is_cpu else WGRAD_MAX_PAIRS_DEFAULT)
        # a key of TILES (benchmarks and tests switch it); measured on CPUs only
        self.tile = TILE_BY_PLATFORM.get(platform, TILE_DEFAULT) if runtime.is_cpu \
            else TILE_DEFAULT

    def conv2d_weight_grad_direct(self, out_channels: int, in_channels: int,
                                  groups: int) -> bool:
        """Direct weight gradient up to this runtime's channel-pair limit (WGRAD_MAX_PAIRS)."""
        return out_channels * in_channels // (groups * groups) <= self.wgrad_max_pairs

    def _pack(self, weight: Array, groups: int, cog: int, cig: int, taps: int,
              transposed: bool) -> Array:
        """The filters as conv2d_pack_w lays them out (pieces of the tile's output channels,
        zero padded)."""
        ob = TILES[self.tile][1]
        nob = -(-cog // ob)
        size = groups * nob * cig * taps * ob
        wp = self.rt.scratch("conv.w", size)
        self.rt.launch("conv", "conv2d_pack_w", (cig, groups * nob), PACK_LS, weight,
                       _i32(groups), _i32(cog), _i32(cig), _i32(taps), _i32(int(transposed)),
                       _i32(ob), wp)
        return wp

    def _run(self, x: Array, wp: Array, bias: Array | None, out_channels: int, kh: int,
             kw: int, pad: int, padx: int, groups: int) -> Array:
        """y = direct convolution of x with the packed filters wp (+ bias), zero padding pad
        rows above and below, padx columns left and right."""
        n, c, h, w = (int(s) for s in x.shape)
        oh, ow = conv_output_size(h, kh, 1, pad), conv_output_size(w, kw, 1, padx)
        y = self.rt.empty((n, out_channels, oh, ow), np.float32)
        if y.size == 0:
            return y
        prefix, ob, rows = TILES[self.tile]
        nob = -(-(out_channels // groups) // ob)
        name = f"{prefix}{kw if kw in CONST_KW else 0}"
        self.rt.launch("conv", name, (-(-oh // rows) * -(-ow // 8), groups * nob, n), MAIN_LS,
                       x, wp,
                       self.rt.dummy if bias is None else bias, _i32(bias is not None), y,
                       *(_i32(v) for v in (c, h, w, out_channels, oh, ow, kh, kw, pad, padx,
                                           groups, n)))
        return y

    def conv2d(self, x: Array, weight: Array, bias: Array | None, pad: int,
               groups: int) -> Array:
        """Stride-1 convolution of x (N, C, H, W) with weight (O, C/G, KH, KW), + bias."""
        o, cg, kh, kw = (int(s) for s in weight.shape)
        _check(x.shape, weight.shape, groups, pad)
        wp = self._pack(weight, groups, o // groups, cg, kh * kw, False)
        return self._run(x, wp, bias, o, kh, kw, pad, pad, groups)

    def conv2d_input_grad(self, dy: Array, weight: Array, x_shape: Sequence[int], pad: int,
                          groups: int) -> Array:
        """dx of conv2d: the stride-1 convolution of dy with the flipped, channel-swapped
        filters and padding KH - 1 - pad (rows), KW - 1 - pad (columns)."""
        o, cg, kh, kw = (int(s) for s in weight.shape)
        n, c, h, w = (int(s) for s in x_shape)
        _check(x_shape, weight.shape, groups, pad)
        if kh - 1 - pad < 0 or kw - 1 - pad < 0:
            raise ShapeError(f"conv2d_input_grad: padding {pad} exceeds the {kh}x{kw} filter's "
                             f"{min(kh, kw) - 1}")
        wp = self._pack(weight, groups, cg, o // groups, kh * kw, True)
        dx = self._run(dy, wp, None, c, kh, kw, kh - 1 - pad, kw - 1 - pad, groups)
        if tuple(dx.shape) != (n, c, h, w):
            raise ShapeError(f"conv2d_input_grad: dy {tuple(dy.shape)} does not come from an "
                             f"input of shape {tuple(x_shape)}")
        return dx

    def conv2d_weight_grad(self, x: Array, dy: Array, kh: int, kw: int, pad: int, groups: int,
                           out: Array, accumulate: bool = True) -> None:
        """out (O, C/G, KH, KW) (+)= the filter gradient of a stride-1 conv2d of x, dy."""
        n, c, h, w = (int(s) for s in x.shape)
        o, oh, ow = (int(s) for s in dy.shape[1:])
        _check(x.shape, out.shape, groups, pad)
        if (int(dy.shape[0]), oh, ow) != (n, conv_output_size(h, kh, 1, pad),
                                          conv_output_size(w, kw, 1, pad)) \
                or tuple(out.shape) != (o, c // groups, kh, kw):
            raise ShapeError(f"conv2d_weight_grad: x {tuple(x.shape)}, dy {tuple(dy.shape)} "
                             f"and gradient {tuple(out.shape)} do not fit a {kh}x{kw} filter")
        size = int(out.size)
        if size and (n == 0 or oh * ow == 0):
            if not accumulate:
                self.rt.fill(out, 0.0)
            return
        if size == 0:
            return
        kc = kw if kw in CONST_KW else 0
        ob = WGRAD_OB.get(kc, 8)
        rows = (c // groups) * kh * (1 if kc else kw)   # (c, ky[, kx]) per work-item
        blocks = groups * -(-(o // groups) // ob)       # (group, output-channel block)
        nper = max(1, min(n, WGRAD_CACHE // (ob * oh * ow)))  # images per chunk
        while nper > 1 and rows * blocks * -(-n // nper) < WGRAD_MIN_ITEMS:
            nper = -(-nper // 2)
        chunks = -(-n // nper)
        part = self.rt.scratch("conv.wpart", chunks * size)
        self.rt.launch("conv", f"conv2d_wgrad_k{kc}", (rows, blocks, chunks), MAIN_LS, x, dy,
                       part, *(_i32(v) for v in (c, h, w, o, oh, ow, kh, kw, pad, groups, n,
                                                 nper)))
        self.rt.launch("conv", "conv2d_wgrad_reduce", (size,), REDUCE_LS, part, _i32(chunks),
                       _i32(size), _i32(int(accumulate)), out)

def _check(x_shape: Sequence[int], w_shape: Sequence[int], groups: int, pad: int) -> None:
    """Shapes of a grouped convolution that fit together."""
    o, cg = int(w_shape[0]), int(w_shape[1])
    c = int(x_shape[1])
    if groups < 1 or o % groups or cg * groups != c or pad < 0:
        raise ShapeError(f"conv2d: input {tuple(x_shape)}, filters {tuple(w_shape)}, "
                         f"groups {groups}, padding {pad} do not fit")
