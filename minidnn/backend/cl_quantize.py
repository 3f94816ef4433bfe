"""OpenCL primitives for shared (quantized) weights (mixin of OpenCLBackend): ``quantize.cl``.

Only the centroid-gradient reduction lives here; broadcasting centroids to their members is the
existing ``gather`` (``csr.cl``).
"""
from __future__ import annotations

import numpy as np

from .base import Array

try:
    import pyopencl as cl
except ImportError:  # pragma: no cover - the mixin is only used with pyopencl present
    cl = None

STEM = "quantize"


class CLQuantizeOps:
    """``segment_sum`` on the device (contract in ``Backend.segment_sum``)."""

    def _segment_ls(self) -> int:
        """Work-group size: a power of two (64 on CPUs, 256 on GPUs) the kernel allows."""
        ls = self.__dict__.get("_quantize_ls")
        if ls is None:
            limit = int(self.kernel(STEM, "quantize_segment_sum").get_work_group_info(
                cl.kernel_work_group_info.WORK_GROUP_SIZE, self.device))
            want, ls = min(64 if self.is_cpu else 256, limit), 1
            while ls * 2 <= want:
                ls *= 2
            self._quantize_ls = ls
        return ls

    def segment_sum(self, values: Array, order: Array, offsets: Array,
                    out: Array | None = None) -> Array:
        if np.dtype(order.dtype) != np.int32 or np.dtype(offsets.dtype) != np.int32:
            raise TypeError(f"segment_sum needs int32 order and offsets, got {order.dtype} "
                            f"and {offsets.dtype}")
        k = int(offsets.size) - 1
        if out is None:
            out = self.empty((max(k, 0),))
        if k > 0:
            ls = self._segment_ls()
            self.launch(STEM, "quantize_segment_sum", (k * ls,), (ls,), values, order, offsets,
                        out, cl.LocalMemory(4 * ls))
        return out
