"""Sparse inference: a compressed LeNet-5 over the MNIST test set, CSR vs dense vs PyTorch.

The same weights run as CSR on the OpenCL device (every conv/linear layer: direct sparse
convolution for conv, dense x CSR^T for linear), as dense weights on the same device, on the
NumPy backend (dense and CSR) and, if installed, in PyTorch CPU (dense, the usual way a pruned
model is deployed). Each method classifies the same images at each batch size; predictions must
agree. The time includes copying each batch in and the logits out (what inference costs an
application). Methods run interleaved, best of ``--repeats``.

    python benchmarks/bench_inference.py [--model runs/lenet5.h5] [--batches 1 1000]
        [--images 10000] [--repeats 3] [--threads 2] [--profile]

``--profile`` adds the per-kernel device time of one pass at the largest batch, CSR and dense.

Without ``--model`` (or when the file is missing) the weights are a He-initialized LeNet-5
magnitude-pruned to ``--sparsity`` per layer: the timing is the same, the accuracy meaningless.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from minidnn.backend import get_backend
from minidnn.errors import MinidnnError
from minidnn.models import build_model


def load_weights(path: str | None, sparsity: float, seed: int):
    """(host model on NumPy, description): the saved model, or a pruned random LeNet-5."""
    if path and Path(path).is_file():
        from minidnn.io import load
        return load(path), f"{path}"
    model = build_model("lenet5", seed=seed).to(get_backend("numpy"))
    for _, p in model.prox_parameters():
        w = p.host_dense()
        k = int(round(sparsity * w.size))
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        flat = w.ravel().copy()
        flat[order[:k]] = 0
        p.data = p.backend.from_host(flat.reshape(w.shape))
    return model, f"random LeNet-5 pruned to {100 * sparsity:.0f}% zeros per layer (no --model)"


def test_images(data_root: str | None, count: int):
    """(images, labels) of the MNIST test set, or random images when it is not found."""
    from minidnn.data import load_dataset
    try:
        _, test = load_dataset("mnist", data_root)
        return test.images[:count], test.labels[:count], "MNIST test set"
    except MinidnnError as exc:
        rng = np.random.default_rng(0)
        print(f"note: {exc}; timing random images instead")
        return (rng.standard_normal((count, 1, 28, 28), dtype=np.float32),
                np.zeros(count, np.int64), "random images")


def copy_model(source, backend_name: str, form: str, device: str | None):
    """A copy of ``source`` on ``backend_name`` with every weight as CSR or dense."""
    model = build_model("lenet5").to(get_backend(backend_name, device))
    for (_, p), (_, q) in zip(model.named_parameters(), source.named_parameters()):
        p.data = p.backend.from_host(q.host_dense())
    for _, p in model.prox_parameters():
        if form == "csr":
            p.to_csr()
        else:
            p.to_dense()
    return model.eval()


def torch_predictor(source, threads: int):
    """predict(images, batch) with the PyTorch twin of ``source`` (dense weights), or None."""
    try:
        import torch
    except ImportError:
        return None
    from torch_twin import torch_twin  # test tooling in tests/ (on sys.path above)
    torch.set_num_threads(threads)
    net, _ = torch_twin(source)
    net.eval()

    def predict(images: np.ndarray, batch: int) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                out.append(net(torch.from_numpy(images[i:i + batch])).argmax(1).numpy())
        return np.concatenate(out)
    return predict


def time_it(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def profile_forms(source, device: str | None, images: np.ndarray, batch: int) -> None:
    """Print per-kernel device time of one predict pass, CSR and dense (profiling events)."""
    for form in ("csr", "dense"):
        backend = get_backend("opencl", device, profiling=True)
        model = copy_model(source, "opencl", form, device).to(backend)
        model.predict(images[:batch], batch)  # warm-up: builds, pools, CSR taps
        backend.kernel_times()  # drop the warm-up's events
        t0 = time.perf_counter()
        model.predict(images, batch)
        wall = time.perf_counter() - t0
        totals = {name: seconds for name, (_, seconds) in backend.kernel_times().items()}
        kernels = sum(totals.values())
        print(f"\nOpenCL kernel profile, {form}, batch {batch}, {len(images)} images: "
              f"{1e3 * wall:.1f} ms wall, {1e3 * kernels:.1f} ms in kernels")
        for name in sorted(totals, key=totals.get, reverse=True):
            share = 100 * totals[name] / kernels
            print(f"  {name:<26}{1e3 * totals[name]:>9.2f} ms {share:>6.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/lenet5.h5", help="a saved sparse LeNet-5 (.h5)")
    ap.add_argument("--sparsity", type=float, default=0.97, help="without --model: zeros/layer")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 1000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="OpenCL device (as MINIDNN_DEVICE)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="PyTorch threads")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy backend")
    ap.add_argument("--profile", action="store_true",
                    help="per-kernel device time of one pass at the largest batch")
    args = ap.parse_args()

    source, origin = load_weights(args.model, args.sparsity, seed=0)
    images, labels, data_name = test_images(args.data_root, args.images)
    zeros = sum(p.numel - p.count_nonzero() for _, p in source.prox_parameters())
    print(f"weights: {origin}; {100 * zeros / source.weight_count():.2f}% of "
          f"{source.weight_count():,} weights zero; {len(images)} images of the {data_name}")

    # name -> predict(images, batch)
    methods: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {}
    for form in ("csr", "dense"):
        m = copy_model(source, "opencl", form, args.device)
        methods[f"opencl {form}"] = m.predict
        if form == "csr":
            print(f"OpenCL device: {m.backend.device_name}")
    if not args.no_numpy:
        for form in ("csr", "dense"):
            m = copy_model(source, "numpy", form, None)
            methods[f"numpy {form}"] = m.predict
    torch_predict = torch_predictor(source, args.threads)
    if torch_predict is not None:
        methods["pytorch dense"] = torch_predict
    else:
        print("PyTorch not installed: no PyTorch column (pip install torch==2.13.0)")

    for batch in args.batches:
        warm = images[:max(batch, 200)]
        for fn in methods.values():  # warm-up: kernel builds, memory pools, caches
            fn(warm, batch)
        times, preds = {}, {}
        for _ in range(args.repeats):  # interleaved rounds: each method once per round
            for name, fn in methods.items():
                t, p = time_it(lambda: fn(images, batch), 1)
                times[name] = min(times.get(name, float("inf")), t)
                preds[name] = p
        ref = preds["opencl dense"]
        print(f"\nbatch {batch}: {len(images)} images, best of {args.repeats}")
        print(f"{'method':<15}{'seconds':>9}{'images/s':>11}{'accuracy':>10}"
              f"{'vs opencl dense':>17}{'vs pytorch':>12}  agrees")
        for name, t in times.items():
            vs_torch = (f"{times['pytorch dense'] / t:>11.2f}x" if "pytorch dense" in times
                        else f"{'-':>12}")
            agree = float((preds[name] == ref).mean())
            print(f"{name:<15}{t:>9.3f}{len(images) / t:>11.0f}"
                  f"{100 * (preds[name] == labels).mean():>9.2f}%"
                  f"{times['opencl dense'] / t:>16.2f}x{vs_torch}  {100 * agree:.2f}%")

    if args.profile:
        profile_forms(source, args.device, images, max(args.batches))


if __name__ == "__main__":
    main()
