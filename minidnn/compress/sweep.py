"""Sweeps: one method over a list of lam / sparsity values, run here or on a Dask cluster.

Each run (and the dense reference) is a ``Job`` executed by ``run_job``, in this process
(``workers=1``) or on the workers of a Dask cluster (``minidnn.compress.cluster``: a local one
of ``workers`` processes, or a running one at ``scheduler``). A run builds its own backend,
loads its own data and writes nothing where it runs: it returns a ``RunOutput`` (records, and
its log, per-run tables and model files as bytes) that this process writes into the sweep
folder ``out``. Results accumulate in ``out``/results.json and results.csv (merged with earlier
sweeps in the same folder), per-run tables and logs in ``out``/runs/, the Table 1/A1 summary in
``out``/summary.txt and the plot in ``out``/accuracy.png. ``resume=True`` runs only the jobs
with no records in the folder yet.
"""
from __future__ import annotations

import functools
import json
import math
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..backend import resolve_backend
from ..errors import ConfigError, MinidnnError, ModelFileError
from ..layers.model import Model
from ..train_config import Log, TrainConfig, training_steps
from .cluster import DaskRunner
from .methods import MethodRun, get_method
from .mm import MMConfig
from .mpd import MPDSettings
from .quantize_stage import QuantizeSettings
from .results import (format_layers, format_summary, load_results, merge_records,
                      plot_results, write_results)
from .sparsify import to_inference_form
from .storage import save_model, save_state

REFERENCE = "reference"   # the run id of the dense reference job


@dataclass
class SweepSpec:
    """Everything a run needs (picklable: it is sent to the workers; factories must be
    importable, or picklable by value, where the workers run)."""

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
    mpd: MPDSettings | None = None      # mpd: per-layer blocks, conv layers (None: defaults)
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
            d[k] = None if f is None else _callable_name(f)
        return d


def _callable_name(f: Callable) -> str:
    """A factory's name, the same in every process: 'make' or 'make(arg, ...)' for a partial."""
    if isinstance(f, functools.partial):
        args = [repr(a) for a in f.args] + [f"{k}={v!r}" for k, v in f.keywords.items()]
        return f"{_callable_name(f.func)}({', '.join(args)})"
    return getattr(f, "__qualname__", type(f).__qualname__)


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


@dataclass(frozen=True)
class Weights:
    """A weights file as its name and bytes: how the dense reference travels to the workers."""

    name: str
    data: bytes

    @classmethod
    def read(cls, path: str | Path) -> "Weights":
        """The file at ``path``."""
        try:
            return cls(Path(path).name, Path(path).read_bytes())
        except OSError as exc:
            raise ModelFileError(f"{path}: cannot read the reference weights "
                                 f"({exc.strerror or exc})") from None


@dataclass
class RunOutput:
    """What a run sends home: its records, its files (path inside the sweep folder -> bytes:
    runs/<run>.log, .json, .txt, saved models, reference.npz) and, when it failed, why."""

    job: Job
    records: list[dict]
    files: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


class _RunLog:
    """A run's log lines, kept to send home (and printed too when ``echo``)."""

    def __init__(self, echo: bool) -> None:
        self.echo, self.lines = echo, []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.echo:
            print(line, flush=True)

    def data(self) -> bytes:
        return "".join(line + "\n" for line in self.lines).encode()


def run_job(spec: SweepSpec, job: Job, reference: Weights | None = None) -> RunOutput:
    """Execute one run where this is called and return its ``RunOutput``: the records (two
    with retraining: before and after) and the files runs/<run id>.log, .json (records +
    history) and .txt (Table A1 layout), the reference's reference.npz, saved models. A run
    that raises is returned with its error (one bad run does not stop a sweep)."""
    log, files = _RunLog(spec.echo), {}
    try:
        with tempfile.TemporaryDirectory(prefix="minidnn-run-") as tmp:
            ref = None
            if reference is not None:
                (Path(tmp) / "ref").mkdir()
                ref = Path(tmp) / "ref" / reference.name
                ref.write_bytes(reference.data)
            records, error = _execute(spec, job, ref and str(ref), log, Path(tmp), files), None
    except Exception as exc:  # noqa: BLE001 - reported per run, re-raised as the exit status
        records, error = [], f"{type(exc).__name__}: " + (
            str(exc) if isinstance(exc, MinidnnError) else traceback.format_exc())
        log(f"FAILED: {error}")
    files[f"runs/{job.run_id}.log"] = log.data()
    return RunOutput(job, records, files, error)


def _execute(spec: SweepSpec, job: Job, reference: str | None, log: Log, tmp: Path,
             files: dict[str, bytes]) -> list[dict]:
    """Run ``job``; its files go into ``files`` (written in ``tmp`` first, then read back)."""
    backend = _backend(spec)
    train_ds, test_ds = _datasets(spec)
    model = _build(spec, backend)
    steps = training_steps(spec.model, len(train_ds), spec.train.batch_size, spec.steps,
                           spec.epochs)
    log(f"== {job.run_id}: {spec.model} on {spec.data}, {backend.device_name}")
    t0 = time.perf_counter()
    run = MethodRun(spec, model, train_ds, test_ds, steps, reference, log,
                    None if job.is_reference else job.param, job.value,
                    job.method.endswith("+retrain"))
    records, history = get_method(job.method).run(run)
    seconds = round(time.perf_counter() - t0, 2)
    records = [{**_run_fields(job, spec, backend, seconds), **r} for r in records]
    files.update(_run_files(job, records, history))
    if job.is_reference and reference is None:
        files["reference.npz"] = save_state(model, tmp / "reference.npz",
                                            metadata=records[0]).read_bytes()
    if spec.save_models and not job.is_reference:
        to_inference_form(model)
        name = f"runs/{job.run_id}.h5"
        files[name] = save_model(model, tmp / "model.h5", metadata=records[-1]).read_bytes()
        log(f"saved {name}")
    for r in records:
        log(f"{r['method']}: accuracy {100 * r['accuracy']:.2f}%  zeros "
            f"{100 * r['zeros']:.2f}% ({r['compression']:.1f}x)  [{seconds:.0f} s]")
    return records


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


def _run_files(job: Job, records: list[dict], history) -> dict[str, bytes]:
    """runs/<run id>.json (records + history) and .txt (Table A1 layout)."""
    table = "\n\n".join(format_layers(r) for r in records) + "\n"
    return {f"runs/{job.run_id}.json": json.dumps({"records": records, "history": history},
                                                  indent=1, default=_plain).encode(),
            f"runs/{job.run_id}.txt": table.encode()}


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


class InlineRunner:
    """Runs the jobs one after the other in this process (``workers=1``, no Dask needed);
    the same interface as ``cluster.DaskRunner``."""

    backend: str | None = None   # the jobs keep the sweep's backend ('auto' resolved per run)

    def describe(self) -> str:
        return "this process"

    def share(self, value: Any) -> Any:
        return value

    def map(self, fn: Callable, tasks: dict[str, tuple], on_start, on_result, on_error) -> None:
        """``fn(*args)`` for each task in turn (``on_error`` is never needed: runs report
        their own failures)."""
        for key, args in tasks.items():
            on_start(key, "this process")
            on_result(key, fn(*args))

    def close(self) -> None:
        pass


def make_runner(spec: SweepSpec, workers: int = 1, scheduler: str | None = None,
                scheduler_file: str | None = None, retries: int = 2):
    """This process for one worker and no scheduler; else a Dask cluster: a local one of
    ``workers`` processes, or the running one at ``scheduler`` / ``scheduler_file``."""
    remote = scheduler is not None or scheduler_file is not None
    if remote and workers > 1:
        raise ConfigError("--jobs sets the size of the local cluster; with --scheduler the "
                          "cluster's workers decide how many runs go at once")
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if not remote and workers <= 1:
        return InlineRunner()
    return DaskRunner(workers=workers, scheduler=scheduler, scheduler_file=scheduler_file,
                      backend=spec.backend, device=spec.device, retries=retries)


def run_sweep(spec: SweepSpec, jobs: list[Job], workers: int = 1, reference: str | None = None,
              plot: bool = True, title: str | None = None, log: Log = print,
              scheduler: str | None = None, scheduler_file: str | None = None,
              resume: bool = False, retries: int = 2) -> dict:
    """Run ``jobs`` and the dense reference (``reference`` file, else out/reference.npz, else
    trained first) and write the results files; returns {'reference', 'records', 'failed'}.

    ``workers=1`` without a scheduler runs here, one job at a time; ``workers=N`` on a local
    Dask cluster of N processes; ``scheduler`` (tcp://HOST:PORT) or ``scheduler_file`` on a
    running Dask cluster. ``resume`` skips the jobs that already have records in ``out``.
    A job whose worker dies is retried up to ``retries`` times."""
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = make_runner(spec, workers, scheduler, scheduler_file, retries)
    try:
        if not isinstance(runner, InlineRunner):  # worker logs come home, not to the terminal
            spec = replace(spec, echo=False, train=replace(spec.train, progress=False))
        where = runner.describe()
        state = _SweepState(out, {"spec": spec.describe(), "workers": where}, log)
        reference = state.reference_file = state.find_reference(reference)
        jobs = state.pending(jobs, spec) if resume else list({j.run_id: j for j in jobs}.values())
        state.total = len(jobs) + (state.reference is None)
        log(f"{state.total} run(s) on {where}; each run's log goes to {out / 'runs'}/<run>.log")
        _run_all(runner, replace(spec, backend=runner.backend or spec.backend), jobs,
                 reference, state)
    finally:
        runner.close()
    state.finish(plot, title or f"{spec.model}: accuracy vs compression")
    return {"reference": state.reference, "records": state.records, "failed": state.failed}


def _run_all(runner, spec: SweepSpec, jobs: list[Job], reference: str | None,
             state: "_SweepState") -> None:
    """The dense reference when missing (first, when the methods start from it), then ``jobs``."""
    ref_job = [Job.reference()] if state.reference is None else []
    if ref_job and any(get_method(j.method).from_reference for j in jobs):
        _run(runner, spec, ref_job, reference, state)
        ref_job = []
        if reference is None and state.saved_ref.exists():
            reference = state.reference_file = str(state.saved_ref)
        if reference is None:
            raise MinidnnError("Pru and MM start from a dense reference: training it failed "
                               "(see runs/reference.log), or pass --reference FILE")
    _run(runner, spec, ref_job + jobs, reference, state)


def _run(runner, spec: SweepSpec, jobs: list[Job], reference: str | None,
         state: "_SweepState") -> None:
    """Run ``jobs`` on ``runner``; each result goes to ``state.done`` as it comes in."""
    if not jobs:
        return
    weights = runner.share(Weights.read(reference)) if reference is not None else None
    by_key = {job.run_id: job for job in jobs}
    runner.map(run_job, {key: (spec, job, weights) for key, job in by_key.items()},
               state.started, lambda key, output: state.done(output),
               lambda key, error: state.done(RunOutput(by_key[key], [], error=error)))


class _SweepState:
    """The results of a sweep as they come in (merged with the folder's earlier ones), the
    files the runs send home, and the progress: done / running / failed."""

    def __init__(self, out: Path, config: dict, log: Log) -> None:
        previous = load_results(out) if (out / "results.json").exists() else \
            {"records": [], "reference": None}
        self.out, self.config, self.log = out, config, log
        self.previous_config: dict = previous.get("config") or {}
        self.records: list[dict] = list(previous["records"])
        self.reference: dict | None = previous["reference"]
        self.saved_ref = out / "reference.npz"
        self.reference_file: str | None = None
        self.failed: list[str] = []
        self.total, self.finished, self.running, self.ended = 0, 0, set(), set()

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

    def pending(self, jobs: list[Job], spec: SweepSpec) -> list[Job]:
        """``jobs`` without those that have records in the folder (after checking that the
        folder's sweep had the same settings)."""
        _check_same_settings(self.previous_config.get("spec"), spec)
        have = {r.get("run") for r in self.records}
        todo = list({j.run_id: j for j in jobs if j.run_id not in have}.values())
        skipped = sorted({j.run_id for j in jobs} - {j.run_id for j in todo})
        self.log(f"resume: {len(skipped)} run(s) already done"
                 + (f" ({', '.join(skipped)})" if skipped else "")
                 + f"; {len(todo)} to run" + ("" if self.reference else " and the reference"))
        return todo

    def progress(self) -> str:
        return (f"[{self.finished - len(self.failed)}/{self.total} done, {len(self.running)} "
                f"running, {len(self.failed)} failed]")

    def started(self, run_id: str, where: str) -> None:
        """A run began on ``where`` (a worker's address, or 'this process'; the news may
        arrive after its result, then it is old)."""
        if run_id in self.ended:
            return
        self.running.add(run_id)
        self.log(f"{self.progress()} started {run_id} on {where}")

    def done(self, output: RunOutput) -> None:
        """Write one finished run's files, merge its records, rewrite the results files."""
        job = output.job
        self.running.discard(job.run_id)
        self.ended.add(job.run_id)
        self.finished += 1
        _store(self.out, output.files)
        if output.error:
            self.failed.append(job.run_id)
            self.log(f"{self.progress()} run {job.run_id} FAILED: {output.error}")
            return
        new = output.records
        if job.is_reference:
            self.reference = {**new[0], "run": REFERENCE,
                              "file": self.reference_file or str(self.saved_ref)}
        else:
            self.records = merge_records(self.records, new)
        write_results(self.out, self.records, self.reference, self.config)
        self.log(f"{self.progress()} done {job.run_id}: " + "; ".join(
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


# settings that may change between a sweep and its resumption
_FREE_SETTINGS = {"out", "echo", "save_models", "progress"}


def _settings(described: dict) -> dict:
    """The settings that make records comparable, as JSON values."""
    plain = json.loads(json.dumps(described, default=_plain))
    plain["train"] = {k: v for k, v in plain.get("train", {}).items()
                      if k not in _FREE_SETTINGS}
    return {k: v for k, v in plain.items() if k not in _FREE_SETTINGS}


def _check_same_settings(previous: dict | None, spec: SweepSpec) -> None:
    """ConfigError when the folder's last sweep ran with other settings than ``spec``."""
    if not previous:
        return
    old, new = _settings(previous), _settings(spec.describe())
    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if differ:
        raise ConfigError(f"--resume: the sweep in {spec.out} ran with other settings "
                          f"({', '.join(differ)} differ); use the same options, or another "
                          f"--out, or drop --resume to redo every run")


def _store(out: Path, files: dict[str, bytes]) -> None:
    """Write a run's files into the sweep folder: logs appended, the others replaced whole."""
    for name, data in files.items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise MinidnnError(f"a run sent a file outside the sweep folder: {name}")
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".log":
            with open(path, "ab") as f:
                f.write(data)
            continue
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


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
