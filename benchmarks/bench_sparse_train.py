"""Sparse training (issue 20): does training a frozen-support layer as CSR pay?

Two measurements, each printing ratios taken in one process:

``run``: the README's main job (``minidnn train lenet5 --data mnist --target-sparsity 0.98
--retrain-steps 468``) end to end, with sparse training on (the default) and off
(``--sparse-training-density 0``), alternating, and PyTorch's dense LeNet-5 training
(``bench_train.py``'s twin: Adam + the same soft-threshold) timed before and after each pair.
Images/s of a run = (main steps + retrain steps) x batch / (the main phase's training seconds
+ the retrain phase's): training steps with data loading and the periodic loss/zero-count log
lines, without the test evaluations, batch-norm recalibration and saving.

``step``: one model's training step with its weights magnitude-pruned to a zero fraction per
conv/linear layer, held as a dense weight + mask (what training ran before issue 20) or as CSR
(the switch), steps interleaved (median of repeats), plus PyTorch's dense step on the same
batch. ``--zeros main`` uses the main job's per-layer zeros (LeNet-5: conv1 43%, conv2 94.4%,
fc1 98.4%, fc2 93.2%).

Usage:
  python benchmarks/bench_sparse_train.py run --device 1:0 --threads 2 [--repeats 1]
      [--data-root /work/shared/datasets] [--steps N] [--retrain-steps 468]
  python benchmarks/bench_sparse_train.py step --model resnet32 --zeros 0.6,0.8,0.9
      --device 0:0 --threads 2 [--steps 2] [--repeats 3]
  python benchmarks/bench_sparse_train.py conv --device 0:0 --threads 2 [--densities 0.4,0.1]

``conv``: the three products of a CSR filter bank in training (forward, dW, dX) at LeNet-5's
conv2 and ResNet-32's 3x3 stages, as run now (direct sparse kernels) and through im2row rows
(CSR product, SDDMM, CSR product + row2im: the path before issue 20), interleaved.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_train import (DEFAULT_BATCH, LR, machine_line, synthetic_batches,  # noqa: E402
                         time_steps, torch_runner)
from minidnn.backend import get_backend  # noqa: E402
from minidnn.models import build_model, training_recipe  # noqa: E402
from minidnn.optim import Adam  # noqa: E402
from minidnn.train import Trainer  # noqa: E402

MAIN_JOB_ZEROS = {"conv1": 0.43, "conv2": 0.944, "fc1": 0.984, "fc2": 0.932}


def torch_rate(model: str, batch: int, steps: int) -> float | None:
    """PyTorch's dense training images/s (None without torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    lam = training_recipe(model)["lam"]
    step, sync = torch_runner(model, lam, synthetic_batches(build_model(model), batch))
    time_steps(step, sync, 2)
    return steps * batch / time_steps(step, sync, steps)


# ---------------------------------------------------------------------------- run
def main_job(device: str, sparse: bool, args, log_path: Path) -> dict:
    """One main-job run; its figures and images/s over the training steps of both phases."""
    from minidnn.workflows import TrainSpec, train_model
    spec = TrainSpec(model="lenet5", data="mnist", data_root=args.data_root, backend="opencl",
                     device=device, target_sparsity=0.98, retrain_steps=args.retrain_steps,
                     steps=args.steps, sparse_density=0.6 if sparse else 0.0,
                     out=str(Path(args.tmp) / f"l5-{int(sparse)}.h5"))
    with open(log_path, "a") as log:
        result = train_model(spec, log=lambda s: print(s, file=log, flush=True))
    batch = 128
    seconds = result["train_seconds"] + result.get("retrain_seconds", 0.0)
    result["images_per_second"] = (result["steps"] + result["retrain_steps"]) * batch / seconds
    result["main_ips"] = result["steps"] * batch / result["train_seconds"]
    result["retrain_ips"] = result["retrain_steps"] * batch / result["retrain_seconds"]
    return result


def run_main(args) -> None:
    print(machine_line())
    torch_rates, runs = [], {True: [], False: []}
    log_path = Path(args.log)
    for r in range(args.repeats):
        rate = torch_rate("lenet5", 128, args.torch_steps)
        if rate:
            torch_rates.append(rate)
        for sparse in ((False, True) if r % 2 == 0 else (True, False)):
            load = os.getloadavg()[0]
            res = main_job(args.device, sparse, args, log_path)
            res["load"] = load
            runs[sparse].append(res)
            print(f"sparse training {'on ' if sparse else 'off'}: {res['images_per_second']:7.0f}"
                  f" img/s (main phase {res['main_ips']:.0f}, retrain {res['retrain_ips']:.0f})"
                  f"  accuracy {100 * res['accuracy']:.2f}%  zeros {100 * res['zeros']:.2f}%"
                  f"  switched {res.get('sparse_training', {}).get('switched', {})}"
                  f"  [load {load:.1f}]", flush=True)
    rate = torch_rate("lenet5", 128, args.torch_steps)
    if rate:
        torch_rates.append(rate)
    on = float(np.median([r["images_per_second"] for r in runs[True]]))
    off = float(np.median([r["images_per_second"] for r in runs[False]]))
    print(f"\nLeNet-5 main job on {runs[True][0]['backend']}, median of {args.repeats}:")
    print(f"  sparse training on / off: {on:.0f} / {off:.0f} img/s = {on / off:.2f}x")
    if torch_rates:
        t = float(np.median(torch_rates))
        print(f"  PyTorch dense: {t:.0f} img/s (runs: {', '.join(f'{x:.0f}' for x in torch_rates)})"
              f"; on / torch {on / t:.2f}x (goal 1.5x), off / torch {off / t:.2f}x")
    print(f"  (log of the runs: {log_path})")


# ---------------------------------------------------------------------------- step
def prune(model, backend, zeros: str) -> None:
    """Magnitude-prune every conv/linear weight to its zero fraction (a mask of the rest)."""
    for name, p in model.prox_parameters():
        z = MAIN_JOB_ZEROS[name.split(".")[-2]] if zeros == "main" else float(zeros)
        w = p.host_dense()
        k = int(round(z * w.size))
        if k:
            cut = np.partition(np.abs(w).ravel(), k - 1)[k - 1]
            w[np.abs(w) <= cut] = 0.0
        p.data = backend.from_host(w)
        p.set_mask((w != 0).astype(np.float32))


def step_runner(name: str, device: str, zeros: str, csr_density: float, batches,
                profiling: bool = False):
    """(step, sync) of a pruned model: dense + mask, or CSR where at most csr_density dense."""
    from minidnn.compress.sparse_train import mask_density, switch_to_csr
    backend = get_backend("opencl", device, profiling=profiling)
    model = build_model(name, seed=0).to(backend)
    prune(model, backend, zeros)
    for _, p in model.prox_parameters():
        if mask_density(p) <= csr_density:
            switch_to_csr(p)
    trainer = Trainer(model, Adam(model.named_parameters(), lr=LR))
    it = iter(range(1 << 62))

    def step() -> None:
        images, labels = batches[next(it) % len(batches)]
        trainer.train_step(images, labels)
    step.backend = backend
    return step, backend.synchronize


def print_profile(args, batches, zeros: str) -> None:
    """Per-kernel device time of a step in both forms (profiling events)."""
    for form, density in (("dense + mask", 0.0), ("CSR", args.csr_density)):
        step, sync = step_runner(args.model, args.device, zeros, density, batches, True)
        time_steps(step, sync, args.warmup)
        step.backend.kernel_times()
        wall = time_steps(step, sync, args.steps)
        times = step.backend.kernel_times()
        total = sum(t for _, t in times.values())
        print(f"\n{form}, zeros {zeros}: {1e3 * wall / args.steps:.1f} ms/step wall, "
              f"{1e3 * total / args.steps:.1f} ms in kernels")
        for k in sorted(times, key=lambda k: times[k][1], reverse=True)[:12]:
            calls, t = times[k]
            print(f"  {k:<26} {calls / args.steps:5.1f}/step {1e3 * t / args.steps:8.2f} ms "
                  f"{100 * t / total:5.1f}%")


def run_step(args) -> None:
    print(machine_line())
    batch = args.batch_size or DEFAULT_BATCH.get(args.model, 128)
    batches = synthetic_batches(build_model(args.model), batch)
    print(f"{args.model} training step, batch {batch}, median of {args.repeats} x {args.steps} "
          f"steps interleaved; device {args.device}; load {os.getloadavg()[0]:.1f}")
    print(f"{'zeros':>6} {'dense+mask img/s':>17} {'CSR img/s':>10} {'CSR/dense':>10}")
    rates = {}
    for zeros in args.zeros.split(","):
        runners = {"dense": step_runner(args.model, args.device, zeros, 0.0, batches),
                   "csr": step_runner(args.model, args.device, zeros, args.csr_density, batches)}
        for step, sync in runners.values():
            time_steps(step, sync, args.warmup)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.repeats):
            for k, (step, sync) in runners.items():
                times[k].append(time_steps(step, sync, args.steps))
        r = {k: args.steps * batch / float(np.median(t)) for k, t in times.items()}
        rates[zeros] = r
        print(f"{zeros:>6} {r['dense']:>17.1f} {r['csr']:>10.1f} {r['csr'] / r['dense']:>9.2f}x",
              flush=True)
    if args.profile:
        for zeros in args.zeros.split(","):
            print_profile(args, batches, zeros)
    t = torch_rate(args.model, batch, args.steps * args.repeats) if args.torch else None
    if t:
        print(f"PyTorch dense: {t:.1f} img/s; " + ", ".join(
            f"zeros {z}: CSR {r['csr'] / t:.2f}x, dense {r['dense'] / t:.2f}x torch"
            for z, r in rates.items()))


# ---------------------------------------------------------------------------- conv
# (name, N, C, H, O, k, pad): LeNet-5's conv2, ResNet-32's three 3x3 stages
CONV_SHAPES = [("lenet5 conv2", 128, 20, 12, 50, 5, 0), ("r32 stage 1", 128, 16, 32, 16, 3, 1),
               ("r32 stage 2", 128, 32, 16, 32, 3, 1), ("r32 stage 3", 128, 64, 8, 64, 3, 1)]


def conv_forms(b, n: int, c: int, h: int, o: int, k: int, pad: int, density: float) -> dict:
    """Closures of a CSR filter bank's three training products, direct vs through im2row rows
    (the path before issue 20)."""
    from minidnn.sparse import CSRMatrix
    rng = np.random.default_rng(0)
    w = rng.standard_normal((o, c * k * k)).astype(np.float32)
    w[rng.random(w.shape) >= density] = 0
    m = CSRMatrix.from_dense(b, b.from_host(w))
    x = b.from_host(rng.standard_normal((n, c, h, h)).astype(np.float32))
    oh = h + 2 * pad - k + 1
    dy = b.from_host(rng.standard_normal((n, o, oh, oh)).astype(np.float32))
    dw = b.zeros((m.nnz,))

    def rows_dy():
        d3 = b.transpose(dy.reshape((n, 1, o, oh * oh)), (1, 0, 3, 2))
        return d3.reshape((1, n * oh * oh, o))

    def fwd_rows():
        y = m.matmul_t(b.im2row(x, k, k, 1, pad, 1))
        b.transpose(y.reshape((1, n, oh * oh, o)), (1, 0, 3, 2))
    forms = {
        "forward": (lambda: m.conv2d(x, None, k, k, 1, pad), fwd_rows),
        "dW": (lambda: m.conv2d_weight_grad(dy, x, k, k, 1, pad, dw, False),
               lambda: m.sddmm(rows_dy(), b.im2row(x, k, k, 1, pad, 1), dw, False)),
        "dX": (lambda: m.conv2d_input_grad(dy, (n, c, h, h), k, k, pad),
               lambda: b.row2im(m.matmul(rows_dy()), (n, c, h, h), k, k, 1, pad, 1))}
    return forms


def run_conv(args) -> None:
    print(machine_line())
    b = get_backend("opencl", args.device)
    print(f"CSR convolution products in training, direct vs im2row rows (ms, median of "
          f"{args.repeats} x {args.steps}, interleaved); {b.device_name}; load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'layer':<14} {'density':>7} {'product':>8} {'direct':>8} {'rows':>8} {'rows/direct':>12}")
    for name, n, c, h, o, k, pad in CONV_SHAPES:
        for density in (float(d) for d in args.densities.split(",")):
            for product, (direct, rows) in conv_forms(b, n, c, h, o, k, pad, density).items():
                t = {"direct": [], "rows": []}
                for f in (direct, rows):
                    time_steps(f, b.synchronize, 1)
                for _ in range(args.repeats):
                    t["direct"].append(time_steps(direct, b.synchronize, args.steps))
                    t["rows"].append(time_steps(rows, b.synchronize, args.steps))
                d, r = (1e3 * float(np.median(t[f])) / args.steps for f in ("direct", "rows"))
                print(f"{name:<14} {density:>7.2f} {product:>8} {d:>8.2f} {r:>8.2f} "
                      f"{r / d:>11.2f}x", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="the main job end to end, sparse training on vs off")
    r.add_argument("--device", default="1:0")
    r.add_argument("--repeats", type=int, default=1, help="pairs of runs (median)")
    r.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent
                                               / "shared" / "datasets"))
    r.add_argument("--steps", type=int, default=None, help="main phase steps (default 2 epochs)")
    r.add_argument("--retrain-steps", type=int, default=468)
    r.add_argument("--torch-steps", type=int, default=100)
    r.add_argument("--log", default="bench_sparse_train.log",
                   help="the runs' training logs are appended here")
    s = sub.add_parser("step", help="one pruned training step, dense + mask vs CSR")
    s.add_argument("--model", default="resnet32")
    s.add_argument("--zeros", default="0.6,0.8,0.9", help="comma-separated fractions, or 'main'")
    s.add_argument("--device", default="0:0")
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--csr-density", type=float, default=1.0,
                   help="CSR for the layers at most this dense (default: all)")
    s.add_argument("--steps", type=int, default=2)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--no-torch", dest="torch", action="store_false")
    s.add_argument("--profile", action="store_true",
                   help="also print per-kernel times of a step in both forms")
    c = sub.add_parser("conv", help="the CSR convolution products, direct vs im2row rows")
    c.add_argument("--device", default="0:0")
    c.add_argument("--densities", default="0.4,0.1")
    c.add_argument("--steps", type=int, default=5)
    c.add_argument("--repeats", type=int, default=3)
    for q in (r, s, c):
        q.add_argument("--threads", type=int, default=None,
                       help="limit PyTorch, BLAS and PoCL threads (as bench_train.py)")
    args = p.parse_args(argv)
    limit = nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(args.threads)
        for var in ("POCL_CPU_MAX_CU_NUM", "POCL_MAX_PTHREAD_COUNT"):
            os.environ.setdefault(var, str(args.threads))
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    with limit, tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        {"run": run_main, "step": run_step, "conv": run_conv}[args.what](args)


if __name__ == "__main__":
    main()
