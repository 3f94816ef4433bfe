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

from ..backend import resolve_backend
from ..errors import ConfigError, MinidnnError
from ..layers.model import Model
from ..train_config import Log, TrainConfig, training_steps
from .methods import MethodRun, get_method
from .mm import MMConfig
from .quantize_stage import QuantizeSettings
from .results import (format_layers, format_summary, load_results, merge_records,
                      plot_results, write_results)
from .sparsify import to_inference_form
from .storage import save_model, save_state

REFERENCE = "reference"   # the run id of the dense reference job


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
    quantize: QuantizeSettings = field(default_factory=QuantizeSettings)  # spc+retrain+q
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
    """One run: a method variant at one parameter value; ``Job.reference()`` trains or loads
    the dense model every other run is compared with."""

    method: str
    param: str | None = None
    value: float | None = None
    paper_p: float | None = None

    @classmethod
    def reference(cls) -> "Job":
        return cls("dense", REFERENCE)

    @property
    def is_reference(self) -> bool:
        return self.param == REFERENCE

    @property
    def run_id(self) -> str:
        if self.is_reference:
            return REFERENCE
        return self.method if self.param is None else f"{self.method}-{self.param}{self.value:g}"


# ---------------------------------------------------------------------- worker side
_CACHE: dict = {}


def _backend(spec: SweepSpec):
    key = ("backend", spec.backend, spec.device)
    if key not in _CACHE:
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
        steps = training_steps(spec.model, len(train_ds), spec.train.batch_size, spec.steps,
                               spec.epochs)
        log(f"== {job.run_id}: {spec.model} on {spec.data}, {backend.device_name}")
        t0 = time.perf_counter()
        run = MethodRun(spec, model, train_ds, test_ds, steps,
                        reference, log,
                        None if job.is_reference else job.param, job.value,
                        job.method.endswith("+retrain"))
        records, history = get_method(job.method).run(run)
        seconds = round(time.perf_counter() - t0, 2)
        records = [{**_run_fields(job, spec, backend, seconds), **r} for r in records]
        _write_run(runs, job, records, history)
        if job.is_reference and reference is None:
            save_state(model, out / "reference.npz", metadata=records[0])
        if spec.save_models and not job.is_reference:
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


def _run_fields(job: Job, spec: SweepSpec, backend, seconds: float) -> dict:
    """What every record of a run starts with."""
    base = {"run": job.run_id, "param": None if job.is_reference else job.param,
            "value": job.value, "seed": spec.train.seed, "backend": backend.device_name,
            "seconds": seconds}
    if job.paper_p is not None:
        base["paper_p"] = job.paper_p
    return base


def _write_run(runs: Path, job: Job, records: list[dict], history) -> None:
    """runs/<run id>.json (records + history) and .txt (Table A1 layout)."""
    (runs / f"{job.run_id}.json").write_text(json.dumps(
        {"records": records, "history": history}, indent=1, default=_plain))
    (runs / f"{job.run_id}.txt").write_text("\n\n".join(format_layers(r) for r in records)
                                            + "\n")


# ---------------------------------------------------------------------- driver side
def make_jobs(method: str, values: list[float], param: str,
              paper_p: list[float] | None = None) -> list[Job]:
    """The runs of one sweep of a registered method variant ('spc', 'pru+retrain', ...) over
    ``values`` of its parameter ``param``."""
    spec = get_method(method)
    if not spec.params:
        raise ConfigError(f"{method} has no parameter to sweep")
    if param not in spec.params:
        raise ConfigError(f"{spec.name} sweeps over {' or '.join(spec.params)}, not {param}")
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
    state = _SweepState(out, {"spec": spec.describe(), "workers": workers}, log)
    reference = state.reference_file = state.find_reference(reference)
    needs_weights = any(get_method(j.method).from_reference for j in jobs)
    log(f"{len(jobs)} run(s), {workers} at a time; each run logs to {out / 'runs'}/<run>.log")
    runner = _Runner(workers)
    try:
        ref_job = [Job.reference()] if state.reference is None else []
        if ref_job and (needs_weights or workers <= 1):
            runner.run(spec, ref_job, reference, state.done)
            ref_job = []
            if reference is None:
                reference = str(state.saved_ref) if state.saved_ref.exists() else None
        if needs_weights and reference is None:
            raise MinidnnError("Pru and MM start from a dense reference: training it failed "
                               "(see runs/reference.log), or pass --reference FILE")
        runner.run(spec, ref_job + list(jobs), reference, state.done)
    finally:
        runner.close()
    state.finish(plot, title or f"{spec.model}: accuracy vs compression")
    return {"reference": state.reference, "records": state.records, "failed": state.failed}


class _SweepState:
    """The results of a sweep as they come in (merged with the folder's earlier ones)."""

    def __init__(self, out: Path, config: dict, log: Log) -> None:
        previous = load_results(out) if (out / "results.json").exists() else \
            {"records": [], "reference": None}
        self.out, self.config, self.log = out, config, log
        self.records: list[dict] = list(previous["records"])
        self.reference: dict | None = previous["reference"]
        self.saved_ref = out / "reference.npz"
        self.reference_file: str | None = None
        self.failed: list[str] = []

    def find_reference(self, reference: str | None) -> str | None:
        """The reference file to use: the one given (then measured anew), else the folder's."""
        if reference is not None:
            self.reference = None  # a new reference file: measure it
            return reference
        known = [self.saved_ref, Path((self.reference or {}).get("file") or self.saved_ref)]
        found = next((str(f) for f in known if f.exists()), None)
        if found is not None:
            self.log(f"reusing the dense reference {found}")
        return found

    def done(self, job: Job, new: list[dict], error: str | None) -> None:
        """Merge one finished run and rewrite the results files."""
        if error:
            self.failed.append(job.run_id)
            self.log(f"run {job.run_id} FAILED: {error}")
            return
        if job.is_reference:
            self.reference = {**new[0], "run": REFERENCE,
                              "file": self.reference_file or str(self.saved_ref)}
        else:
            self.records = merge_records(self.records, new)
        write_results(self.out, self.records, self.reference, self.config)
        self.log(f"done {job.run_id}: " + "; ".join(
            f"{r['method']} acc {100 * r['accuracy']:.2f}% zeros {100 * r['zeros']:.2f}%"
            for r in new))

    def finish(self, plot: bool, title: str) -> None:
        """The final results files, summary and (when asked) the plot."""
        write_results(self.out, self.records, self.reference, self.config)
        (self.out / "summary.txt").write_text(format_summary(self.records, self.reference)
                                              + "\n")
        if plot and self.records:
            try:
                path = plot_results(self.records, self.reference, self.out / "accuracy.png",
                                    title=title)
                self.log(f"plot: {path}")
            except MinidnnError as exc:
                self.log(f"note: {exc}")


def sweep_jobs(method: str, values: dict[str, list[float]], paper_p: list[float] | None = None,
               lr: float = 1e-3, retrain_steps: int = 0) -> tuple[str, list[Job]]:
    """(swept parameter, jobs) from the value lists given per sweep option ({'lam': [...],
    'sparsity': [], ...}: exactly one non-empty), or the paper's p values (lam = 0.001 ln p / lr);
    the option names the method's parameter (or an alias of it: MM's 'lam' is its 'alpha')."""
    values = {k: list(v) for k, v in values.items() if v}
    if paper_p:
        values["lam"] = paper_lams(paper_p, lr)
    if len(values) != 1:
        raise ConfigError("sweep: give exactly one list of values (--lams, --paper-lams, "
                          "--sparsities, --qualities, --values)")
    (option, vals), = values.items()
    if method.endswith("+retrain") and not retrain_steps:
        raise ConfigError(f"sweep --method {method} needs --retrain-steps R > 0")
    param = get_method(method).param_for(option)
    return param, make_jobs(method, vals, param, paper_p or None)


def paper_lams(ps: list[float], lr: float) -> list[float]:
    """The paper's proximal_decay p -> lam with the same threshold: 0.001 ln(p) / lr."""
    if any(p <= 1.0 for p in ps):
        raise ConfigError("paper lambda values p must be > 1 (threshold 0.001 * ln p)")
    return [0.001 * math.log(p) / lr for p in ps]
