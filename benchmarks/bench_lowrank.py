"""Low-rank inference speed (issue 17): decomposed models against their dense original, on one
OpenCL device, in one interleaved run.

Every model file runs through an ``InferencePlan`` (what ``minidnn.predict`` and ``minidnn
evaluate`` use: the factorized layers' pieces expanded and fused like any conv) at each batch
size; the dense file's plan is the baseline. Each round times every model once on the same
images (input copy and output read included), rounds are repeated and the best time kept, so
load from other processes hits all models alike; read the ratios. Also printed per model:
weights, FLOPs per image (``compress.flops``), file bytes, test accuracy (``--data``), and
whether its predictions agree with the NumPy reference of the same file.

    python benchmarks/bench_lowrank.py DENSE.h5 DECOMPOSED.h5 [...] [--device 0:0]
        [--batches 1 100 1000] [--images 2000] [--repeats 5] [--eval-images N] [--data mnist]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import minidnn as mdn
from minidnn.backend import get_backend
from minidnn.compress.flops import layer_costs, total_cost
from minidnn.data import load_dataset
from minidnn.inference import InferencePlan
from minidnn.models import default_data


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="the dense model first, then decomposed ones")
    p.add_argument("--device", default=None, help="OpenCL device (default: minidnn's choice)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000])
    p.add_argument("--images", type=int, default=2000, help="test images timed per batch size")
    p.add_argument("--batch1-images", type=int, default=200, help="images timed at batch 1")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--eval-images", type=int, default=None,
                   help="accuracy and agreement on the first N test images (default: all)")
    p.add_argument("--data", default=None, help="dataset (default: the first model's)")
    p.add_argument("--data-root", default=None)
    return p.parse_args(argv)


def model_facts(path: str, test) -> dict:
    """Weights, FLOPs per image, file bytes and accuracy (NumPy reference forward)."""
    model = mdn.load(path)
    cost = total_cost(layer_costs(model, test.shape))
    pred = model.predict(test.images, min(1000, len(test)))
    return {"weights": cost.weights, "flops": cost.flops, "bytes": os.path.getsize(path),
            "accuracy": float(np.mean(pred == test.labels)), "pred": pred}


def time_plans(plans: list[InferencePlan], images: np.ndarray, batch: int,
               repeats: int) -> list[float]:
    """Best seconds per image of each plan over ``repeats`` interleaved rounds."""
    best = [float("inf")] * len(plans)
    for plan in plans:
        plan.predict(images[:batch])   # warm-up (kernels built, buffers allocated)
    for _ in range(repeats):
        for i, plan in enumerate(plans):
            t0 = time.perf_counter()
            plan.predict(images)
            best[i] = min(best[i], (time.perf_counter() - t0) / len(images))
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    backend = get_backend("opencl", device=args.device)
    first = mdn.load(args.files[0])
    data = args.data or default_data(first)
    _, test = load_dataset(data, args.data_root)
    if args.eval_images:
        test = type(test)(test.images[:args.eval_images], test.labels[:args.eval_images],
                          test.name, test.classes, test.mean, test.std, test.source)
    facts = [model_facts(f, test) for f in args.files]
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; "
          f"device: {backend.device_name}; data: {data} ({len(test)} test images)")
    base = facts[0]
    print(f"{'model':44} {'weights':>9} {'w x':>6} {'MFLOPs':>8} {'F x':>6} {'bytes':>10} "
          f"{'acc %':>6} {'agree':>6}")
    for f, fact in zip(args.files, facts):
        models = [mdn.load(f, backend=backend)]
        plan = InferencePlan(models[0], min(1000, len(test)))
        agree = np.mean(plan.predict(test.images) == fact["pred"])
        print(f"{os.path.basename(f):44} {fact['weights']:>9,} "
              f"{base['weights'] / fact['weights']:>5.2f}x {fact['flops'] / 1e6:>8.3f} "
              f"{base['flops'] / fact['flops']:>5.2f}x {fact['bytes']:>10,} "
              f"{100 * fact['accuracy']:>6.2f} {100 * agree:>5.1f}%")
    print(f"\ninference on the device, best of {args.repeats} interleaved rounds "
          f"(microseconds per image; speed-up = dense time / model time)")
    for batch in args.batches:
        n = args.batch1_images if batch == 1 else args.images
        images = test.images[:n]
        if len(images) < n:
            images = np.resize(test.images, (n,) + test.images.shape[1:])
        plans = [InferencePlan(mdn.load(f, backend=backend), batch) for f in args.files]
        times = time_plans(plans, images, batch, args.repeats)
        cells = "  ".join(f"{os.path.basename(f).removesuffix('.h5')} {1e6 * t:.1f} us "
                          f"({times[0] / t:.2f}x)" for f, t in zip(args.files, times))
        print(f"batch {batch:>5}: {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
