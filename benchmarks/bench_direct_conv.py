"""Training throughput with and without the direct stride-1 convolution, in one process.

Three modes alternate step blocks on the same model and backend, so all see the same machine
load: ``direct`` (the default: direct forward, input and weight gradients), ``direct-im2row-dw``
(``Conv2d.DIRECT_WEIGHT_GRAD`` off: the weight gradient through im2row rows + GEMM, as before
issue 20's session 6) and ``im2row`` (``Conv2d.DIRECT_MIN_WIDTH`` a width no layer reaches:
every convolution runs im2row + GEMM); each figure is the median of ``--repeats`` blocks.
Usage: ``python benchmarks/bench_direct_conv.py --model resnet32 --device 0:0 [--steps 2]
[--repeats 4] [--threads 2]``
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import bench_train as bt
from minidnn.backend import get_backend
from minidnn.layers.linear import Conv2d
from minidnn.models import MODELS, build_model, training_recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet32", choices=sorted(MODELS))
    p.add_argument("--device", default=None, help="OpenCL device (as for minidnn train)")
    p.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=4, help="timed blocks per mode (median)")
    p.add_argument("--threads", type=int, default=2, help="PoCL CPU threads")
    args = p.parse_args()
    os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(args.threads))
    print(bt.machine_line())
    batch = bt.DEFAULT_BATCH.get(args.model, 128)
    batches = bt.synthetic_batches(build_model(args.model), batch, count=2)
    backend = get_backend("opencl", args.device)
    step, sync = bt.minidnn_runner(args.model, backend, training_recipe(args.model)["lam"],
                                   batches)
    default = (Conv2d.DIRECT_MIN_WIDTH, Conv2d.DIRECT_WEIGHT_GRAD)
    modes = {"direct": default, "direct-im2row-dw": (default[0], False),
             "im2row": (1 << 30, True)}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for _ in range(args.repeats):
            for mode, (width, dw) in modes.items():
                Conv2d.DIRECT_MIN_WIDTH, Conv2d.DIRECT_WEIGHT_GRAD = width, dw
                step()  # untimed: the switch's first step allocates and builds
                sync()
                t = time.perf_counter()
                for _ in range(args.steps):
                    step()
                sync()
                rates[mode].append(batch * args.steps / (time.perf_counter() - t))
    finally:
        Conv2d.DIRECT_MIN_WIDTH, Conv2d.DIRECT_WEIGHT_GRAD = default
    med = {m: float(np.median(r)) for m, r in rates.items()}
    print(f"{args.model}, batch {batch}, {backend.device_name}, load {os.getloadavg()[0]:.1f}: "
          f"images/s " + ", ".join(f"{m} {v:.1f}" for m, v in med.items())
          + f"; direct / direct-im2row-dw {med['direct'] / med['direct-im2row-dw']:.2f}x, "
          f"direct / im2row {med['direct'] / med['im2row']:.2f}x "
          f"(median of {args.repeats} x {args.steps} steps)")


if __name__ == "__main__":
    main()
