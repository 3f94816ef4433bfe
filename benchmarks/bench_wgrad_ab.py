"""The direct weight gradient of this checkout against that of an older commit, in one process.

The older ``cl_kernels`` (conv.cl and its headers) and ``minidnn/backend/cl_conv.py`` are read
from git (``--ref``, default: the commit before issue 20's lane-W work), built on the same
device and context, so both see the same machine load. Per layer shape (the zoo's stride-1
layers at their training batch, SHAPES) it times, alternately: the old
direct kernel, the new one, and the lowering (im2row + gemm, ``Backend``'s default), each the
median of ``--repeats`` in ms and GFLOP per CPU-second of this process (``time.process_time``:
the runtime's threads count; wall time is distorted more by other processes on a shared
machine), and prints new/old and lowered/new as medians of the per-repeat ratios. Whether a
layer takes the direct path or the lowering (``conv2d_weight_grad_direct``) is shown for both.
With ``--model`` the whole training step of a zoo model is timed instead, blocks of steps
alternating between the old and the new weight gradient (each with its own direct/lowered
choice); everything else is this checkout's.
With ``--profile`` (model mode) the device time of each kernel per step is printed too.
Usage: ``python benchmarks/bench_wgrad_ab.py --device 1:0 [--ref 712a590] [--only r32]
[--model resnet32 --steps 2 [--profile]] [--repeats 7]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import bench_conv_kernels as bck
from ab_baseline import OldRuntime, build_old_program, load_old_module
import bench_train as bt
from minidnn.backend import get_backend
from minidnn.backend.base import Backend
from minidnn.models import MODELS, build_model, training_recipe

OLD_STEM = "conv_wgrad_ab_old"
REF = "712a590"  # main before lane W of issue 20 (the weight-gradient kernel)
# bench_conv_kernels' shapes and the other direct-width stages of VGG16 (CIFAR, batch 32),
# whose weight gradients the channel-pair limit sends to the lowering or not
SHAPES = {**bck.SHAPES,
          "vgg 128->256 8x8": (32, 128, 8, 256, 3, 1, 1),
          "vgg 256->256 8x8": (32, 256, 8, 256, 3, 1, 1)}


def old_conv_group(backend, ref: str):
    """A ConvOps of commit ``ref`` on ``backend``'s runtime (its conv.cl and headers built as
    OLD_STEM), with scratch buffers of its own."""
    build_old_program(backend.runtime, OLD_STEM, ref, "conv.cl")
    return load_old_module(ref, "cl_conv").ConvOps(
        OldRuntime(backend.runtime, "conv", OLD_STEM, own_scratch=True))


class _MixedConv:
    """This checkout's conv group with the old weight gradient (and its direct/lowered
    choice): swapped in as ``backend.conv`` for the old blocks of training steps."""

    def __init__(self, new, old) -> None:
        self._new, self._old = new, old
        self.conv2d_weight_grad = old.conv2d_weight_grad
        self.conv2d_weight_grad_direct = old.conv2d_weight_grad_direct

    def __getattr__(self, name: str):
        return getattr(self._new, name)


def ab_shapes(backend, old, names: list[str], repeats: int) -> None:
    """ms and GFLOP per CPU-second of the old and new direct weight gradient and the lowering."""
    new = backend.conv
    print(f"{'layer (batch, C, HW, O, k, pad, G)':<34}{'old ms':>8}{'new ms':>8}{'lower ms':>9}"
          f"{'old GF':>7}{'new GF':>7}{'lowGF':>7}{'new/old':>8}{'low/new':>8}  direct old/new")
    for name in names:
        n, c, hw, o, k, pad, g = SHAPES[name]
        rng = np.random.default_rng(0)
        x = backend.from_host(rng.standard_normal((n, c, hw, hw), dtype=np.float32))
        oh = hw + 2 * pad - k + 1
        dy = backend.from_host(rng.standard_normal((n, o, oh, oh), dtype=np.float32))
        dw = backend.zeros((o, c // g, k, k))
        flops = 2.0 * n * o * oh * oh * (c // g) * k * k
        runs = {"old": lambda: old.conv2d_weight_grad(x, dy, k, k, pad, g, dw),
                "new": lambda: new.conv2d_weight_grad(x, dy, k, k, pad, g, dw),
                "lowered": lambda: Backend.conv2d_weight_grad(backend, x, dy, k, k, pad, g, dw)}
        times: dict[str, list[float]] = {key: [] for key in runs}
        for fn in runs.values():  # warm-up: builds, scratch buffers
            fn()
            backend.synchronize()
        for _ in range(repeats):
            for key, fn in runs.items():
                backend.synchronize()
                t = time.process_time()
                fn()
                backend.synchronize()
                times[key].append(time.process_time() - t)
        med = {key: float(np.median(t)) for key, t in times.items()}
        ratio = {key: float(np.median(np.array(times[key]) / np.array(times["new"])))
                 for key in ("old", "lowered")}
        gf = {key: flops / max(med[key], 1e-9) / 1e9 for key in runs}
        direct = "/".join("yes" if ops.conv2d_weight_grad_direct(o, c, g) else "no"
                          for ops in (old, new))
        print(f"{name:<34}{med['old'] * 1e3:>8.1f}{med['new'] * 1e3:>8.1f}"
              f"{med['lowered'] * 1e3:>9.1f}{gf['old']:>7.1f}{gf['new']:>7.1f}"
              f"{gf['lowered']:>7.1f}{ratio['old']:>8.2f}{ratio['lowered']:>8.2f}  {direct}",
              flush=True)


def ab_training(backend, old, model: str, steps: int, repeats: int) -> None:
    """Images per second (wall) and per CPU-second of this process of a zoo model's training
    step with the old vs the new weight gradient, blocks of steps alternating."""
    batch = bt.DEFAULT_BATCH.get(model, 128)
    batches = bt.synthetic_batches(build_model(model), batch, count=2)
    step, sync = bt.minidnn_runner(model, backend, training_recipe(model)["lam"], batches)
    new = backend.conv
    groups = {"old": _MixedConv(new, old), "new": new}
    wall: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    kernels: dict[str, dict[str, float]] = {"old": {}, "new": {}}  # name: device s (profiling)
    profiling = backend.runtime.kernel_events is not None
    try:
        for _ in range(repeats):
            for mode, group in groups.items():
                backend.conv = group
                step()  # untimed: builds, allocations
                sync()
                if profiling:
                    backend.kernel_times()
                c = time.process_time()
                wall[mode].append(batch * steps / bt.time_steps(step, sync, steps))
                cpu[mode].append(batch * steps / (time.process_time() - c))
                if profiling:
                    for name, (_, sec) in backend.kernel_times().items():
                        kernels[mode][name] = kernels[mode].get(name, 0.0) + sec
    finally:
        backend.conv = new
    if profiling:
        _print_kernels(kernels, repeats * steps)
    for unit, rates in (("images/s", wall), ("images per CPU-s", cpu)):
        med = {mode: float(np.median(r)) for mode, r in rates.items()}
        paired = float(np.median(np.array(rates["new"]) / np.array(rates["old"])))
        print(f"{model}, batch {batch}, {unit}: old wgrad {med['old']:.1f}, new wgrad "
              f"{med['new']:.1f} (medians of {repeats} x {steps} steps); new/old, median of the "
              f"{repeats} back-to-back pairs: {paired:.2f}x; blocks: old "
              f"{[round(v) for v in rates['old']]}, new {[round(v) for v in rates['new']]}")


def _print_kernels(kernels: dict[str, dict[str, float]], steps: int) -> None:
    """Device ms per step of the kernels, old vs new weight gradient (the 8 largest of either,
    the weight-gradient kernels and the total)."""
    names = sorted(set(kernels["old"]) | set(kernels["new"]),
                   key=lambda k: -max(kernels["old"].get(k, 0.0), kernels["new"].get(k, 0.0)))
    shown = names[:8] + [k for k in names[8:] if k.startswith("conv2d_wgrad")]
    print(f"{'kernel (device ms per step)':<28}{'old':>9}{'new':>9}")
    for name in shown + ["total"]:
        old, new = (sum(kernels[m].values()) if name == "total" else kernels[m].get(name, 0.0)
                    for m in ("old", "new"))
        print(f"{name:<28}{1e3 * old / steps:>9.1f}{1e3 * new / steps:>9.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="OpenCL device (as for minidnn train)")
    p.add_argument("--ref", default=REF, help="git commit of the old weight gradient")
    p.add_argument("--only", default="", help="run the shapes whose name contains this")
    p.add_argument("--model", default=None, choices=sorted(MODELS),
                   help="time training steps of this zoo model instead of layers")
    p.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="PoCL CPU threads")
    p.add_argument("--profile", action="store_true",
                   help="--model: also the device time per kernel (a profiling queue)")
    args = p.parse_args()
    if args.steps < 1 or args.repeats < 1:
        p.error("--steps and --repeats must be >= 1")
    os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(args.threads))
    backend = get_backend("opencl", args.device, profiling=args.profile)
    old = old_conv_group(backend, args.ref)
    print(bt.machine_line())
    print(f"device: {backend.device_name}; old weight gradient: {args.ref}; load average "
          f"{os.getloadavg()[0]:.1f}")
    if args.model:
        ab_training(backend, old, args.model, args.steps, args.repeats)
    else:
        ab_shapes(backend, old, [s for s in SHAPES if args.only in s], args.repeats)


if __name__ == "__main__":
    sys.exit(main())
