"""Train-mode batch norm of this checkout against an older commit's, interleaved in one process.

The older ``cl_kernels/batchnorm.cl`` (``--ref``, default: the commit before issue 20's
session-7 batch-norm rewrite, one work-group per channel) is built on the same device next to
the current one; its two kernels run through the launch code of that commit, swapped in for the
backend's ``batchnorm_train`` / ``batchnorm_backward``. Per shape (ResNet-32's three stages at
batch 128, VGG16's 64- and 512-channel layers at batch 32, a BatchNorm1d) the forward and the
backward are timed alternately, old then new; with ``--model`` whole training steps are timed
instead, blocks of steps alternating, "old" then being the old kernels without the fused
BatchNorm + ReLU (``Module.fuses_with`` off) and "new" this checkout. ``--cpu-time`` divides by the process's CPU time (less
sensitive to other jobs on a shared machine). Figures are medians of ``--repeats``; the ratio
is the median of the per-repeat ratios.
Usage: ``python benchmarks/bench_batchnorm_ab.py --device 1:0 [--ref 712a590] [--repeats 7]
[--cpu-time] [--model resnet32 --steps 2]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import bench_gemm as bg
import bench_train as bt
from ab_baseline import build_old_program
from minidnn.backend import get_backend
from minidnn.layers.normalization import _BatchNorm
from minidnn.models import MODELS, build_model, training_recipe

OLD_STEM = "batchnorm_ab_old"
SHAPES = {"r32 s1": (128, 16, 32, 32), "r32 s2": (128, 32, 16, 16), "r32 s3": (128, 64, 8, 8),
          "vgg 64@32": (32, 64, 32, 32), "vgg 512@2": (32, 512, 2, 2), "bn1d 128x1024": (128, 1024)}
_u32, _f32 = np.uint32, np.float32


def old_batchnorm(backend, ref: str):
    """(train, backward) with the signatures of the backend's, running commit ``ref``'s
    one-work-group-per-channel kernels (their lane split: ``NNOps._lanes_log2``, unchanged)."""
    rt, lanes_log2 = backend.runtime, backend.nn._lanes_log2
    build_old_program(rt, OLD_STEM, ref, "batchnorm.cl")

    def train(x, gamma, beta, running_mean, running_var, momentum, eps):
        c = int(gamma.shape[0])
        n, p = int(x.shape[0]), int(x.size) // (int(x.shape[0]) * c)
        y, xhat, inv_std = rt.empty(x.shape), rt.empty(x.shape), rt.empty((c,))
        ls = rt.reduction_size
        rt.launch(OLD_STEM, "batchnorm_train", (c * ls,), (ls,), x, gamma, beta, running_mean,
                  running_var, y, xhat, inv_std, _u32(n), _u32(c), _u32(p),
                  _u32(lanes_log2(n, p)), _f32(momentum), _f32(eps))
        return y, xhat, inv_std

    def backward(dy, xhat, inv_std, gamma, dgamma, dbeta):
        c = int(gamma.shape[0])
        n, p = int(dy.shape[0]), int(dy.size) // (int(dy.shape[0]) * c)
        dx = rt.empty(dy.shape)
        ls = rt.reduction_size
        rt.launch(OLD_STEM, "batchnorm_backward", (c * ls,), (ls,), dy, xhat, inv_std, gamma,
                  dgamma, dbeta, dx, _u32(n), _u32(c), _u32(p), _u32(lanes_log2(n, p)))
        return dx
    return train, backward


def ab_shapes(backend, old, repeats: int, clock) -> None:
    """ms per call of the old and new forward / backward per shape, interleaved."""
    new = (backend.nn.batchnorm_train, backend.nn.batchnorm_backward)
    rng = np.random.default_rng(0)
    print(f"{'shape':<15}{'fwd old':>9}{'fwd new':>9}{'old/new':>8}{'bwd old':>9}{'bwd new':>9}"
          f"{'old/new':>8}   (ms per call, median of {repeats})")
    for name, shape in SHAPES.items():
        c = shape[1]
        x = backend.from_host(rng.standard_normal(shape, dtype=np.float32))
        dy = backend.from_host(rng.standard_normal(shape, dtype=np.float32))
        vec = {k: backend.from_host(v) for k, v in dict(
            g=np.ones(c, np.float32), b=np.zeros(c, np.float32), rm=np.zeros(c, np.float32),
            rv=np.ones(c, np.float32), dg=np.zeros(c, np.float32),
            db=np.zeros(c, np.float32)).items()}
        times = {(impl, d): [] for impl in ("old", "new") for d in ("fwd", "bwd")}
        calls = {}
        for impl, (train, bwd) in (("old", old), ("new", new)):
            _, xhat, inv = train(x, vec["g"], vec["b"], vec["rm"], vec["rv"], 0.1, 1e-5)
            calls[impl, "fwd"] = (lambda t=train: t(x, vec["g"], vec["b"], vec["rm"], vec["rv"],
                                                    0.1, 1e-5))
            calls[impl, "bwd"] = (lambda b=bwd, xh=xhat, s=inv: b(dy, xh, s, vec["g"], vec["dg"],
                                                                 vec["db"]))
        for _ in range(repeats):
            for key, fn in calls.items():
                bg._time(fn, backend.synchronize, 1, clock)
                times[key].append(bg._time(fn, backend.synchronize, 10, clock))
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        ratio = {d: float(np.median(np.array(times["old", d]) / np.array(times["new", d])))
                 for d in ("fwd", "bwd")}
        print(f"{name:<15}{med['old', 'fwd']:>9.3f}{med['new', 'fwd']:>9.3f}{ratio['fwd']:>8.2f}"
              f"{med['old', 'bwd']:>9.3f}{med['new', 'bwd']:>9.3f}{ratio['bwd']:>8.2f}",
              flush=True)


def ab_training(backend, old, model: str, steps: int, repeats: int, clock) -> None:
    """Images/s (or per CPU-second) of a zoo model's training step, old vs new batch norm."""
    batch = bt.DEFAULT_BATCH.get(model, 128)
    batches = bt.synthetic_batches(build_model(model), batch, count=2)
    step, sync = bt.minidnn_runner(model, backend, training_recipe(model)["lam"], batches)
    nn = backend.nn
    new = (nn.batchnorm_train, nn.batchnorm_backward)
    fuses = _BatchNorm.fuses_with
    rates: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for _ in range(repeats):
            for mode, (train, bwd) in (("old", old), ("new", new)):
                nn.batchnorm_train, nn.batchnorm_backward = train, bwd
                _BatchNorm.fuses_with = fuses if mode == "new" else (lambda self, layer: False)
                step()  # untimed
                rates[mode].append(batch * steps / bg._time(step, sync, steps, clock) / steps)
    finally:
        nn.batchnorm_train, nn.batchnorm_backward = new
        _BatchNorm.fuses_with = fuses
    med = {mode: float(np.median(r)) for mode, r in rates.items()}
    paired = float(np.median(np.array(rates["new"]) / np.array(rates["old"])))
    print(f"{model}, batch {batch}: images/s old {med['old']:.1f}, new {med['new']:.1f} "
          f"(medians of {repeats} x {steps} steps); new/old, median of the {repeats} "
          f"back-to-back pairs: {paired:.3f}x; pairs "
          f"{[round(a / b, 3) for a, b in zip(rates['new'], rates['old'])]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="OpenCL device (as for minidnn train)")
    p.add_argument("--ref", default="712a590", help="git commit of the old batch norm")
    p.add_argument("--model", default=None, choices=sorted(MODELS),
                   help="time training steps of this zoo model instead of single calls")
    p.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="PoCL CPU threads")
    p.add_argument("--cpu-time", action="store_true",
                   help="per CPU-second of this process instead of per wall-clock second")
    args = p.parse_args()
    if args.steps < 1 or args.repeats < 1:
        p.error("--steps and --repeats must be >= 1")
    os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(args.threads))
    backend = get_backend("opencl", args.device)
    old = old_batchnorm(backend, args.ref)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(bt.machine_line())
    print(f"device: {backend.device_name}; old batch norm: {args.ref}; load average "
          f"{os.getloadavg()[0]:.1f}; {'CPU' if args.cpu_time else 'wall'} time")
    if args.model:
        ab_training(backend, old, args.model, args.steps, args.repeats, clock)
    else:
        ab_shapes(backend, old, args.repeats, clock)


if __name__ == "__main__":
    sys.exit(main())
