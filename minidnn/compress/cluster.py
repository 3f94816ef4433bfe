"""Sweep jobs on Dask distributed: a local cluster on 127.0.0.1, or a running one.

``DaskRunner`` sends tasks (a function and its arguments) to Dask workers and hands each result,
or each failure, back to the caller as it comes in. It knows nothing of sweeps: the sweep gives
it ``run_job`` and collects ``RunOutput``s. Dask is an optional extra (``minidnn[distributed]``),
imported only when a runner is made; minidnn works without it.

Devices: an OpenCL job needs the worker resource ``opencl=1``, declared by workers that own a
usable device (``dask worker ... --resources opencl=1``, device chosen by ``MINIDNN_DEVICE`` in
the worker's environment); NumPy jobs need nothing and run anywhere. A local cluster declares the
resource on each worker when this machine has a usable device and spreads several GPUs over the
workers. Faults: a worker that dies takes its task to another worker, at most ``retries`` times
(Dask's ``allowed-failures`` on a local cluster; the scheduler's own setting on a remote one);
a task that raises is retried ``retries`` times, then reported as failed.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import uuid
from typing import Any, Callable

from ..errors import ConfigError, MinidnnError

TOPIC = "minidnn-sweep"     # Dask event topic: a task says where it started
OPENCL = "opencl"           # the worker resource an OpenCL job needs (one device per worker)
# what a local worker's thread counts are set by (unless set here): cores / workers each
THREAD_VARIABLES = ("POCL_MAX_PTHREAD_COUNT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")
INSTALL_HINT = "pip install 'minidnn[distributed]' (Dask distributed)"

Log = Callable[[str], None]
OnStart = Callable[[str, str], None]          # (task key, where it runs)
OnResult = Callable[[str, Any], None]         # (task key, the function's result)
OnError = Callable[[str, str], None]          # (task key, one-line reason)


class ClusterError(MinidnnError, RuntimeError):
    """The Dask cluster cannot be reached or cannot run the jobs (no worker fits them)."""


def dask_available() -> bool:
    """Whether Dask distributed is installed (without importing it)."""
    return importlib.util.find_spec("distributed") is not None


def _distributed():
    """The ``distributed`` package, or a ConfigError saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(f"parallel and remote sweeps run on Dask, which is not installed "
                          f"({exc}): {INSTALL_HINT}") from None
    return distributed


def opencl_kind(backend: str, has_opencl: bool) -> str:
    """The backend a cluster's jobs use for ``backend``: 'numpy' and 'opencl' as given; 'auto'
    becomes 'opencl' when the cluster has OpenCL workers (``has_opencl``), else 'numpy'."""
    if backend == "auto":
        return "opencl" if has_opencl else "numpy"
    return backend


def job_resources(backend: str) -> dict[str, int] | None:
    """Dask resources one job of ``backend`` needs: one OpenCL device, or nothing."""
    return {OPENCL: 1} if backend == "opencl" else None


def local_worker_devices(n: int, backend: str, device: str | None) -> list[str | None] | None:
    """The OpenCL device of each of ``n`` local workers (None entries: the default device), or
    None when the local jobs do not use OpenCL (NumPy backend, or 'auto' without a device).
    Several usable GPUs are spread over the workers round-robin."""
    if backend == "numpy":
        return None
    if device is not None or os.environ.get("MINIDNN_DEVICE"):
        return [None] * n   # the given device, on every worker (spec.device / inherited env)
    from ..backend import devices
    try:
        usable = [s for s in devices.survey_devices() if s.usable]
    except MinidnnError:
        usable = []
    if not usable:
        if backend == "opencl":
            raise ClusterError("no usable OpenCL device on this machine for --backend opencl; "
                               "run `minidnn devices`, or use --backend numpy")
        return None
    gpus = [s.index for s in usable if s.device.type & devices.cl.device_type.GPU]
    return [gpus[i % len(gpus)] for i in range(n)] if len(gpus) > 1 else [None] * n


def _local_cluster(n: int, devices: list[str | None] | None, retries: int):
    """A cluster of ``n`` single-threaded worker processes (each under a nanny) and a scheduler,
    all listening on 127.0.0.1 only, dashboards off."""
    import logging

    import dask
    from distributed import Nanny, Scheduler, SpecCluster
    threads = str(max(1, (os.cpu_count() or 1) // n))  # share the cores (PoCL, BLAS)
    base_env = {k: os.environ.get(k, threads) for k in THREAD_VARIABLES}
    workers = {}
    for i in range(n):
        env = dict(base_env)
        if devices is not None and devices[i] is not None:
            env["MINIDNN_DEVICE"] = devices[i]
        workers[i] = {"cls": Nanny, "options": {
            "host": "127.0.0.1", "nthreads": 1, "memory_limit": 0, "dashboard": False,
            "env": env, "resources": {OPENCL: 1} if devices is not None else None,
            "silence_logs": logging.ERROR}}
    scheduler = {"cls": Scheduler, "options": {  # its HTTP server too: loopback, any port
        "host": "127.0.0.1", "port": 0, "dashboard": False, "dashboard_address": "127.0.0.1:0"}}
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": retries,
                              # before the worker starts: thread counts, and not Dask's
                              # MALLOC_TRIM_THRESHOLD_ (its fixed threshold makes each
                              # large NumPy allocation a fresh mmap: runs got 5x slower)
                              "distributed.nanny.pre-spawn-environ": base_env}):
            return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR)
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot start a local Dask cluster of {n} workers: {exc} (in a "
                           f"script, start sweeps under `if __name__ == '__main__':`, "
                           f"since workers are new processes that import it)") from None


class DaskRunner:
    """Runs tasks on a Dask cluster: a local one of ``workers`` processes (default), or the one
    at ``scheduler`` (an address such as tcp://10.0.0.5:8786) or described by ``scheduler_file``.

    ``backend`` is the sweep's backend; ``self.backend`` is what its jobs run with here ('auto'
    resolved against the cluster's devices). Use as a context manager, or call ``close``.
    """

    def __init__(self, workers: int = 2, scheduler: str | None = None,
                 scheduler_file: str | None = None, backend: str = "numpy",
                 device: str | None = None, retries: int = 2, timeout: float = 30.0) -> None:
        distributed = _distributed()
        self.retries, self.cluster = retries, None
        if scheduler is None and scheduler_file is None:
            devices = local_worker_devices(workers, backend, device)
            self.cluster = _local_cluster(workers, devices, retries)
            scheduler = self.cluster.scheduler_address
        try:
            self.client = distributed.Client(scheduler, scheduler_file=scheduler_file,
                                             timeout=timeout, set_as_default=False)
            self.client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            self._close_cluster()
            where = scheduler or scheduler_file
            raise ClusterError(f"cannot use the Dask cluster at {where}: {exc}") from None
        self.backend = opencl_kind(backend, self._has_opencl())
        self.resources = job_resources(self.backend)
        if self.resources and not self._has_opencl():
            address = self.address
            self.close()
            raise ClusterError(f"no worker of the cluster at {address} has an OpenCL "
                               f"device: start workers with --resources {OPENCL}=1 (and "
                               f"MINIDNN_DEVICE), or use --backend numpy")

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self.client.scheduler.address

    def _workers(self) -> dict:
        return self.client.scheduler_info().get("workers", {})

    def _has_opencl(self) -> bool:
        return any((w.get("resources") or {}).get(OPENCL, 0) >= 1
                   for w in self._workers().values())

    def describe(self) -> str:
        """'a local Dask cluster of 2 workers at tcp://127.0.0.1:PORT' (or 'the Dask ...')."""
        n = len(self._workers())
        kind = "a local Dask cluster" if self.cluster is not None else "the Dask cluster"
        return f"{kind} of {n} worker(s) at {self.address}"

    def share(self, value: Any) -> Any:
        """``value`` placed on every worker once (e.g. reference weights), to pass to tasks."""
        return self.client.scatter(value, broadcast=True, hash=False)

    def map(self, fn: Callable, tasks: dict[str, tuple], on_start: OnStart,
            on_result: OnResult, on_error: OnError) -> None:
        """Run ``fn(*args)`` for every ``key: args`` of ``tasks`` on the cluster; call
        ``on_start`` when one starts on a worker, then ``on_result`` or ``on_error``."""
        distributed = _distributed()
        token, lock = uuid.uuid4().hex, threading.Lock()

        def started(event) -> None:
            msg = event[1]
            if isinstance(msg, dict) and msg.get("sweep") == token:
                with lock:
                    on_start(msg["key"], msg["worker"])
        self.client.subscribe_topic(TOPIC, started)
        futures = {self.client.submit(_task, token, key, fn, *args, key=f"{key}-{token}",
                                      resources=self.resources, retries=self.retries,
                                      pure=False): key
                   for key, args in tasks.items()}
        try:
            for future in distributed.as_completed(futures, loop=self.client.loop):
                key = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker, or fn failing here
                    with lock:
                        on_error(key, _reason(exc))
                    continue
                with lock:
                    on_result(key, result)
        finally:
            self.client.unsubscribe_topic(TOPIC)
            self.client.cancel(list(futures))

    def close(self) -> None:
        """Disconnect; stop the local cluster if this runner started it."""
        self.client.close()
        self._close_cluster()

    def _close_cluster(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> "DaskRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    """One line for a task that failed on the cluster."""
    name = type(exc).__name__
    if name == "KilledWorker":
        return f"KilledWorker: its workers died too often (Dask's allowed-failures): {exc}"
    return f"{name}: {exc}"


def _task(token: str, key: str, fn: Callable, *args) -> Any:
    """On a worker: say where the task starts (Dask event ``TOPIC``), then run it."""
    from distributed import get_worker
    worker = get_worker()
    worker.log_event(TOPIC, {"sweep": token, "key": key, "worker": worker.address})
    return fn(*args)
