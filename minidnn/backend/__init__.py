"""Backends: where arrays live and how primitives run. ``get_backend`` picks one by name;
``resolve_backend`` also understands 'auto' (the command line's default)."""
from __future__ import annotations

import os
import sys

from ..errors import ConfigError, NoOpenCLDeviceError
from .base import Backend
from .numpy_backend import NumpyBackend


def get_backend(name: str = "numpy", device: str | None = None, **kwargs) -> Backend:
    """Backend by name: 'numpy' (host reference) or 'opencl' (``device`` as in select_device)."""
    if isinstance(name, Backend):
        return name
    key = name.lower()
    if key == "numpy":
        if device is not None:
            raise ConfigError("the numpy backend takes no device")
        return NumpyBackend(**kwargs)
    if key in ("opencl", "cl"):
        from .opencl_backend import OpenCLBackend  # imported lazily: pyopencl is optional
        return OpenCLBackend(device=device, **kwargs)
    raise ConfigError(f"unknown backend {name!r}: choose 'numpy' or 'opencl'")


def resolve_backend(name: str = "auto", device: str | None = None) -> Backend:
    """'auto': the default OpenCL device (first usable GPU, else the best usable CPU device),
    else NumPy with a one-line note naming the reason and the fix.

    A device named explicitly (``device`` or ``$MINIDNN_DEVICE``) never falls back: if it does
    not exist or cannot build kernels, the error says so.
    """
    if name != "auto":
        return get_backend(name, device)
    if device is not None or os.environ.get("MINIDNN_DEVICE"):
        return get_backend("opencl", device)
    try:
        return get_backend("opencl")
    except NoOpenCLDeviceError as exc:
        print(f"note: using the NumPy backend: {exc}", file=sys.stderr)
        return get_backend("numpy")


__all__ = ["Backend", "NumpyBackend", "get_backend", "resolve_backend"]
