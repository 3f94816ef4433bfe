"""Inference speed of channel-pruned models against their dense original, on one OpenCL device.

Each file is loaded onto the device as saved (dense layers; a channel-pruned file is just a
narrower dense network) and classifies the same images through ``Model.predict`` (the prepared
inference plan), at each batch size; models run interleaved, best of ``--repeats``. Printed per
model: seconds per image, the speed-up over the dense file, and for context the FLOP and weight
ratios (``minidnn.compress.flops``) and the file bytes. Time includes copying each batch in and
the predictions out. On a shared machine read the ratios, not the absolute figures.

    python benchmarks/bench_channels.py DENSE.h5 PRUNED.h5 [PRUNED2.h5 ...]
        [--device 0:0] [--batches 1 100] [--images 1000] [--batch1-images 100] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import minidnn as mdn
from minidnn.backend import resolve_backend
from minidnn.compress.flops import layer_costs, total_cost


def best_time(model, images: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    model.predict(images, batch_size=batch)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dense")
    p.add_argument("pruned", nargs="+")
    p.add_argument("--device", default=None)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 100])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--batch1-images", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    backend = resolve_backend("opencl", args.device)
    paths = [args.dense] + args.pruned
    models = [mdn.load(path, backend) for path in paths]
    shape = tuple(models[0].input_shape)
    images = np.random.default_rng(0).standard_normal((args.images,) + shape).astype(np.float32)
    costs = [total_cost(layer_costs(m)) for m in models]
    print(f"device: {backend.device_name}")
    for m in models:   # warm-up: plans prepared, kernels built
        m.predict(images[:2], batch_size=1)
        m.predict(images[:args.batches[-1]], batch_size=args.batches[-1])
    for batch in args.batches:
        x = images[:args.batch1_images] if batch == 1 else images
        best = [float("inf")] * len(models)
        for _ in range(args.repeats):
            for i, m in enumerate(models):
                best[i] = min(best[i], best_time(m, x, batch))
        print(f"\nbatch {batch}, {len(x)} images, best of {args.repeats} (interleaved)")
        print(f"{'model':<44} {'ms/image':>9} {'speed-up':>9} {'FLOPs x':>8} "
              f"{'weights x':>9} {'file bytes':>11}")
        for path, t, c in zip(paths, best, costs):
            print(f"{os.path.basename(path):<44} {1000 * t / len(x):9.3f} "
                  f"{best[0] / t:8.2f}x {costs[0].flops / c.flops:7.2f}x "
                  f"{costs[0].weights / c.weights:8.2f}x {os.path.getsize(path):11,}")


if __name__ == "__main__":
    main()
