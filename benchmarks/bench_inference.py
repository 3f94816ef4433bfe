"""Sparse inference latency and throughput: minidnn's prepared plan vs ONNX Runtime and PyTorch.

A network in inference form (CSR where at most 50% dense) on the OpenCL device runs through an
``InferencePlan`` (what ``minidnn.predict`` and ``minidnn evaluate`` use), and through the
regular layer-by-layer forward for comparison; the same weights run dense in PyTorch CPU and in
ONNX Runtime CPU (exported from the PyTorch twin, ``--threads`` intra-op threads), each when
installed. Each method classifies the same images at each batch size; predictions must agree.
Time includes copying each batch in and the outputs out. Methods run interleaved, best of
``--repeats``; read the ratios, not the absolute figures, on a loaded machine.

    python benchmarks/bench_inference.py [--net lenet5|tinynet|resnet32] [--model FILE]
        [--batches 1 1000] [--images 10000] [--repeats 3] [--threads 2] [--profile]

``--net``: LeNet-5 (``--model`` a trained sparse file, else random weights magnitude-pruned to
``--sparsity``), the tutorial's TinyNet (a user network, pruned to ``--sparsity``) or ResNet-32
(random weights and BN statistics, pruned to ``--sparsity``; random 32x32 images). Batch 1 times
the first ``--batch1-images`` images. ``--profile`` prints where the microseconds of one image at
batch 1 go: the regular forward's wall time, the plan's input copy, enqueues and wait + read,
and the device time of each kernel.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import minidnn as mdn
from minidnn.backend import get_backend
from minidnn.errors import MinidnnError
from minidnn.inference import InferencePlan, regular_logits
from minidnn.models import build_model

Predict = Callable[[np.ndarray, int], np.ndarray]


class TinyNet(mdn.Model):
    """The tutorial's user network (docs/tutorial.md): conv 8@3x3, ReLU, pool, fc 64, fc 10."""

    input_shape = (1, 28, 28)

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        rng = np.random.default_rng(seed)
        self.conv = mdn.Conv2d(1, 8, 3, padding=1, rng=rng)
        self.relu1 = mdn.ReLU()
        self.pool = mdn.MaxPool2d(2)
        self.flatten = mdn.Flatten()
        self.fc1 = mdn.Linear(1568, 64, rng=rng)
        self.relu2 = mdn.ReLU()
        self.fc2 = mdn.Linear(64, 10, rng=rng)


def factory(net: str) -> Callable[[], mdn.Model]:
    return TinyNet if net == "tinynet" else (lambda: build_model(net, seed=0))


def source_model(args) -> tuple[mdn.Model, str]:
    """(host model on NumPy, description): a saved file, or pruned random weights."""
    if args.net == "lenet5" and args.model and Path(args.model).is_file():
        return mdn.load(args.model), args.model
    model = factory(args.net)().to(get_backend("numpy"))
    rng = np.random.default_rng(0)
    for _, p in model.prox_parameters():
        w = p.host_dense()
        w[np.abs(w) < np.quantile(np.abs(w), args.sparsity)] = 0
        p.data = p.backend.from_host(w)
    for _, m in model.named_modules():  # non-trivial BN statistics (ResNet-32)
        if isinstance(m, mdn.BatchNorm2d):
            m.running_mean = rng.normal(0, 0.1, m.num_features).astype(np.float32)
            m.running_var = rng.uniform(0.5, 2, m.num_features).astype(np.float32)
    return model, f"random {args.net} pruned to {100 * args.sparsity:.0f}% zeros per layer"


def test_images(args, shape) -> tuple[np.ndarray, np.ndarray | None, str]:
    if args.net != "resnet32":
        try:
            _, test = mdn.load_dataset("mnist", args.data_root)
            return test.images[:args.images], test.labels[:args.images], "MNIST test set"
        except MinidnnError as exc:
            print(f"note: {exc}; timing random images instead")
    rng = np.random.default_rng(0)
    return rng.standard_normal((args.images,) + shape, dtype=np.float32), None, "random images"


def device_copy(source: mdn.Model, net: str, device: str | None, profiling: bool = False):
    """``source``'s weights on the OpenCL device in inference form (CSR where <= 50% dense)."""
    model = factory(net)()
    model.load_state_dict(source.state_dict())
    model.to(get_backend("opencl", device, profiling=profiling))
    mdn.to_inference_form(model)
    return model.eval()


def minidnn_methods(source, args) -> dict[str, Predict]:
    model = device_copy(source, args.net, args.device)
    print(f"OpenCL device: {model.backend.device_name}")
    plans: dict[int, InferencePlan] = {}

    def plan(images, batch):  # prepared once per batch size (outside the timing: warm-up)
        if batch not in plans:
            plans[batch] = InferencePlan(model, batch, images.shape[1:])
        return plans[batch].predict(images)
    methods = {"minidnn plan": plan}
    if not args.no_regular:
        methods["minidnn regular"] = lambda images, batch: \
            regular_logits(model, images, batch).argmax(1)
    return methods


def torch_net(source, threads: int):
    try:
        import torch
    except ImportError:
        return None, None
    from torch_twin import torch_twin  # test tooling in tests/ (on sys.path above)
    torch.set_num_threads(threads)
    net, _ = torch_twin(source)
    return net.eval(), torch


def baseline_methods(source, args, shape) -> dict[str, Predict]:
    """PyTorch (dense) and ONNX Runtime (dense, exported from the PyTorch twin), if installed."""
    net, torch = torch_net(source, args.threads)
    if net is None:
        print("PyTorch not installed: no pytorch/onnxruntime rows (pip install torch==2.13.0)")
        return {}
    methods: dict[str, Predict] = {}

    def torch_predict(images, batch):
        with torch.inference_mode():
            return np.concatenate([net(torch.from_numpy(images[i:i + batch])).argmax(1).numpy()
                                   for i in range(0, len(images), batch)])
    methods["pytorch"] = torch_predict
    session = onnx_session(net, torch, shape, args.threads)
    if session is not None:
        methods["onnxruntime"] = lambda images, batch: np.concatenate(
            [session.run(None, {"x": images[i:i + batch]})[0].argmax(1)
             for i in range(0, len(images), batch)])
    return methods


def onnx_session(net, torch, shape, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: no onnxruntime row (pip install onnx onnxruntime)")
        return None
    buf = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros((1,) + shape), buf, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])


def time_batches(methods: dict[str, Predict], images, labels, batch: int, repeats: int) -> None:
    for fn in methods.values():  # warm-up: kernel builds, plans, pools, caches
        fn(images[:max(batch, min(len(images), 200))], batch)
    times, preds = {}, {}
    for _ in range(repeats):  # interleaved rounds: each method once per round
        for name, fn in methods.items():
            t0 = time.perf_counter()
            preds[name] = fn(images, batch)
            times[name] = min(times.get(name, float("inf")), time.perf_counter() - t0)
    ref_name = "onnxruntime" if "onnxruntime" in times else "minidnn plan"
    ref = preds[ref_name]
    print(f"\nbatch {batch}: {len(images)} images, best of {repeats}")
    print(f"{'method':<17}{'seconds':>9}{'images/s':>11}{'accuracy':>10}"
          f"{'vs ' + ref_name:>17}  agrees")
    for name, t in times.items():
        acc = f"{100 * (preds[name] == labels).mean():>9.2f}%" if labels is not None \
            else f"{'-':>10}"
        print(f"{name:<17}{t:>9.3f}{len(images) / t:>11.0f}{acc}{times[ref_name] / t:>16.2f}x"
              f"  {100 * (preds[name] == ref).mean():.2f}%")


def profile_batch1(source, args, images, count: int = 500) -> None:
    """Where one image's microseconds go at batch 1 (module docstring)."""
    model = device_copy(source, args.net, args.device, profiling=True)
    b = model.backend
    x = np.ascontiguousarray(images[:count], np.float32)
    regular_logits(model, x[:20], 1)
    t0 = time.perf_counter()
    regular_logits(model, x, 1)
    regular = (time.perf_counter() - t0) / count
    regular_kernels = sum(s for _, s in b.kernel_times().values()) / count
    plan = InferencePlan(model, 1, x.shape[1:])
    prepared = plan.prepared
    plan.logits(x[:20])
    b.kernel_times()
    parts = np.zeros(3)
    for i in range(count):
        t = [time.perf_counter()]
        prepared.write(x[i:i + 1])
        t.append(time.perf_counter())
        prepared.enqueue()
        t.append(time.perf_counter())
        prepared.read()
        t.append(time.perf_counter())
        parts += np.diff(t)
    parts *= 1e6 / count
    kernels = b.kernel_times()
    print(f"\nbatch-1 profile, {count} images, per image (profiling queue):")
    print(f"  regular forward     {1e6 * regular:8.1f} us wall, {1e6 * regular_kernels:.1f} us "
          "in kernels")
    print(f"  plan ({plan.launches} enqueues) {parts.sum():8.1f} us wall: input copy "
          f"{parts[0]:.1f}, enqueues {parts[1]:.1f}, wait + read {parts[2]:.1f}")
    for name in sorted(kernels, key=lambda k: -kernels[k][1]):
        calls, seconds = kernels[name]
        print(f"    {name:<22}{calls // count:>3}x {1e6 * seconds / count:8.1f} us")
    print(f"    {'all kernels':<26}{1e6 * sum(s for _, s in kernels.values()) / count:8.1f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="lenet5", choices=["lenet5", "tinynet", "resnet32"])
    ap.add_argument("--model", default="runs/lenet5.h5", help="a saved sparse LeNet-5 (.h5)")
    ap.add_argument("--sparsity", type=float, default=0.97, help="random weights: zeros/layer")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--batch1-images", type=int, default=2000)
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 1000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="OpenCL device (as MINIDNN_DEVICE)")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch/ONNX Runtime threads")
    ap.add_argument("--no-regular", action="store_true", help="skip the regular forward")
    ap.add_argument("--profile", action="store_true", help="batch-1 breakdown (docstring)")
    args = ap.parse_args()

    source, origin = source_model(args)
    shape = tuple(factory(args.net)().input_shape)
    images, labels, data_name = test_images(args, shape)
    zeros = sum(p.numel - p.count_nonzero() for _, p in source.prox_parameters())
    print(f"{args.net}: {origin}; {100 * zeros / source.weight_count():.2f}% of "
          f"{source.weight_count():,} weights zero; images of the {data_name}")
    methods = {**minidnn_methods(source, args), **baseline_methods(source, args, shape)}
    for batch in args.batches:
        count = args.batch1_images if batch == 1 else len(images)
        time_batches(methods, images[:count], None if labels is None else labels[:count],
                     batch, args.repeats)
    if args.profile:
        profile_batch1(source, args, images)


if __name__ == "__main__":
    main()
