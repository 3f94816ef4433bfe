"""Speed of the direct stride-1 convolution kernels per layer shape, against the lowered path.

For each shape (the zoo's stride-1 layers at their training batch): ``conv2d`` (forward),
``conv2d_input_grad`` and ``conv2d_weight_grad`` on the OpenCL backend, and the weight gradient
through im2row rows + GEMM (``Backend``'s default, the path the direct one replaces), each in
GFLOP per CPU-second of this process (``time.process_time``: the OpenCL runtime's threads
count, so a shared machine's load distorts it less than wall time) and ms of wall time, best of
``--repeats``; the modes alternate so they see the same load.
Usage: ``python benchmarks/bench_conv_kernels.py --device 0:0 [--repeats 3] [--only r32]``
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from minidnn.backend import get_backend
from minidnn.backend.base import Backend

# name: (batch, in channels, height = width, out channels, kernel, padding, groups)
SHAPES = {
    "r32 s1 16x32x32": (128, 16, 32, 16, 3, 1, 1),
    "r32 s2 32x16x16": (128, 32, 16, 32, 3, 1, 1),
    "r32 s3 64x8x8": (128, 64, 8, 64, 3, 1, 1),
    "alex conv1 3->96 5x5 32x32": (64, 3, 32, 96, 5, 2, 1),
    "alex conv2 96->256 5x5 g2 16x16": (64, 96, 16, 256, 5, 2, 2),
    "alex conv3 256->384 8x8": (64, 256, 8, 384, 3, 1, 1),
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


def bench_shape(be, shape, repeats: int) -> dict[str, tuple[float, float]]:
    """{mode: (GFLOP per CPU-second, wall ms)}, best of ``repeats`` each."""
    n, c, hw, o, k, pad, g = shape
    rng = np.random.default_rng(0)
    x = be.from_host(rng.standard_normal((n, c, hw, hw)).astype(np.float32))
    w = be.from_host(rng.standard_normal((o, c // g, k, k)).astype(np.float32))
    y = be.conv2d(x, w, None, pad, g)
    dy = be.from_host(rng.standard_normal(tuple(y.shape)).astype(np.float32))
    dw = be.zeros(tuple(w.shape))
    flops = 2.0 * y.size * (c // g) * k * k
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
    args = p.parse_args()
    os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(args.threads))
    be = get_backend("opencl", args.device)
    print(f"{be.device_name}, load {os.getloadavg()[0]:.1f}; GFLOP per CPU-second / wall ms")
    for name, shape in SHAPES.items():
        if args.only in name:
            r = bench_shape(be, shape, args.repeats)
            print(f"{name:34s} " + "  ".join(f"{m} {g:6.1f} / {ms:7.1f}"
                                               for m, (g, ms) in r.items()), flush=True)


if __name__ == "__main__":
    main()
