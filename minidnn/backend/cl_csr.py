"""OpenCL csr primitives (mixin of OpenCLBackend)."""
from __future__ import annotations


class CLCSROps:
    """Placeholder until the kernels land."""
