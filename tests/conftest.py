"""Shared fixtures: backends (NumPy always; every OpenCL device found, else skipped), data paths."""
from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    d = DATASETS / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found under {d}")
    return d
