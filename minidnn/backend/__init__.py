"""Backends: where arrays live and how primitives run. ``get_backend`` picks one by name;
``resolve_backend`` also understands 'auto' (the command line's default)."""
from __future__ import annotations

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



def resolve_backend(name: str, device: str | None):
    """'auto' = OpenCL when a device exists (first GPU, else PoCL CPU), else NumPy with a note."""
    if name != "auto":
        return get_backend(name, device)
    try:
        return get_backend("opencl", device)
    except NoOpenCLDeviceError as exc:
        print(f"note: {exc}\nnote: falling back to the NumPy backend", file=sys.stderr)
        return get_backend("numpy")


__all__ = ["Backend", "NumpyBackend", "get_backend", "resolve_backend"]
