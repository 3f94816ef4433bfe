"""Shared fixtures: backends (NumPy always; every usable OpenCL device, else skipped), data paths.

Each OpenCL device found is probed once (``minidnn.backend.devices``): usable devices run every
OpenCL test; an unusable one (a runtime that cannot build kernels on this CPU) gives one skip
with its reason in tests/test_devices.py, not hundreds of failures. With
``MINIDNN_REQUIRE_OPENCL=1`` (set by .ci/run) a run without a usable device fails instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from minidnn.backend import NumpyBackend

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = Path(os.environ.get("MINIDNN_TEST_DATASETS", SHARED / "datasets"))


REQUIRE_OPENCL = os.environ.get("MINIDNN_REQUIRE_OPENCL") == "1"


def _survey() -> tuple[list, str]:
    """(device statuses, why there are none) for every OpenCL device found."""
    try:
        from minidnn.backend.devices import survey_devices
        return survey_devices(), ""
    except Exception as exc:  # no pyopencl or no platform: OpenCL tests skip (or fail, if required)
        return [], str(exc).splitlines()[0] if str(exc) else type(exc).__name__


DEVICE_STATUSES, NO_DEVICE_REASON = _survey()
OPENCL_DEVICES = [s.index for s in DEVICE_STATUSES if s.usable]
UNUSABLE_DEVICES = {s.index: s.problem for s in DEVICE_STATUSES if not s.usable}
NO_USABLE_DEVICE = ("no usable OpenCL device: " + (NO_DEVICE_REASON or "; ".join(
    f"{i}: {p}" for i, p in UNUSABLE_DEVICES.items()) or "none found"))


def pytest_report_header(config) -> list[str]:
    from minidnn.backend.devices import describe_device
    lines = [f"opencl {s.index}: {describe_device(s.device)} "
             f"[{'ok' if s.usable else 'unusable: ' + str(s.problem)}]" for s in DEVICE_STATUSES]
    return lines or [f"opencl: {NO_USABLE_DEVICE}"]
_BACKENDS: dict[str, object] = {}


def opencl_backend_for(index: str):
    """One OpenCLBackend per device for the whole session (kernels build once)."""
    if index not in _BACKENDS:
        from minidnn.backend.opencl_backend import OpenCLBackend
        _BACKENDS[index] = OpenCLBackend(device=index)
    return _BACKENDS[index]


@pytest.fixture
def np64():
    """NumPy backend in float64, for numerical gradient checks."""
    return NumpyBackend(dtype=np.float64)


@pytest.fixture
def np32():
    return NumpyBackend()


@pytest.fixture(params=OPENCL_DEVICES or [pytest.param(None, marks=pytest.mark.skip(
    reason=NO_USABLE_DEVICE + " (pip install -e .[cpu])"))])
def clb(request):
    """An OpenCLBackend, once per usable OpenCL device."""
    return opencl_backend_for(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def spy(monkeypatch, owner, name: str) -> list:
    """Wrap ``owner.name`` (for this test) so that every call is recorded in the returned list."""
    calls: list = []
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    return calls


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    d = DATASETS / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found under {d}")
    return d


CIFAR10_CACHE = Path(os.environ.get("MINIDNN_TEST_CACHE",
                                   Path(tempfile.gettempdir()) / "minidnn-test-data")) / "cifar10"
CIFAR10_FILES = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """A folder holding cifar-10-batches-py/, built once from the shared JPEG copy and cached."""
    script = DATASETS / "cifar10" / "make_batches.py"
    if not script.exists():
        pytest.skip(f"CIFAR-10 source not found under {script.parent}")
    pytest.importorskip("PIL", reason="building CIFAR-10 batches needs Pillow (pip install -e .[test])")
    target = CIFAR10_CACHE / "cifar-10-batches-py"
    complete = lambda: all((target / name).is_file() for name in CIFAR10_FILES)
    if not complete():
        CIFAR10_CACHE.mkdir(parents=True, exist_ok=True)
        # build aside, then rename: safe if two sessions build at once
        with tempfile.TemporaryDirectory(dir=CIFAR10_CACHE) as tmp:
            done = subprocess.run([sys.executable, str(script), tmp], capture_output=True, text=True)
            if done.returncode:
                pytest.fail(f"{script} failed:\n{done.stderr[-2000:]}")
            if not complete():  # else another process finished first
                shutil.rmtree(target, ignore_errors=True)
                try:
                    os.replace(Path(tmp) / "cifar-10-batches-py", target)
                except OSError:  # lost a race with another build: theirs must be complete
                    assert complete(), f"could not build {target}"
    return CIFAR10_CACHE
