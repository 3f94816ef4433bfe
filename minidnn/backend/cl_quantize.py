"""OpenCL op group for shared (quantized) weights: ``quantize.cl``.

Only the centroid-gradient reduction lives here; broadcasting centroids to their members is the
existing ``gather`` (``csr.cl``).
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError
from .base import Array
from .cl_runtime import CLRuntime
from .devices import cl

STEM = "quantize"


class QuantizeOps:
    """``segment_sum`` and ``nearest_centroid`` on the device (contracts in ``Backend``)."""

    provides = ("segment_sum", "nearest_centroid")

    def __init__(self, runtime: CLRuntime) -> None:
        self.rt = runtime
        # one work-group per segment: a power of two, 64 on CPUs and 256 on GPUs at most
        self.local_size = runtime.reduction_size

    def segment_sum(self, values: Array, order: Array, offsets: Array,
                    out: Array | None = None) -> Array:
        if np.dtype(order.dtype) != np.int32 or np.dtype(offsets.dtype) != np.int32:
            raise DTypeError(f"segment_sum needs int32 order and offsets, got {order.dtype} "
                             f"and {offsets.dtype}")
        k = int(offsets.size) - 1
        if out is None:
            out = self.rt.empty((max(k, 0),))
        if k > 0:
            ls = self.rt.group_size(STEM, "quantize_segment_sum", self.local_size)
            ls = 1 << (ls.bit_length() - 1)  # the kernel's tree sum needs a power of two
            self.rt.launch(STEM, "quantize_segment_sum", (k * ls,), (ls,), values, order,
                           offsets, out, cl.LocalMemory(4 * ls))
        return out

    def nearest_centroid(self, values: Array, mids: Array, out: Array) -> Array:
        n, m = int(values.size), int(mids.size)
        if np.dtype(out.dtype) != np.int32 or int(out.size) != n:
            raise DTypeError(f"nearest_centroid needs an int32 output of {n} entries, got "
                             f"{out.dtype} {tuple(out.shape)}")
        if n:
            self.rt.launch(STEM, "quantize_nearest", (n,), None, values, np.int32(n), mids,
                           np.int32(m), out)
        return out
