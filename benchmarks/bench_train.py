"""Training throughput (images/s) of a zoo model on the NumPy and OpenCL backends and PyTorch CPU.

One training step = forward, softmax cross-entropy, backward, Adam update and the l1 prox (the
PyTorch twin applies the same soft-threshold after ``torch.optim.Adam``), on synthetic batches
copied from the host each step. The libraries run interleaved in one process; each figure is the
median of ``--repeats`` timed runs of ``--steps`` steps after a warm-up (kernel builds, caches).
``--profile`` adds a per-kernel breakdown of an OpenCL training step from profiling events.

Usage: ``python benchmarks/bench_train.py --model resnet32 [--batch-size 128] [--steps 5]
[--repeats 3] [--warmup 2] [--backends numpy,opencl,torch] [--device cpu] [--threads 2] [--profile]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from contextlib import nullcontext
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from minidnn.backend import get_backend
from minidnn.models import MODELS, build_model, training_recipe
from minidnn.optim import ProxAdam
from minidnn.train import Trainer

# batch sizes that keep one step within seconds on a small CPU (override with --batch-size)
DEFAULT_BATCH = {"lenet5": 128, "resnet32": 128, "alexnet": 64, "vgg16": 32}
LR = 1e-3


def synthetic_batches(model, batch_size: int, count: int = 4, seed: int = 0):
    """``count`` random (images, labels) host batches shaped for ``model``."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch_size,) + tuple(model.input_shape), dtype=np.float32),
             rng.integers(0, model.num_classes, batch_size).astype(np.int32))
            for _ in range(count)]


def minidnn_runner(name: str, backend, lam: float, batches) -> tuple[Callable, Callable]:
    """(step, sync) closures training zoo model ``name`` on ``backend`` with Prox-Adam."""
    model = build_model(name).to(backend)
    trainer = Trainer(model, ProxAdam(model.named_parameters(), lr=LR, lam=lam))
    it = iter(range(1 << 62))

    def step() -> None:
        images, labels = batches[next(it) % len(batches)]
        trainer.train_step(images, labels)

    return step, backend.synchronize


def torch_runner(name: str, lam: float, batches) -> tuple[Callable, Callable]:
    """(step, sync) closures training the PyTorch twin of ``name`` with Adam + the same prox."""
    import torch
    from torch_twin import torch_twin  # test tooling in tests/ (on sys.path above)
    model = build_model(name)
    net, params = torch_twin(model, torch.float32)
    net.train()
    prox = [params[n] for n, _ in model.prox_parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    threshold = LR * lam
    data = [(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))) for x, y in batches]
    it = iter(range(1 << 62))

    def step() -> None:
        x, y = data[next(it) % len(data)]
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        with torch.no_grad():
            for w in prox:
                w.copy_(torch.sign(w) * torch.clamp(w.abs() - threshold, min=0.0))

    return step, lambda: None


def time_steps(step: Callable, sync: Callable, steps: int) -> float:
    """Seconds for ``steps`` back-to-back training steps (waits for queued work)."""
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - t


def bench(runners: dict, steps: int, repeats: int, batch_size: int, warmup: int = 2) -> dict:
    """Median images/s per runner, repeats interleaved across runners."""
    for step, sync in runners.values():
        time_steps(step, sync, warmup)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for k, (step, sync) in runners.items():
            times[k].append(time_steps(step, sync, steps))
    return {k: steps * batch_size / float(np.median(t)) for k, t in times.items()}


def profile_opencl(name: str, device: str | None, lam: float, batches, steps: int,
                   warmup: int = 2) -> None:
    """Print per-kernel device time of an OpenCL training step (queue with PROFILING_ENABLE)."""
    backend = get_backend("opencl", device, profiling=True)
    step, sync = minidnn_runner(name, backend, lam, batches)
    time_steps(step, sync, warmup)
    backend.kernel_times()  # drop the warm-up's events
    wall = time_steps(step, sync, steps)
    times = backend.kernel_times()
    calls = {k: c for k, (c, _) in times.items()}
    totals = {k: t for k, (_, t) in times.items()}
    kernel_time = sum(totals.values())
    print(f"\nOpenCL kernel profile, {name}, {backend.device_name}: per step "
          f"{1e3 * wall / steps:.1f} ms wall, {1e3 * kernel_time / steps:.1f} ms in kernels")
    print(f"{'kernel':<28} {'calls/step':>10} {'ms/step':>10} {'share':>7}")
    for kname in sorted(totals, key=totals.get, reverse=True):
        print(f"{kname:<28} {calls[kname] / steps:>10.1f} {1e3 * totals[kname] / steps:>10.2f} "
              f"{100 * totals[kname] / kernel_time:>6.1f}%")


def machine_line() -> str:
    """The CPU model, its widest vector extension and the BLAS setting, for the record."""
    import platform
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2", "neon") if f in flags), "-")
    blas = os.environ.get("OPENBLAS_CORETYPE", "unset")
    return (f"machine: {model}, {os.cpu_count()} CPUs, widest vectors {vector}; "
            f"OPENBLAS_CORETYPE {blas}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lenet5", choices=sorted(MODELS))
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: 128 (lenet5, resnet32), 64 (alexnet), 32 (vgg16)")
    p.add_argument("--steps", type=int, default=5, help="training steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per library (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per library first")
    p.add_argument("--backends", default="numpy,opencl,torch",
                   help="comma-separated subset of numpy, opencl, torch")
    p.add_argument("--device", default=None,
                   help="OpenCL device (as for minidnn train); a comma-separated list times "
                        "each device as its own column, e.g. to compare OpenCL runtimes; "
                        "'all': every usable device")
    p.add_argument("--lam", type=float, default=None,
                   help="l1 strength (default: minidnn train's)")
    p.add_argument("--threads", type=int, default=None,
                   help="limit NumPy's BLAS, PyTorch and PoCL CPU threads (on a busy machine, "
                        "spinning thread pools slow each other down)")
    p.add_argument("--profile", action="store_true",
                   help="also print per-kernel times of an OpenCL step (profiling events)")
    args = p.parse_args(argv)
    if args.device == "all":
        from minidnn.backend.devices import survey_devices
        args.device = ",".join(s.index for s in survey_devices() if s.usable) or None
    print(machine_line())
    batch = args.batch_size or DEFAULT_BATCH.get(args.model, 128)
    lam = args.lam if args.lam is not None else training_recipe(args.model)["lam"]
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(wanted) - {"numpy", "opencl", "torch"}
    if unknown:
        p.error(f"unknown backends {sorted(unknown)}")
    limit = nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(args.threads)
        for var in ("POCL_CPU_MAX_CU_NUM", "POCL_MAX_PTHREAD_COUNT"):  # read when PoCL starts
            os.environ.setdefault(var, str(args.threads))
    batches = synthetic_batches(build_model(args.model), batch)
    runners: dict[str, tuple[Callable, Callable]] = {}
    devices = {}
    with limit:
        for kind in wanted:
            if kind == "torch":
                try:
                    import torch
                except ImportError:
                    print("note: PyTorch not importable; skipping its column")
                    continue
                if args.threads:
                    torch.set_num_threads(args.threads)
                runners["torch"] = torch_runner(args.model, lam, batches)
                devices["torch"] = f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads"
            elif kind == "numpy":
                runners[kind] = minidnn_runner(args.model, get_backend("numpy"), lam, batches)
                devices[kind] = "host"
            else:
                specs = args.device.split(",") if args.device else [None]
                for spec in specs:
                    column = kind if len(specs) == 1 else f"cl:{spec}"
                    backend = get_backend(kind, spec)
                    runners[column] = minidnn_runner(args.model, backend, lam, batches)
                    devices[column] = backend.device_name
        rates = bench(runners, args.steps, args.repeats, batch, args.warmup)
        print(f"{args.model} training (Prox-Adam lr {LR}, lam {lam:.4g}), batch {batch}, "
              f"median of {args.repeats} x {args.steps} steps")
        print(f"{'library':<10} {'images/s':>10} {'ms/step':>9} {'vs torch':>9}  device")
        ref = rates.get("torch")
        for k, rate in rates.items():
            ratio = f"{rate / ref:.2f}x" if ref else "-"
            print(f"{k:<10} {rate:>10.1f} {1e3 * batch / rate:>9.1f} {ratio:>9}  {devices[k]}")
        if args.profile:
            for spec in (args.device.split(",") if args.device else [None]):
                profile_opencl(args.model, spec, lam, batches, args.steps, args.warmup)


if __name__ == "__main__":
    main()
