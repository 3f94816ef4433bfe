"""Measured GFLOP/s of the OpenCL gemm against NumPy (BLAS) and PyTorch CPU, with ratios.

Cases: 1024^3 in all four transpose combinations, the LeNet-5 products at batch 128
(forward, dX, dW), those of ResNet-32's 3x3 convolutions at batch 128 (``r32``: 16/32/64
channels) and AlexNet's at batch 64 (``alex``: the two hidden linears and the weight gradients
of conv2/conv3, which still run as GEMMs in training). Runs of the libraries are interleaved
and each figure is the median of several repeats, since timings on a shared machine swing run
to run; each timed block follows a short pause and an untimed call, so one library's spinning
worker threads do not slow the next. OpenCL timings wait on ``queue.finish()``.

``--rows 6,12`` times the OpenCL product once per register-block height, interleaved in the
same run (an A/B of the two kernel builds): 6 rows (AVX2 CPUs, GPUs) or up to 12 (AVX-512
CPUs: 12 where that pads op(A) no more than 6 would, or M >= 96). ``--cpu-time`` divides by
the process's CPU time instead of wall time: GFLOP per CPU-second, less sensitive to other jobs
on a shared machine (BLAS threads that spin while waiting count too).
Usage: ``python benchmarks/bench_gemm.py [--repeats 7] [--device cpu] [--only 1024]
[--rows 6,12] [--cpu-time]``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from minidnn.backend.opencl_backend import OpenCLBackend

try:
    import torch
except ImportError:  # torch is an optional baseline
    torch = None

# name -> (M, N, K, trans_a, trans_b): out (M, N) = op(A) @ op(B)
CASES = {
    "1024^3 NN": (1024, 1024, 1024, False, False),
    "1024^3 NT": (1024, 1024, 1024, False, True),
    "1024^3 TN": (1024, 1024, 1024, True, False),
    "1024^3 TT": (1024, 1024, 1024, True, True),
    "conv1 fwd X.W^T": (73728, 20, 25, False, True),
    "conv1 dW dY^T.X": (20, 25, 73728, True, False),
    "conv2 fwd X.W^T": (8192, 50, 500, False, True),
    "conv2 dX dY.W": (8192, 500, 50, False, False),
    "conv2 dW dY^T.X": (50, 500, 8192, True, False),
    "fc1 fwd X.W^T": (128, 500, 800, False, True),
    "fc1 dX dY.W": (128, 800, 500, False, False),
    "fc1 dW dY^T.X": (500, 800, 128, True, False),
    "fc2 fwd X.W^T": (128, 10, 500, False, True),
    "fc2 dX dY.W": (128, 500, 10, False, False),
    "fc2 dW dY^T.X": (10, 500, 128, True, False),
    # ResNet-32 at batch 128: the 3x3 convolutions of its three stages (16/32/64 channels)
    "r32 s1 fwd": (131072, 16, 144, False, True),
    "r32 s1 dX": (131072, 144, 16, False, False),
    "r32 s1 dW": (16, 144, 131072, True, False),
    "r32 s2 fwd": (32768, 32, 288, False, True),
    "r32 s2 dX": (32768, 288, 32, False, False),
    "r32 s2 dW": (32, 288, 32768, True, False),
    "r32 s3 fwd": (8192, 64, 576, False, True),
    "r32 s3 dX": (8192, 576, 64, False, False),
    "r32 s3 dW": (64, 576, 8192, True, False),
    # AlexNet at batch 64: fc1 4096->1024 and fc2 1024->1024 (forward, dX, dW), and the weight
    # gradients dY^T.X of conv3 (256->384, 3x3 at 8x8), of one group of conv2 (48->128, 5x5
    # at 16x16), conv4 (192->192 per group) and conv5 (192->128 per group)
    "alex fc1 fwd": (64, 1024, 4096, False, True),
    "alex fc1 dX": (64, 4096, 1024, False, False),
    "alex fc1 dW": (1024, 4096, 64, True, False),
    "alex fc2 fwd": (64, 1024, 1024, False, True),
    "alex fc2 dX": (64, 1024, 1024, False, False),
    "alex fc2 dW": (1024, 1024, 64, True, False),
    "alex conv3 dW": (384, 2304, 4096, True, False),
    "alex conv2 dW": (128, 1200, 16384, True, False),
    "alex conv4 dW": (192, 1728, 4096, True, False),
    "alex conv5 dW": (128, 1728, 4096, True, False),
    # VGG16 at batch 32: the lowered 512->512 3x3 layers of the 4x4 stage (M = 32*16 rows) and
    # the 2x2 stage (M = 128), forward X.W^T, dX dY.W, dW dY^T.X, and the lowered weight
    # gradients of the 8x8 (256 channels) and 16x16 (128 channels) stages
    "vgg 4x4 fwd": (512, 512, 4608, False, True),
    "vgg 4x4 dX": (512, 4608, 512, False, False),
    "vgg 4x4 dW": (512, 4608, 512, True, False),
    "vgg 2x2 fwd": (128, 512, 4608, False, True),
    "vgg 2x2 dX": (128, 4608, 512, False, False),
    "vgg 2x2 dW": (512, 4608, 128, True, False),
    "vgg 8x8 dW": (256, 2304, 2048, True, False),
    "vgg 16x16 dW": (128, 1152, 8192, True, False),
}


def _time(fn, sync, inner: int, clock=time.perf_counter) -> float:
    """Seconds (of ``clock``) per call of ``fn`` over ``inner`` back-to-back calls."""
    sync()
    t = clock()
    for _ in range(inner):
        fn()
    sync()
    return (clock() - t) / inner


def _opencl_runs(be: OpenCLBackend, da, db, dc, ta: bool, tb: bool,
                 rows: list[int]) -> dict[str, tuple]:
    """(call, sync) per OpenCL build timed: the device's own, or one per register-block height
    in ``rows`` (GemmOps.mr switched before each call)."""
    if not rows:
        return {"opencl": (lambda: be.gemm(da, db, ta, tb, out=dc), be.synchronize)}

    def run(mr: int):
        def call():
            be.dense.mr = mr
            be.gemm(da, db, ta, tb, out=dc)
        return call
    return {f"mr{mr}": (run(mr), be.synchronize) for mr in rows}


def bench_case(be: OpenCLBackend, m: int, n: int, k: int, ta: bool, tb: bool,
               repeats: int, rows: list[int], clock=time.perf_counter) -> dict[str, float]:
    """Median GFLOP/s per library (and OpenCL build) for one product, runs interleaved."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    da, db = be.from_host(a), be.from_host(b)
    dc = be.empty((m, n))
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)
    runs = _opencl_runs(be, da, db, dc, ta, tb, rows)
    runs["numpy"] = (lambda: np.matmul(a_op, b_op), lambda: None)
    if torch is not None:
        ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
        ta_op, tb_op = (ta_.T if ta else ta_), (tb_.T if tb else tb_)
        runs["torch"] = (lambda: torch.matmul(ta_op, tb_op), lambda: None)
    inner = {}
    for name, (fn, sync) in runs.items():  # warm up (kernel builds) and size the inner loop
        _time(fn, sync, 1)
        inner[name] = max(1, min(50, int(0.03 / max(_time(fn, sync, 1), 1e-6))))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (fn, sync) in runs.items():
            # let the previous library's worker threads stop spinning, then one untimed call
            time.sleep(0.02)
            _time(fn, sync, 1)
            times[name].append(_time(fn, sync, inner[name], clock))
    flops = 2.0 * m * n * k
    return {name: flops / max(float(np.median(t)), 1e-12) / 1e9 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default=None, help="OpenCL device spec (default: auto)")
    parser.add_argument("--only", default=None, help="substring of the case names to run")
    parser.add_argument("--rows", default=None,
                        help="comma-separated register-block heights to compare (6,12)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="GFLOP per CPU-second of this process instead of wall time")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    rows = [int(r) for r in args.rows.split(",")] if args.rows else []
    if any(r not in (6, 12) for r in rows):
        parser.error("--rows takes 6 and/or 12")
    be = OpenCLBackend(args.device)
    clock = time.process_time if args.cpu_time else time.perf_counter
    names = [f"mr{r}" for r in rows] or ["opencl"]
    print(f"device: {be.device_name} (own register rows: {be.dense.mr}); load average "
          f"{os.getloadavg()[0]:.1f}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}")
    unit = "GFLOP per CPU-s" if args.cpu_time else "GFLOP/s"
    print(f"{'case':<18}{'M':>7}{'N':>6}{'K':>7}  " + "".join(f"{x:>8}" for x in names)
          + f"{'NumPy':>7}{'torch':>7}  " + "".join(f"{x + '/NumPy':>12}" for x in names)
          + f"{'/torch':>8}   ({unit}, median of {args.repeats})")
    for name, (m, n, k, ta, tb) in CASES.items():
        if args.only and args.only not in name:
            continue
        r = bench_case(be, m, n, k, ta, tb, args.repeats, rows, clock)
        tq = r.get("torch", float("nan"))
        print(f"{name:<18}{m:>7}{n:>6}{k:>7}  " + "".join(f"{r[x]:>8.1f}" for x in names)
              + f"{r['numpy']:>7.1f}{tq:>7.1f}  "
              + "".join(f"{r[x] / r['numpy']:>12.2f}" for x in names)
              + f"{r[names[-1]] / tq:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
