"""OpenCL nn primitives (mixin of OpenCLBackend)."""
from __future__ import annotations


class CLNNOps:
    """Placeholder until the kernels land."""
