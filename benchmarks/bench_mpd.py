"""Permuted block-diagonal weights (issue 18) against dense and CSR, in one interleaved run.

Three copies of one zoo model on one OpenCL device: **dense** (all weights), **blocks**
(MPDCompress masks, B blocks per conv/linear weight, block kernels: pack -> batched GEMM ->
unpack) and **CSR** (the very same nonzeros as the block model, as CSR weights: the same
density). Measured, interleaved round after round (medians):

- inference: images/s of a prepared ``InferencePlan`` (upload, forward, download) per batch;
- training: images/s of ``Trainer.train_step`` (forward, backward, Adam) at one batch size.

Prints img/s and the ratios blocks/dense and blocks/CSR.

    python benchmarks/bench_mpd.py [--model lenet300] [--blocks 10] [--rounds 7]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from bench_train import machine_line
from minidnn.backend import get_backend
from minidnn.compress.mpd import MPDSettings, apply_mpd
from minidnn.inference import InferencePlan
from minidnn.models import build_model
from minidnn.optim import Adam
from minidnn.train import Trainer

FORMS = ("dense", "blocks", "csr")


def build_forms(name: str, backend, blocks: int, convs: str, per_layer: str | None) -> dict:
    """{form: model}: dense, MPD blocks, and the block model's weights as CSR."""
    settings = MPDSettings(blocks=blocks, convs=convs != "none", blocks_per_layer=per_layer,
                           conv_form="channels" if convs == "none" else convs)
    models = {"dense": build_model(name, seed=0).to(backend)}
    for form in ("blocks", "csr"):
        m = build_model(name, seed=0).to(backend)
        apply_mpd(m, settings)
        if form == "csr":
            for _, p in m.prox_parameters():
                if p.is_blockdiag:
                    p.to_csr()
        models[form] = m
    return models


def sample(fn: Callable[[], object], sync: Callable[[], None], calls: int) -> float:
    """Seconds per call of ``calls`` back-to-back calls ending in one device sync."""
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) / calls


def interleaved(fns: dict[str, Callable[[], object]], sync, rounds: int,
                target_s: float) -> dict[str, float]:
    """Median seconds per call of each function, sampled in turn for ``rounds`` rounds."""
    calls = {k: max(1, min(200, int(target_s / max(sample(f, sync, 1), 1e-6))))
             for k, f in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(sample(f, sync, calls[k]))
    return {k: float(np.median(v)) for k, v in times.items()}


def inference_fns(models: dict, batch: int, rng) -> dict:
    images = rng.standard_normal((batch,) + tuple(models["dense"].input_shape),
                                 dtype=np.float32)
    plans = {form: InferencePlan(m, batch) for form, m in models.items()}
    return {form: (lambda p=p: p.logits(images)) for form, p in plans.items()}


def training_fns(models: dict, batch: int, rng) -> dict:
    shape = (batch,) + tuple(models["dense"].input_shape)
    data = [(rng.standard_normal(shape, dtype=np.float32),
             rng.integers(0, 10, batch).astype(np.int32)) for _ in range(4)]
    fns = {}
    for form, m in models.items():
        trainer = Trainer(m, Adam(m.named_parameters(), lr=1e-3))
        counter = iter(range(1 << 62))
        fns[form] = (lambda t=trainer, c=counter: t.train_step(*data[next(c) % 4]))
    return fns


def report(what: str, batch: int, seconds: dict[str, float]) -> str:
    ips = {k: batch / v for k, v in seconds.items()}
    return (f"{what:<10}{batch:>6}  " + "  ".join(f"{ips[f]:>11,.0f}" for f in FORMS)
            + f"  {ips['blocks'] / ips['dense']:>13.2f}x  {ips['blocks'] / ips['csr']:>11.2f}x")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lenet300")
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--conv-blocks", default="channels", choices=["matrix", "channels", "none"])
    p.add_argument("--blocks-per-layer", default=None, help="e.g. conv1=1,fc2=1")
    p.add_argument("--device", default=None, help="OpenCL device (default: the best usable)")
    p.add_argument("--batches", default="1,128,1000", help="inference batch sizes")
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7, help="interleaved samples per form")
    p.add_argument("--target", type=float, default=0.2, help="seconds per sample")
    args = p.parse_args(argv)
    backend = get_backend("opencl", device=args.device)
    models = build_forms(args.model, backend, args.blocks, args.conv_blocks,
                         args.blocks_per_layer)
    rng = np.random.default_rng(0)
    print(machine_line())
    print(f"device: {backend.device_name}")
    print(f"{args.model}, B = {args.blocks} (conv: {args.conv_blocks}"
          f"{', ' + args.blocks_per_layer if args.blocks_per_layer else ''}); img/s, medians of "
          f"{args.rounds} interleaved samples")
    print(f"{'':<10}{'batch':>6}  {'dense':>11}  {'blocks':>11}  {'CSR':>11}"
          f"  {'blocks/dense':>14}  {'blocks/CSR':>12}")
    for batch in (int(b) for b in args.batches.split(",")):
        secs = interleaved(inference_fns(models, batch, rng), backend.synchronize,
                           args.rounds, args.target)
        print(report("inference", batch, secs), flush=True)
    secs = interleaved(training_fns(models, args.train_batch, rng), backend.synchronize,
                       args.rounds, args.target)
    print(report("train step", args.train_batch, secs))


if __name__ == "__main__":
    main()
