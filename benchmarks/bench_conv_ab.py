"""Training throughput with another checkout's forward / input-gradient convolution kernels
against this one's, in one process.

Modes alternate step blocks on the same model and backend, so all see the same machine load:
``base`` (``conv2d`` and ``conv2d_input_grad`` through the ``conv2d_k<KW>`` kernels of the
``cl_kernels`` folder ``--baseline``, see conv_baseline.py) and each work-item tile of
``--tiles`` (default: the one this runtime uses; see ``cl_conv.TILES``). Everything else in
the step (weight gradient, GEMMs, batch norm...) is the same code in every mode. Each figure is
the median of ``--repeats`` blocks; the ratio is the median of the per-round ratios.
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
    backend = get_backend("opencl", args.device)
    baseline = BaselineConv(backend, args.baseline)
    modes = ["base"] + ([t for t in args.tiles.split(",") if t] or [backend.conv.tile])
    step, sync = bt.minidnn_runner(args.model, backend, training_recipe(args.model)["lam"],
                                   batches)
    own = backend.conv.tile
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for _ in range(args.repeats):
            for mode in modes:
                _use(backend, baseline, mode)
                step()  # untimed: the switch's first step packs, allocates and builds
                sync()
                t = time.perf_counter()
                for _ in range(args.steps):
                    step()
                sync()
                seconds[mode].append(time.perf_counter() - t)
    finally:
        _use(backend, baseline, own)
    rate = {m: batch * args.steps / float(np.median(s)) for m, s in seconds.items()}
    ratio = {m: float(np.median([b / s for b, s in zip(seconds["base"], seconds[m])]))
             for m in modes[1:]}
    print(f"{args.model}, batch {batch}, {backend.device_name}, load {os.getloadavg()[0]:.1f}: "
          f"images/s " + ", ".join(f"{m} {v:.1f}" for m, v in rate.items()) + "; "
          + ", ".join(f"{m} / base {r:.2f}x" for m, r in ratio.items())
          + f" (median of {args.repeats} x {args.steps} steps)", flush=True)


if __name__ == "__main__":
    main()
