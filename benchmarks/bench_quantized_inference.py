"""Quantized vs float CSR inference on the device: throughput and device bytes in one run.

The same quantized model runs through two inference plans on one backend: **float CSR** (every
conv/linear weight held as CSR with float32 values: the direct sparse convolution and the CSR
product) and **quantized** (the same patterns, each value read through its layer's codebook:
uint8/uint16 codes + a float32 codebook, ``qcsr_conv2d`` / ``qcsr_matmul_t``). Both classify
the same images; predictions must agree. The plans run interleaved, best of ``--repeats`` per
batch size; time includes copying each batch in and the logits out. Device bytes are those of
the conv/linear weights each plan reads (``InferencePlan.weight_bytes``; biases excluded).

    python benchmarks/bench_quantized_inference.py [--model Q.h5] [--bits 4]
        [--backend opencl] [--device 0:0] [--batches 1 128 1000] [--images 5000] [--repeats 5]

``--model``: a quantized file (format 3 or 4, e.g. from ``minidnn quantize``); without it, a
random LeNet-5 at ~97% zeros quantized to ``--bits`` (the speed is the same for any weights of
that sparsity). Images are MNIST's test set when ``--data-root`` holds it, else random.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from minidnn.backend import get_backend
from minidnn.compress.quantize import quantize_model
from minidnn.inference import InferencePlan
from minidnn.io import load


def _random_model(bits: int):
    """A LeNet-5 at ~97% zeros with its quantization records (as ``load`` would give)."""
    from test_quantized_file import _model
    model = _model(seed=0)
    model.quantized = quantize_model(model, bits)
    return model


def _images(root: str | None, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    if root:
        try:
            from minidnn.data import load_dataset
            test = load_dataset("mnist", root)[1]
            return test.images[:n], test.labels[:n]
        except Exception as exc:  # noqa: BLE001 - fall back to random images
            print(f"(no MNIST: {exc}; random images)")
    return np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(np.float32), None


def _float_csr_copy(path: str | None, bits: int, backend):
    """The same model with every conv/linear weight as float CSR and no records."""
    model = load(path, backend=backend) if path else _random_model(bits).to(backend)
    records = model.quantized
    model.quantized = None
    for _, p in model.prox_parameters():
        p.to_csr()
    return model, records


def _time(plan: InferencePlan, images: np.ndarray) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    pred = plan.predict(images)
    return time.perf_counter() - t, pred


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a quantized model file (default: random LeNet-5)")
    ap.add_argument("--bits", type=int, default=4, help="bits of the random model")
    ap.add_argument("--backend", default="opencl")
    ap.add_argument("--device", default=None)
    ap.add_argument("--data-root", default=None, help="folder with mnist/ (default: random)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 128, 1000])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--batch1-images", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    backend = get_backend(args.backend, device=args.device) if args.device else \
        get_backend(args.backend)
    float_model, records = _float_csr_copy(args.model, args.bits, backend)
    quant_model = load(args.model, backend=backend) if args.model else \
        _random_model(args.bits).to(backend)
    images, labels = _images(args.data_root, args.images)
    print(f"backend {backend!r}; model {args.model or f'random LeNet-5, {args.bits} bits'}; "
          f"{sum(r.nnz for r in records):,} nonzeros, codebooks of "
          f"{'/'.join(str(r.k) for r in records)} values")
    print(f"{'batch':>6} {'float CSR img/s':>16} {'quantized img/s':>16} {'quantized / float':>18}")
    for bs in args.batches:
        imgs = images[:args.batch1_images] if bs == 1 else images
        fp, qp = InferencePlan(float_model, bs), InferencePlan(quant_model, bs)
        assert len(qp.records) == len(records) and not fp.records
        best = {"float": np.inf, "quantized": np.inf}
        for _ in range(args.repeats):
            tf, pf = _time(fp, imgs)
            tq, pq = _time(qp, imgs)
            assert np.array_equal(pf, pq), "float and quantized plans disagree"
            best["float"], best["quantized"] = min(best["float"], tf), min(best["quantized"], tq)
        rf, rq = len(imgs) / best["float"], len(imgs) / best["quantized"]
        print(f"{bs:>6} {rf:>16,.0f} {rq:>16,.0f} {rq / rf:>17.2f}x")
    fb, qb = fp.weight_bytes(), qp.weight_bytes()
    print(f"device bytes of the conv/linear weights: float CSR {fb:,}, quantized {qb:,} "
          f"({fb / qb:.2f}x less)")
    if labels is not None:
        print(f"accuracy on {len(labels):,} test images: {(pq == labels[:len(pq)]).mean():.2%}")


if __name__ == "__main__":
    main()
