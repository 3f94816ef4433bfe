"""Training throughput with another checkout's forward / input-gradient convolution kernels
against this one's, in one process.

Modes alternate step blocks on the same model and backend, so all see the same machine load:
``base`` (``conv2d`` and ``conv2d_input_grad`` through the ``conv2d_k<KW>`` kernels of the
``cl_kernels`` folder ``--baseline``, see conv_baseline.py) and each work-item tile of
``--tiles`` (default: the one this runtime uses; see ``cl_conv.TILES``). Everything else in
the step (weight gradient, GEMMs, batch norm...) is the same code in every mode. Each figure is
the median of ``--repeats`` blocks; the ratio is the median of the per-round ratios. Also
timed (profiling events): the forward / input-gradient kernels' own time per step in each mode
(``conv2d_k*``, ``conv2d_r2_k*``, the baseline's), less diluted by the rest of the step.
Usage: ``git archive main cl_kernels | tar -x -C /tmp/main`` then
``python benchmarks/bench_conv_ab.py --model resnet32 --device 1:0 --baseline
/tmp/main/cl_kernels [--tiles c16r1,c8r2] [--steps 2] [--repeats 4] [--threads 2]``
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import bench_train as bt
from conv_baseline import BaselineConv
from minidnn.backend import get_backend
from minidnn.models import MODELS, build_model, training_recipe


def _use(backend, baseline: BaselineConv, mode: str) -> None:
    """Route the backend's conv2d / conv2d_input_grad to the baseline (mode "base") or to its
    own kernels with the work-item tile ``mode``."""
    ops = backend.conv
    for name in ("conv2d", "conv2d_input_grad"):
        if mode == "base":
            setattr(ops, name, getattr(baseline, name))
        else:
            ops.__dict__.pop(name, None)
            ops.tile = mode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet32", choices=sorted(MODELS))
    p.add_argument("--device", default=None, help="OpenCL device (as for minidnn train)")
    p.add_argument("--baseline", required=True, help="a cl_kernels folder (the old kernels)")
    p.add_argument("--tiles", default="", help="comma-separated tiles (default: the runtime's)")
    p.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=4, help="timed blocks per mode (median)")
    p.add_argument("--threads", type=int, default=2, help="PoCL CPU threads")
    args = p.parse_args()
    os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(args.threads))
    print(bt.machine_line())
    batch = bt.DEFAULT_BATCH.get(args.model, 128)
    batches = bt.synthetic_batches(build_model(args.model), batch, count=2)
    backend = get_backend("opencl", args.device, profiling=True)
    baseline = BaselineConv(backend, args.baseline)
    modes = ["base"] + ([t for t in args.tiles.split(",") if t] or [backend.conv.tile])
    step, sync = bt.minidnn_runner(args.model, backend, training_recipe(args.model)["lam"],
                                   batches)
    own = backend.conv.tile
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    kernel_s: dict[str, list[float]] = {m: [] for m in modes}  # conv kernels' time per block
    try:
        for _ in range(args.repeats):
            for mode in modes:
                _use(backend, baseline, mode)
                step()  # untimed: the switch's first step packs, allocates and builds
                sync()
                backend.kernel_times()  # drops the events so far
                t = time.perf_counter()
                for _ in range(args.steps):
                    step()
                sync()
                seconds[mode].append(time.perf_counter() - t)
                kernel_s[mode].append(_conv_seconds(backend.kernel_times()))
    finally:
        _use(backend, baseline, own)
    _report(args, backend, batch, modes, seconds, kernel_s)


def _conv_seconds(times: dict[str, tuple[int, float]]) -> float:
    """Seconds of the forward / input-gradient convolution kernels in a kernel_times() dict."""
    return sum(s for name, (_, s) in times.items()
               if name.startswith(("conv2d_k", "conv2d_r2_k", "base:conv2d_k")))


def _report(args, backend, batch: int, modes: list[str], seconds: dict[str, list[float]],
            kernel_s: dict[str, list[float]]) -> None:
    """Images/s and conv-kernel ms per step of each mode (medians), and their ratios to base
    (medians of the per-round ratios)."""
    def ratio(d, m):
        return float(np.median([b / max(s, 1e-12) for b, s in zip(d["base"], d[m])]))
    rate = {m: batch * args.steps / float(np.median(s)) for m, s in seconds.items()}
    conv_ms = {m: float(np.median(s)) * 1e3 / args.steps for m, s in kernel_s.items()}
    print(f"{args.model}, batch {batch}, {backend.device_name}, load {os.getloadavg()[0]:.1f}, "
          f"median of {args.repeats} x {args.steps} steps:\n  images/s "
          + ", ".join(f"{m} {v:.1f}" for m, v in rate.items()) + "; "
          + ", ".join(f"{m} / base {ratio(seconds, m):.2f}x" for m in modes[1:])
          + "\n  forward + input-gradient kernels, ms/step "
          + ", ".join(f"{m} {v:.0f}" for m, v in conv_ms.items()) + "; "
          + ", ".join(f"{m} / base {ratio(kernel_s, m):.2f}x" for m in modes[1:]), flush=True)


if __name__ == "__main__":
    main()
