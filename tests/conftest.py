"""Shared fixtures: backends (NumPy always; every OpenCL device found, else skipped), data paths."""
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


def _opencl_device_ids() -> list[str]:
    try:
        from minidnn.backend.opencl_backend import list_devices
        return [index for index, _ in list_devices()]
    except Exception:  # no pyopencl or no platform: OpenCL tests skip
        return []


OPENCL_DEVICES = _opencl_device_ids()
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
    reason="no OpenCL device found (pip install pyopencl[pocl])"))])
def clb(request):
    """An OpenCLBackend, once per OpenCL device found."""
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
