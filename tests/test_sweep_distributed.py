"""Sweeps on Dask distributed (minidnn.compress.cluster): a local cluster and one started with
Dask's own command-line tools give the same records as the sequential run, a job whose worker
is killed is retried, a failing job is recorded and the sweep goes on, --resume runs only what
is missing. Everything listens on 127.0.0.1 only.

The tiny setting: LeNet-5 on real MNIST, 20 steps of 32 images per point, tested on the first
500 test images. NumPy float32 results depend on the number of BLAS threads (summation order),
so every run here uses one: the sequential baseline runs in a subprocess with one thread, as
Dask's workers do.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minidnn.compress.cluster import (OPENCL, THREAD_VARIABLES, ClusterError, DaskRunner,
                                      dask_available, job_resources, local_worker_devices,
                                      opencl_kind)
from minidnn.compress.sweep import SweepSpec, make_jobs, make_runner, run_sweep
from minidnn.errors import ConfigError
from minidnn.train_config import TrainConfig

STEPS, BATCH, N_TEST = 20, 32, 500
LAMS = [0.1, 0.3]
ONE_THREAD = {k: "1" for k in THREAD_VARIABLES}
needs_dask = pytest.mark.skipif(not dask_available(), reason="Dask distributed not installed "
                                                             "(pip install -e .[distributed])")


# ---------------------------------------------------------------------- the tiny setting
def mnist_subset(root: str, n_test: int):
    """(train, the first n_test test images) of real MNIST."""
    from minidnn.data import ArrayDataset, load_dataset
    train, test = load_dataset("mnist", root)
    test = ArrayDataset(test.images[:n_test], test.labels[:n_test], test.name, test.classes,
                        test.mean, test.std, test.source)
    return train, test


def lenet5_dying_once(marker: str, seed: int):
    """LeNet-5; but the first call (anywhere) kills its own process, as a crash would."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    from minidnn.models import build_model
    return build_model("lenet5", seed=seed)


def tiny_spec(mnist_dir, out, **kw) -> SweepSpec:
    return SweepSpec(model="lenet5", data="mnist", backend="numpy",
                     train=TrainConfig(batch_size=BATCH), steps=STEPS, out=str(out), echo=False,
                     data_factory=functools.partial(mnist_subset, str(mnist_dir), N_TEST), **kw)


def comparable(result: dict) -> list[dict]:
    """The reference and the records without their timing."""
    rows = [result["reference"]] + result["records"]
    return [{k: v for k, v in r.items() if k not in ("seconds", "file")} for r in rows]


def baseline_main(mnist_dir: str, out: str) -> None:
    """The sequential sweep (run in a subprocess with one BLAS thread)."""
    run_sweep(tiny_spec(mnist_dir, out), make_jobs("spc", LAMS, "lam"), plot=False,
              log=lambda s: None)


@pytest.fixture(scope="module")
def baseline(mnist_dir, tmp_path_factory) -> tuple[Path, list[dict]]:
    """(folder, records) of the tiny sweep run here, one job after the other."""
    out = tmp_path_factory.mktemp("sequential")
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import {Path(__file__).stem} as t; t.baseline_main({str(mnist_dir)!r}, "
            f"{str(out)!r})")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **ONE_THREAD},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((out / "results.json").read_text())
    return out, comparable(saved)


# docs/distributed.md: NumPy runs are much slower under the MALLOC_TRIM_THRESHOLD_ Dask sets
DASK_YAML = """
distributed:
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
"""


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    """A scheduler and 2 workers started with `dask scheduler` / `dask worker` on 127.0.0.1;
    yields the scheduler file."""
    if not dask_available():
        pytest.skip("Dask distributed not installed")
    folder = tmp_path_factory.mktemp("dask")
    file = folder / "scheduler.json"
    (folder / "dask.yaml").write_text(DASK_YAML)
    env = {**os.environ, **ONE_THREAD, "DASK_CONFIG": str(folder),
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "2",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent)]  # this module's factories
                                         + os.environ.get("PYTHONPATH", "").split(os.pathsep))}
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--port", "0",
                               "--dashboard-address", "127.0.0.1:0",
                               "--scheduler-file", str(file)] + common, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait_for(file.exists, 60, "the scheduler file")
        procs += [subprocess.Popen([sys.executable, "-m", "dask", "worker", "--scheduler-file",
                                    str(file), "--nworkers", "1", "--nthreads", "1",
                                    "--local-directory", str(folder), "--name", f"w{i}"] + common,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for i in range(2)]
        yield str(file)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_for(check, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} did not appear within {seconds} s")
        time.sleep(0.1)


# ---------------------------------------------------------------------- equal records
@needs_dask
def test_local_cluster_gives_the_sequential_records(mnist_dir, baseline, tmp_path, monkeypatch):
    for k, v in ONE_THREAD.items():
        monkeypatch.setenv(k, v)
    lines: list[str] = []
    result = run_sweep(tiny_spec(mnist_dir, tmp_path), make_jobs("spc", LAMS[:1], "lam"),
                       workers=2, plot=False, log=lines.append)
    assert comparable(result) == baseline[1][:2] and not result["failed"]
    assert any("local Dask cluster of 2 worker(s) at tcp://127.0.0.1:" in s for s in lines)
    assert lines[-1].startswith("[2/2 done, 0 running, 0 failed]")
    runs = {p.name for p in (tmp_path / "runs").iterdir()}   # the files came home
    assert {f"{r}.{ext}" for r in ("reference", "spc-lam0.1") for ext in ("log", "json", "txt")} \
        <= runs
    assert (tmp_path / "reference.npz").stat().st_size > 100_000
    assert "spc: accuracy" in (tmp_path / "runs" / "spc-lam0.1.log").read_text()


@needs_dask
def test_cluster_from_dask_cli_gives_the_sequential_records_despite_a_kill(
        mnist_dir, baseline, cli_cluster, tmp_path):
    """The same sweep plus a job that fails, on the CLI-started cluster, where the first run
    to build its model kills its worker process (the nanny starts a new one)."""
    spec = tiny_spec(mnist_dir, tmp_path, save_models=True,
                     model_factory=functools.partial(lenet5_dying_once, str(tmp_path / "died")))
    lines: list[str] = []
    result = run_sweep(spec, make_jobs("spc", LAMS + [-1.0], "lam"),
                       scheduler_file=cli_cluster, plot=False, log=lines.append)
    assert (tmp_path / "died").exists()                 # a worker was killed mid-job
    assert result["failed"] == ["spc-lam-1"]            # the bad job, and only it, failed
    assert comparable(result) == baseline[1]            # every other record, as run here
    assert "lam must be >= 0" in (tmp_path / "runs" / "spc-lam-1.log").read_text()
    assert (tmp_path / "runs" / "spc-lam0.1.h5").stat().st_size > 10_000
    assert lines[-1].startswith("[3/4 done, 0 running, 1 failed]")
    assert any("[0/4 done, 1 running, 0 failed] started" in s for s in lines)


@needs_dask
def test_resumed_sweep_runs_only_what_is_missing(mnist_dir, baseline, cli_cluster, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(baseline[0], out)
    saved = json.loads((out / "results.json").read_text())
    saved["records"] = [r for r in saved["records"] if r["run"] != "spc-lam0.3"]
    (out / "results.json").write_text(json.dumps(saved))
    done_before = (out / "runs" / "spc-lam0.1.json").read_bytes()
    lines: list[str] = []
    result = run_sweep(tiny_spec(mnist_dir, out), make_jobs("spc", LAMS, "lam"),
                       scheduler_file=cli_cluster, resume=True, plot=False, log=lines.append)
    assert any("resume: 1 run(s) already done (spc-lam0.1); 1 to run" in s for s in lines)
    assert [s.split()[-3] for s in lines if " started " in s] == ["spc-lam0.3"]
    assert comparable(result) == baseline[1]
    assert (out / "runs" / "spc-lam0.1.json").read_bytes() == done_before
    with pytest.raises(ConfigError, match="other settings .*steps"):
        run_sweep(replace_steps(tiny_spec(mnist_dir, out)), make_jobs("spc", LAMS, "lam"),
                  resume=True, plot=False, log=lambda s: None)


def replace_steps(spec: SweepSpec) -> SweepSpec:
    from dataclasses import replace
    return replace(spec, steps=STEPS + 1)


# ---------------------------------------------------------------------- the runner itself
def _fails(x: int) -> int:
    raise ValueError(f"no good: {x}")


@needs_dask
def test_runner_reports_results_failures_and_starts(cli_cluster):
    started, results, errors = [], {}, {}
    with DaskRunner(scheduler_file=cli_cluster, retries=1) as runner:
        assert runner.backend == "numpy" and runner.resources is None
        runner.map(abs, {"a": (-3,), "b": (4,)}, lambda k, w: started.append((k, w)),
                   results.__setitem__, errors.__setitem__)
        runner.map(_fails, {"c": (1,)}, lambda k, w: None, results.__setitem__,
                   errors.__setitem__)
    assert results == {"a": 3, "b": 4}
    assert errors == {"c": "ValueError: no good: 1"}
    assert sorted(k for k, _ in started) == ["a", "b"]
    assert all(w.startswith("tcp://127.0.0.1:") for _, w in started)


@needs_dask
def test_opencl_jobs_need_a_worker_with_a_device(cli_cluster):
    with pytest.raises(ClusterError, match=f"no worker .* has an OpenCL device.*{OPENCL}=1"):
        DaskRunner(scheduler_file=cli_cluster, backend="opencl")
    with DaskRunner(scheduler_file=cli_cluster, backend="auto") as runner:
        assert runner.backend == "numpy"    # no OpenCL worker: 'auto' runs NumPy jobs anywhere


@needs_dask
def test_unreachable_scheduler_is_one_clear_error():
    with pytest.raises(ClusterError, match="cannot use the Dask cluster at tcp://127.0.0.1:1"):
        DaskRunner(scheduler="tcp://127.0.0.1:1", timeout=1)


def test_device_and_resource_rules():
    assert job_resources("opencl") == {OPENCL: 1} and job_resources("numpy") is None
    assert opencl_kind("auto", True) == "opencl" and opencl_kind("auto", False) == "numpy"
    assert opencl_kind("numpy", True) == "numpy"
    assert local_worker_devices(3, "numpy", None) is None
    assert local_worker_devices(2, "opencl", "0:0") == [None, None]


def test_parallel_sweeps_without_dask_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)   # import distributed fails
    with pytest.raises(ConfigError, match=r"minidnn\[distributed\]"):
        make_runner(SweepSpec(model="lenet5", data="mnist", out=str(tmp_path)), workers=2)
    assert type(make_runner(SweepSpec(model="lenet5", data="mnist"), workers=1)).__name__ \
        == "InlineRunner"                                   # --jobs 1 needs no Dask


def test_cli_rejects_jobs_with_a_scheduler(tmp_path, capsys):
    from minidnn.cli import main
    code = main(["sweep", "lenet5", "--method", "spc", "--lams", "0.1", "--jobs", "2",
                 "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--jobs sets the size of the local cluster" in err[0]

