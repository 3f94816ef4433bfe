"""Backends: where arrays live and how primitives run. ``get_backend`` picks one by name."""
from __future__ import annotations

from .base import Backend
from .numpy_backend import NumpyBackend


def get_backend(name: str = "numpy", device: str | None = None, **kwargs) -> Backend:
    """Backend by name: 'numpy' (host reference) or 'opencl' (``device`` as in select_device)."""
    if isinstance(name, Backend):
        return name
    key = name.lower()
    if key == "numpy":
        if device is not None:
            raise ValueError("the numpy backend takes no device")
        return NumpyBackend(**kwargs)
    if key in ("opencl", "cl"):
        from .opencl_backend import OpenCLBackend  # imported lazily: pyopencl is optional
        return OpenCLBackend(device=device, **kwargs)
    from ..errors import ConfigError
    raise ConfigError(f"unknown backend {name!r}: choose 'numpy' or 'opencl'")


__all__ = ["Backend", "NumpyBackend", "get_backend"]
