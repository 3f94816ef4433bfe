"""OpenCL gemm primitives (mixin of OpenCLBackend)."""
from __future__ import annotations


class CLGemmOps:
    """Placeholder until the kernels land."""
