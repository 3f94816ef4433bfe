"""The gemm of this checkout against the gemm of an older commit, interleaved in one process.

The older ``cl_kernels/gemm.cl`` and ``minidnn/backend/cl_gemm.py`` are read from git
(``--ref``, default: the commit before the session-6 GEMM work), built on the same device and
swapped in as the backend's ``dense`` group, so both run on the same context and machine load.
Products (``--only``: cases of bench_gemm.py) are timed alternately with NumPy; with
``--model`` the whole training step of a zoo model is timed instead, blocks of steps alternating
between the two gemms. Figures are medians of ``--repeats``.
Usage: ``python benchmarks/bench_gemm_ab.py --device 0:0 [--ref 5da5f5a] [--only "1024^3"]
[--model lenet5 --steps 2] [--repeats 7] [--cpu-time]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import bench_gemm as bg
from ab_baseline import OldRuntime, build_old_program, load_old_module
import bench_train as bt
from minidnn.backend import get_backend
from minidnn.models import MODELS, build_model, training_recipe

OLD_STEM = "gemm_ab_old"


def old_gemm_group(backend, ref: str):
    """A GemmOps of commit ``ref`` on ``backend``'s runtime (its gemm.cl built as OLD_STEM)."""
    build_old_program(backend.runtime, OLD_STEM, ref, "gemm.cl")
    return load_old_module(ref, "cl_gemm").GemmOps(OldRuntime(backend.runtime, "gemm", OLD_STEM))


def _median_rate(work: float, times: list[float]) -> float:
    return work / max(float(np.median(times)), 1e-12)


def ab_products(backend, old, names: list[str], repeats: int, clock) -> None:
    """GFLOP/s of old vs new gemm vs NumPy per bench_gemm case."""
    new = backend.dense
    print(f"{'case':<18}{'old':>8}{'new':>8}{'NumPy':>8}{'new/old*':>9}{'old/NumPy':>10}"
          f"{'new/NumPy':>10}{'new/NumPy*':>11}   (*: median of the per-repeat ratios)")
    for name in names:
        m, n, k, ta, tb = bg.CASES[name]
        rng = np.random.default_rng(0)
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        da, db, dc = backend.from_host(a), backend.from_host(b), backend.empty((m, n))
        a_op, b_op = (a.T if ta else a), (b.T if tb else b)
        runs = {"old": (lambda: old.gemm(da, db, ta, tb, out=dc), backend.synchronize),
                "new": (lambda: new.gemm(da, db, ta, tb, out=dc), backend.synchronize),
                "numpy": (lambda: np.matmul(a_op, b_op), lambda: None)}
        inner = {}
        for key, (fn, sync) in runs.items():
            bg._time(fn, sync, 1)
            inner[key] = max(1, min(50, int(0.03 / max(bg._time(fn, sync, 1), 1e-6))))
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(repeats):
            for key, (fn, sync) in runs.items():
                time.sleep(0.02)
                bg._time(fn, sync, 1)
                times[key].append(bg._time(fn, sync, inner[key], clock))
        r = {key: _median_rate(2e-9 * m * n * k, t) for key, t in times.items()}
        # ratios of the runs made back to back in each repeat, then their median
        pair = {key: float(np.median(np.array(times[key]) / np.array(times["new"])))
                for key in ("old", "numpy")}
        print(f"{name:<18}{r['old']:>8.1f}{r['new']:>8.1f}{r['numpy']:>8.1f}"
              f"{pair['old']:>9.2f}{r['old'] / r['numpy']:>10.2f}"
              f"{r['new'] / r['numpy']:>10.2f}{pair['numpy']:>11.2f}", flush=True)


def ab_training(backend, old, model: str, steps: int, repeats: int) -> None:
    """Images/s of a zoo model's training step with the old vs the new gemm."""
    batch = bt.DEFAULT_BATCH.get(model, 128)
    batches = bt.synthetic_batches(build_model(model), batch, count=2)
    step, sync = bt.minidnn_runner(model, backend, training_recipe(model)["lam"], batches)
    new = backend.dense
    rates: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for _ in range(repeats):
            for mode, group in (("old", old), ("new", new)):
                backend.dense = group
                step()  # untimed: builds, allocations
                rates[mode].append(batch * steps / bt.time_steps(step, sync, steps))
    finally:
        backend.dense = new
    med = {mode: float(np.median(r)) for mode, r in rates.items()}
    paired = float(np.median(np.array(rates["new"]) / np.array(rates["old"])))
    print(f"{model}, batch {batch}: images/s old gemm {med['old']:.1f}, new gemm "
          f"{med['new']:.1f} (medians of {repeats} x {steps} steps); new/old, median of the "
          f"{repeats} back-to-back pairs: {paired:.2f}x; blocks: old "
          f"{[round(x) for x in rates['old']]}, new {[round(x) for x in rates['new']]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="OpenCL device (as for minidnn train)")
    p.add_argument("--ref", default="5da5f5a", help="git commit of the old gemm")
    p.add_argument("--only", default=None, help="substring of bench_gemm.py case names")
    p.add_argument("--model", default=None, choices=sorted(MODELS),
                   help="time training steps of this zoo model instead of products")
    p.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="PoCL CPU threads")
    p.add_argument("--cpu-time", action="store_true",
                   help="products: GFLOP per CPU-second of this process instead of wall time")
    args = p.parse_args()
    if args.steps < 1 or args.repeats < 1:
        p.error("--steps and --repeats must be >= 1")
    os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(args.threads))
    backend = get_backend("opencl", args.device)
    old = old_gemm_group(backend, args.ref)
    print(bt.machine_line())
    print(f"device: {backend.device_name}; old gemm: {args.ref}; load average "
          f"{os.getloadavg()[0]:.1f}")
    if args.model:
        ab_training(backend, old, args.model, args.steps, args.repeats)
    else:
        names = [c for c in bg.CASES if not args.only or args.only in c]
        unit = "GFLOP per CPU-s" if args.cpu_time else "GFLOP/s"
        print(f"({unit}, median of {args.repeats}, runs interleaved)")
        ab_products(backend, old, names, args.repeats,
                    time.process_time if args.cpu_time else time.perf_counter)


if __name__ == "__main__":
    sys.exit(main())
