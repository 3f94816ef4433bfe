"""Speed of the direct stride-1 convolution kernels per layer shape, against the lowered path.

For each shape (the zoo's stride-1 layers at their training batch): ``conv2d`` (forward),
``conv2d_input_grad`` and ``conv2d_weight_grad`` on the OpenCL backend, and the weight gradient
through im2row rows + GEMM (``Backend``'s default, the path the direct one replaces), each in
GFLOP per CPU-second of this process (``time.process_time``: the OpenCL runtime's threads
count, so a shared machine's load distorts it less than wall time) and ms of wall time, best of
``--repeats``; the modes alternate so they see the same load.
With ``--tiles A,B`` it times the forward and input-gradient kernels with each work-item tile
of ``cl_conv.TILES`` instead (interleaved A/B in one process) and prints each tile's speed
relative to the first (median over rounds of the ratio of CPU seconds, and of wall times).
``--baseline DIR`` adds, first, the kernels of another checkout's ``cl_kernels`` folder (e.g.
``git archive main cl_kernels | tar -x -C /tmp/main``: ``DIR`` = /tmp/main/cl_kernels), built
in the same context and launched as that checkout did (16-channel tile): old vs new in one run.
``--peak`` first prints the ceiling these kernels work under: GFLOP per CPU-second of a kernel
that only does the 16-channel tile's vector a*b + c (16 float8 accumulators, weights broadcast
from memory, no input rows, no stores).
Usage: ``python benchmarks/bench_conv_kernels.py --device 0:0 [--repeats 3] [--only r32]
[--tiles c16r1,c8r2 [--baseline DIR]] [--peak]``
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyopencl as cl
import pyopencl.array  # noqa: F401  (cl.array)

from minidnn.backend import get_backend
from minidnn.backend.base import Backend

from conv_baseline import BaselineConv

# name: (batch, in channels, height = width, out channels, kernel, padding, groups)
SHAPES = {
    "r32 s1 16x32x32": (128, 16, 32, 16, 3, 1, 1),
    "r32 s2 32x16x16": (128, 32, 16, 32, 3, 1, 1),
    "r32 s3 64x8x8": (128, 64, 8, 64, 3, 1, 1),
    "alex conv1 3->96 5x5 32x32": (64, 3, 32, 96, 5, 2, 1),
    "alex conv2 96->256 5x5 g2 16x16": (64, 96, 16, 256, 5, 2, 2),
    "alex conv3 256->384 8x8": (64, 256, 8, 384, 3, 1, 1),
    "alex conv4 384->384 g2 8x8": (64, 384, 8, 384, 3, 1, 2),
    "alex conv5 384->256 g2 8x8": (64, 384, 8, 256, 3, 1, 2),
    "vgg 64->64 32x32": (32, 64, 32, 64, 3, 1, 1),
    "vgg 64->128 16x16": (32, 64, 16, 128, 3, 1, 1),
    "vgg 128->128 16x16": (32, 128, 16, 128, 3, 1, 1),
    "vgg 512->512 8x8": (32, 512, 8, 512, 3, 1, 1),
}


def _timed(fn, sync) -> tuple[float, float]:
    sync()
    c, t = time.process_time(), time.perf_counter()
    fn()
    sync()
    return time.process_time() - c, time.perf_counter() - t


def _with_tile(be, tile: str, fn):
    """fn run with the OpenCL conv kernels' work-item tile set to ``tile``."""
    def run():
        before, be.conv.tile = be.conv.tile, tile
        try:
            fn()
        finally:
            be.conv.tile = before
    return run


def _inputs(be, shape):
    """x, filters, dy of a layer shape (random), and the FLOPs of one convolution."""
    n, c, hw, o, k, pad, g = shape
    rng = np.random.default_rng(0)
    x = be.from_host(rng.standard_normal((n, c, hw, hw)).astype(np.float32))
    w = be.from_host(rng.standard_normal((o, c // g, k, k)).astype(np.float32))
    y = be.conv2d(x, w, None, pad, g)
    dy = be.from_host(rng.standard_normal(tuple(y.shape)).astype(np.float32))
    return x, w, dy, 2.0 * y.size * (c // g) * k * k


PEAK_SOURCE = """
__kernel __attribute__((vec_type_hint(float4)))
void fma_peak(__global const float* w, __global float* y, const int iters) {
    float8 a[16];
    for (int r = 0; r < 16; ++r) a[r] = (float8)(0.0f);
    float8 v = (float8)(get_global_id(0) * 1e-9f);
    for (int i = 0; i < iters; ++i) {
        const __global float* wi = w + (i & 63) * 16;
        #pragma unroll
        for (int r = 0; r < 16; ++r) a[r] = wi[r] * v + a[r];
        v += 1e-9f;
    }
    float8 s = a[0];
    for (int r = 1; r < 16; ++r) s += a[r];
    y[get_global_id(0)] = s.s0 + s.s1 + s.s2 + s.s3 + s.s4 + s.s5 + s.s6 + s.s7;
}
"""


def fma_peak(be, repeats: int) -> float:
    """Best GFLOP per CPU-second of PEAK_SOURCE's kernel (2,048 work-items x 20,000 taps)."""
    rt = be.runtime
    kernel = cl.Kernel(cl.Program(rt.context, PEAK_SOURCE).build(), "fma_peak")
    w = be.from_host(np.ones(1024, np.float32))
    y = be.zeros((2048,))
    items, iters = 2048, 20000
    best = float("inf")
    for _ in range(repeats + 1):
        cpu, _ = _timed(lambda: kernel(rt.queue, (items,), (8,), w.data, y.data,
                                       np.int32(iters)), be.synchronize)
        best = min(best, cpu)
    return 2.0 * 8 * 16 * iters * items / best / 1e9


def bench_tiles(be, shape, repeats: int, tiles: tuple[str, ...],
                baseline: BaselineConv | None = None) -> dict[str, list[float]]:
    """Forward and input gradient with each work-item tile (and first the baseline's kernels,
    as tile "base"), interleaved: {"mode tile": [GFLOP per CPU-second (best), wall ms (best),
    median over rounds of (first tile's CPU time / this tile's), the same of wall times]}. A
    round runs every tile once, back to back, so a ratio compares runs under nearly the same
    load. The baseline's results are checked against the current kernels'."""
    _, _, _, k, pad, g = shape[1:]
    x, w, dy, flops = _inputs(be, shape)
    base = {"forward": lambda: be.conv2d(x, w, None, pad, g),
            "input grad": lambda: be.conv2d_input_grad(dy, w, tuple(x.shape), pad, g)}
    modes = {(m, t): _with_tile(be, t, fn) for m, fn in base.items() for t in tiles}
    if baseline is not None:
        old = {"forward": lambda: baseline.conv2d(x, w, None, pad, g),
               "input grad": lambda: baseline.conv2d_input_grad(dy, w, tuple(x.shape), pad, g)}
        for m, fn in old.items():
            np.testing.assert_allclose(fn().get(), be.to_host(base[m]()), rtol=1e-3, atol=1e-3)
        modes = {**{(m, "base"): fn for m, fn in old.items()}, **modes}
        tiles = ("base",) + tiles
    for fn in modes.values():  # warm-up: builds kernels, allocates scratch
        _timed(fn, be.synchronize)
    runs = {key: [] for key in modes}
    for _ in range(repeats):
        for key, fn in modes.items():
            runs[key].append(_timed(fn, be.synchronize))
    out = {}
    for (m, t), r in runs.items():
        first = runs[(m, tiles[0])]
        out[f"{m} {t}"] = [flops / max(min(c for c, _ in r), 1e-9) / 1e9,
                           min(wt for _, wt in r) * 1e3,
                           float(np.median([a[0] / max(b[0], 1e-9) for a, b in zip(first, r)])),
                           float(np.median([a[1] / max(b[1], 1e-9) for a, b in zip(first, r)]))]
    return out


def bench_shape(be, shape, repeats: int) -> dict[str, tuple[float, float]]:
    """{mode: (GFLOP per CPU-second, wall ms)}, best of ``repeats`` each."""
    _, _, _, k, pad, g = shape[1:]
    x, w, dy, flops = _inputs(be, shape)
    dw = be.zeros(tuple(w.shape))
    modes = {
        "forward": lambda: be.conv2d(x, w, None, pad, g),
        "input grad": lambda: be.conv2d_input_grad(dy, w, tuple(x.shape), pad, g),
        "weight grad": lambda: be.conv2d_weight_grad(x, dy, k, k, pad, g, dw),
        "weight grad im2row+gemm": lambda: Backend.conv2d_weight_grad(be, x, dy, k, k, pad, g,
                                                                       dw),
    }
    best = {m: (0.0, float("inf")) for m in modes}
    for m, fn in modes.items():  # warm-up: builds kernels, allocates scratch
        _timed(fn, be.synchronize)
    for _ in range(repeats):
        for m, fn in modes.items():
            cpu, wall = _timed(fn, be.synchronize)
            best[m] = (max(best[m][0], flops / max(cpu, 1e-9) / 1e9), min(best[m][1], wall))
    return {m: (v[0], v[1] * 1e3) for m, v in best.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="OpenCL device (as for minidnn train)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="", help="run the shapes whose name contains this")
    p.add_argument("--threads", type=int, default=2, help="PoCL CPU threads")
    p.add_argument("--tiles", default="", help="comma-separated work-item tiles to compare "
                   "(forward and input gradient only, interleaved), e.g. c16r1,c8r2")
    p.add_argument("--baseline", default="", help="with --tiles: a cl_kernels folder whose "
                   "conv2d_k<KW> kernels run first, as tile 'base' (old vs new)")
    p.add_argument("--peak", action="store_true", help="first the FMA ceiling (see above)")
    args = p.parse_args()
    os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(args.threads))
    be = get_backend("opencl", args.device)
    tiles = tuple(t for t in args.tiles.split(",") if t)
    baseline = BaselineConv(be, args.baseline) if args.baseline and tiles else None
    print(f"{be.device_name}, load {os.getloadavg()[0]:.1f}; GFLOP per CPU-second / wall ms")
    if args.peak:
        print(f"FMA ceiling (16 float8 accumulators, broadcast weights, nothing else): "
              f"{fma_peak(be, args.repeats):.1f} GFLOP per CPU-second", flush=True)
    if tiles:
        first = "base" if baseline else tiles[0]
        print(f"tiles {'base, ' if baseline else ''}{', '.join(tiles)}: per mode and tile GFLOP "
              f"per CPU-second / wall ms (best of {args.repeats}), then the speed-up over "
              f"{first} (median of per-round ratios, CPU time / wall time)")
    for name, shape in SHAPES.items():
        if args.only not in name:
            continue
        if tiles:
            r = bench_tiles(be, shape, args.repeats, tiles, baseline)
            print(f"{name:34s} " + "  ".join(f"{m} {g:5.1f} / {ms:6.1f} ({rc:.2f}x / {rw:.2f}x)"
                                               for m, (g, ms, rc, rw) in r.items()), flush=True)
        else:
            r = bench_shape(be, shape, args.repeats)
            print(f"{name:34s} " + "  ".join(f"{m} {g:6.1f} / {ms:7.1f}"
                                               for m, (g, ms) in r.items()), flush=True)


if __name__ == "__main__":
    main()
