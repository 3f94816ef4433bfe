"""Sweeps: one method over a list of lam / sparsity values, runs in parallel processes.

Each run (and the dense reference) is a ``Job`` executed by ``run_job`` in a worker process that
builds its own backend and loads its own data. Results accumulate in ``out``/results.json and
results.csv (merged with earlier sweeps in the same folder), per-run tables and logs in
``out``/runs/, the Table 1/A1 summary in ``out``/summary.txt and the plot in ``out``/accuracy.png.
"""
from __future__ import annotations

import json
import math
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, MinidnnError
from ..layers.model import Model
from .debias import retrain
from .mm import MMConfig, kappa_for_sparsity, mm_compress
from .prune import prune_retrain
from .results import (format_layers, format_summary, load_results, merge_records,
                      plot_results, write_results)
from .spc import train_spc
from .storage import load_weights, save_model, save_state
from .training import Log, TrainConfig, measure, per_layer

METHODS = ("spc", "spc+retrain", "pru", "pru+retrain", "mm", "mm+retrain")
PARAMS = {"spc": ("lam",), "pru": ("sparsity", "quality"), "mm": ("sparsity", "alpha")}


@dataclass
class SweepSpec:
    """Everything a run needs (picklable: it is sent to the worker processes)."""

    model: str
    data: str
    data_root: str | None = None
    backend: str = "numpy"
    device: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    steps: int | None = None            # training steps (SpC and the dense reference)
    epochs: float | None = None         # used when steps is None (default 2 epochs)
    retrain_steps: int = 0              # debiasing steps (per pruning round for Pru)
    retrain_lr: float | None = None
    retrain_form: str = "mask"
    lam_per_layer: dict = field(default_factory=dict)    # SpC: {layer: lam} overrides
    prune_rounds: int = 1
    prune_per_layer: dict = field(default_factory=dict)  # Pru: {layer: sparsity|quality}
    mm: MMConfig = field(default_factory=MMConfig)
    out: str = "runs/sweep"
    save_models: bool = False
    echo: bool = True                   # also print run logs (inline runs)
    model_factory: Callable | None = None  # seed -> Model (default: the zoo model by name)
    data_factory: Callable | None = None   # () -> (train, test) (default: load_dataset)

    def describe(self) -> dict:
        """The settings as JSON-friendly values (factories by name)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("model_factory", "data_factory")}
        d["train"] = self.train.to_dict()
        for k in ("model_factory", "data_factory"):
            f = getattr(self, k)
            d[k] = None if f is None else getattr(f, "__qualname__", repr(f))
        return d


@dataclass(frozen=True)
class Job:
    """One run: a method at one parameter value ('reference' trains or loads the dense model)."""

    method: str
    param: str | None = None
    value: float | None = None
    paper_p: float | None = None

    @property
    def run_id(self) -> str:
        return self.method if self.param is None else f"{self.method}-{self.param}{self.value:g}"


# ---------------------------------------------------------------------- worker side
_CACHE: dict = {}


def _backend(spec: SweepSpec):
    key = ("backend", spec.backend, spec.device)
    if key not in _CACHE:
        from ..cli import resolve_backend
        _CACHE[key] = resolve_backend(spec.backend, spec.device)
    return _CACHE[key]


def _datasets(spec: SweepSpec):
    key = ("data", spec.data, spec.data_root, repr(spec.data_factory))
    if key not in _CACHE:
        if spec.data_factory is not None:
            _CACHE[key] = spec.data_factory()
        else:
            from ..data import load_dataset
            _CACHE[key] = load_dataset(spec.data, spec.data_root)
    return _CACHE[key]


def _build(spec: SweepSpec, backend) -> Model:
    if spec.model_factory is not None:
        return spec.model_factory(spec.train.seed).to(backend)
    from ..models import build_model
    return build_model(spec.model, seed=spec.train.seed).to(backend)


def resolve_steps(steps: int | None, epochs: float | None, train_size: int,
                  batch_size: int) -> int:
    """Training length: ``steps``, else ``epochs`` (default 2) worth of minibatches."""
    if steps is not None:
        return int(steps)
    return max(1, int(round((2.0 if epochs is None else epochs) * (train_size // batch_size))))


def _logger(path: Path, echo: bool) -> Log:
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a", buffering=1)

    def log(line: str) -> None:
        f.write(line + "\n")
        if echo:
            print(line, flush=True)
    log.file = f
    return log


def run_job(spec: SweepSpec, job: Job, reference: str | None = None) -> list[dict]:
    """Execute one run and return its records (two with retraining: before and after); writes
    runs/<run id>.log, .json (records + history) and .txt (Table A1 layout)."""
    out = Path(spec.out)
    runs = out / "runs"
    log = _logger(runs / f"{job.run_id}.log", spec.echo)
    try:
        backend = _backend(spec)
        train_ds, test_ds = _datasets(spec)
        model = _build(spec, backend)
        steps = resolve_steps(spec.steps, spec.epochs, len(train_ds), spec.train.batch_size)
        log(f"== {job.run_id}: {spec.model} on {spec.data}, {backend.device_name}")
        t0 = time.perf_counter()
        records, history = _METHOD_RUNNERS[job.method.split("+")[0]](
            spec, job, model, train_ds, test_ds, steps, reference, log)
        seconds = round(time.perf_counter() - t0, 2)
        base = {"run": job.run_id, "param": job.param, "value": job.value, "seed": spec.train.seed,
                "backend": backend.device_name, "seconds": seconds}
        if job.paper_p is not None:
            base["paper_p"] = job.paper_p
        records = [{**base, **r} for r in records]
        (runs / f"{job.run_id}.json").write_text(json.dumps(
            {"records": records, "history": history}, indent=1, default=_plain))
        (runs / f"{job.run_id}.txt").write_text("\n\n".join(format_layers(r) for r in records)
                                                + "\n")
        if spec.save_models and job.method != "reference":
            from .sparsify import to_inference_form
            to_inference_form(model)
            path = save_model(model, runs / f"{job.run_id}.h5", metadata=records[-1])
            log(f"saved {path}")
        for r in records:
            log(f"{r['method']}: accuracy {100 * r['accuracy']:.2f}%  zeros "
                f"{100 * r['zeros']:.2f}% ({r['compression']:.1f}x)  [{seconds:.0f} s]")
        return records
    finally:
        log.file.close()


def _plain(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, float) and math.isinf(o):
        return "inf"
    return str(o)


def _record(method: str, model, test_ds, steps: int, retrain_steps: int = 0) -> dict:
    return {"method": method, **measure(model, test_ds), "steps": steps,
            "retrain_steps": retrain_steps}


def _run_reference(spec, job, model, train_ds, test_ds, steps, reference, log):
    if reference is not None:
        load_weights(model, reference)
        log(f"reference weights from {reference}")
        return [_record("dense", model, test_ds, 0)], []
    opt = spec.train.make_optimizer(model, steps, lam=0.0)
    from ..train import Trainer
    hist = spec.train.fit(Trainer(model, opt), train_ds, test_ds, steps, log=log)
    rec = _record("dense", model, test_ds, steps)
    save_state(model, Path(spec.out) / "reference.npz", metadata=rec)
    return [rec], hist.evals


def _run_spc(spec, job, model, train_ds, test_ds, steps, reference, log):
    hist = train_spc(model, train_ds, test_ds, steps, job.value, spec.train,
                     lam_per_layer=spec.lam_per_layer or None, log=log)
    records = [_record("spc", model, test_ds, steps)]
    history = {"spc": hist.evals}
    if job.method.endswith("+retrain"):
        h = retrain(model, train_ds, test_ds, spec.retrain_steps, spec.train,
                    form=spec.retrain_form, lr=spec.retrain_lr, log=log)
        records.append(_record("spc+retrain", model, test_ds, steps, spec.retrain_steps))
        history["retrain"] = h.evals
    return records, history


def _run_pru(spec, job, model, train_ds, test_ds, steps, reference, log):
    load_weights(model, reference)
    target = per_layer(model, job.value, spec.prune_per_layer) if spec.prune_per_layer \
        else job.value
    rounds = prune_retrain(model, train_ds, test_ds, spec.retrain_steps,
                           **{job.param: target}, rounds=spec.prune_rounds, config=spec.train,
                           form=spec.retrain_form, lr=spec.retrain_lr, log=log)
    last = rounds[-1]
    records = [{"method": "pru", "accuracy": last["accuracy_pruned"], **last["figures_pruned"],
                "steps": 0, "retrain_steps": spec.retrain_steps * (spec.prune_rounds - 1)}]
    if spec.retrain_steps:
        records.append(_record("pru+retrain", model, test_ds, 0,
                               spec.retrain_steps * spec.prune_rounds))
    return records, rounds


def _run_mm(spec, job, model, train_ds, test_ds, steps, reference, log):
    load_weights(model, reference)
    if job.param == "sparsity":
        mm = replace(spec.mm, penalty="l0", kappa=kappa_for_sparsity(model, job.value))
    else:
        mm = replace(spec.mm, penalty="l1", alpha=job.value)
    history = mm_compress(model, train_ds, test_ds, mm, spec.train, form=spec.retrain_form,
                          log=log)
    mm_steps = mm.l_steps * mm.lc_iters
    records = [_record("mm", model, test_ds, mm_steps)]
    if job.method.endswith("+retrain"):
        retrain(model, train_ds, test_ds, spec.retrain_steps, spec.train,
                form=spec.retrain_form, lr=spec.retrain_lr, log=log)
        records.append(_record("mm+retrain", model, test_ds, mm_steps, spec.retrain_steps))
    return records, history


_METHOD_RUNNERS = {"reference": _run_reference, "spc": _run_spc, "pru": _run_pru, "mm": _run_mm}


# ---------------------------------------------------------------------- driver side
def make_jobs(method: str, values: list[float], param: str,
              paper_p: list[float] | None = None) -> list[Job]:
    """The runs of one sweep; ``method`` 'pru'/'mm' record their '+retrain' form when retraining."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    base = method.split("+")[0]
    if param not in PARAMS[base]:
        raise ConfigError(f"{base} sweeps over {' or '.join(PARAMS[base])}, not {param}")
    if not values:
        raise ConfigError("the sweep has no values")
    ps = paper_p or [None] * len(values)
    return [Job(method, param, float(v), p) for v, p in zip(values, ps)]


class _Runner:
    """Runs jobs inline (jobs=1) or in a spawn-based process pool."""

    def __init__(self, jobs: int) -> None:
        if jobs > 1:  # share the cores: PoCL would otherwise start one thread per core per job
            threads = max(1, (os.cpu_count() or 1) // jobs)
            os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(threads))
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        self.pool = None if jobs <= 1 else ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("spawn"))

    def run(self, spec, jobs: list[Job], reference, on_done) -> None:
        if self.pool is None:
            for job in jobs:
                on_done(job, *_call(spec, job, reference))
            return
        futures = {self.pool.submit(_call, spec, job, reference): job for job in jobs}
        for fut in as_completed(futures):
            on_done(futures[fut], *fut.result())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _call(spec: SweepSpec, job: Job, reference: str | None) -> tuple[list[dict], str | None]:
    """run_job, with any failure turned into a message (one bad run does not stop a sweep)."""
    try:
        return run_job(spec, job, reference), None
    except Exception as exc:  # noqa: BLE001 - reported per run, re-raised as the exit status
        detail = str(exc) if isinstance(exc, MinidnnError) else traceback.format_exc()
        return [], f"{type(exc).__name__}: {detail}"


def run_sweep(spec: SweepSpec, jobs: list[Job], workers: int = 1, reference: str | None = None,
              plot: bool = True, title: str | None = None, log: Log = print) -> dict:
    """Run ``jobs`` and the dense reference (``reference`` file, else out/reference.npz, else
    trained first) and write the results files; returns {'reference', 'records', 'failed'}."""
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    if workers > 1:  # worker logs go to their files only
        spec = replace(spec, echo=False, train=replace(spec.train, progress=False))
    previous = load_results(out) if (out / "results.json").exists() else \
        {"records": [], "reference": None}
    records = list(previous["records"])
    ref_record = previous["reference"]
    saved_ref = out / "reference.npz"
    if reference is not None:
        ref_record = None  # a new reference file: measure it
    else:
        known = [saved_ref, Path((ref_record or {}).get("file") or saved_ref)]
        reference = next((str(f) for f in known if f.exists()), None)
        if reference is not None:
            log(f"reusing the dense reference {reference}")
    needs_weights = any(j.method.split("+")[0] in ("pru", "mm") for j in jobs)
    config = {"spec": spec.describe(), "workers": workers}
    failed: list[str] = []
    state = {"reference": ref_record, "records": records}

    def done(job: Job, new: list[dict], error: str | None) -> None:
        if error:
            failed.append(job.run_id)
            log(f"run {job.run_id} FAILED: {error}")
            return
        if job.method == "reference":
            state["reference"] = {**new[0], "run": "reference",
                                  "file": reference or str(saved_ref)}
        else:
            state["records"] = merge_records(state["records"], new)
        write_results(out, state["records"], state["reference"], config)
        log(f"done {job.run_id}: " + "; ".join(
            f"{r['method']} acc {100 * r['accuracy']:.2f}% zeros {100 * r['zeros']:.2f}%"
            for r in new))

    log(f"{len(jobs)} run(s), {workers} at a time; each run logs to {out / 'runs'}/<run>.log")
    runner = _Runner(workers)
    try:
        ref_job = [Job("reference")] if ref_record is None else []
        if ref_job and (needs_weights or workers <= 1):
            runner.run(spec, ref_job, reference, done)
            ref_job = []
            if reference is None:
                reference = str(saved_ref) if saved_ref.exists() else None
        if needs_weights and reference is None:
            raise MinidnnError("Pru and MM start from a dense reference: training it failed "
                               "(see runs/reference.log), or pass --reference FILE")
        runner.run(spec, ref_job + list(jobs), reference, done)
    finally:
        runner.close()
    write_results(out, state["records"], state["reference"], config)
    (out / "summary.txt").write_text(format_summary(state["records"], state["reference"]) + "\n")
    if plot and state["records"]:
        try:
            path = plot_results(state["records"], state["reference"], out / "accuracy.png",
                                title=title or f"{spec.model}: accuracy vs compression")
            log(f"plot: {path}")
        except MinidnnError as exc:
            log(f"note: {exc}")
    return {"reference": state["reference"], "records": state["records"], "failed": failed}


def paper_lams(ps: list[float], lr: float) -> list[float]:
    """The paper's proximal_decay p -> lam with the same threshold: 0.001 ln(p) / lr."""
    if any(p <= 1.0 for p in ps):
        raise ConfigError("paper lambda values p must be > 1 (threshold 0.001 * ln p)")
    return [0.001 * math.log(p) / lr for p in ps]
