"""Training throughput with and without the direct stride-1 convolution, in one process.

The two modes alternate step blocks on the same model and backend (``Conv2d.DIRECT_MIN_WIDTH``
8, the default, vs. a width no layer reaches: every convolution then runs im2row + GEMM), so
both see the same machine load; each figure is the median of ``--repeats`` blocks.
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
    modes = {"direct": Conv2d.DIRECT_MIN_WIDTH, "im2row": 1 << 30}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for _ in range(args.repeats):
            for mode, width in modes.items():
                Conv2d.DIRECT_MIN_WIDTH = width
                step()  # untimed: the switch's first step allocates and builds
                sync()
                t = time.perf_counter()
                for _ in range(args.steps):
                    step()
                sync()
                rates[mode].append(batch * args.steps / (time.perf_counter() - t))
    finally:
        Conv2d.DIRECT_MIN_WIDTH = modes["direct"]
    med = {m: float(np.median(r)) for m, r in rates.items()}
    print(f"{args.model}, batch {batch}, {backend.device_name}: images/s direct "
          f"{med['direct']:.1f}, im2row {med['im2row']:.1f}, direct/im2row "
          f"{med['direct'] / med['im2row']:.2f}x (median of {args.repeats} x {args.steps} steps)")


if __name__ == "__main__":
    main()
