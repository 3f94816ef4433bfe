"""The OpenCL backend: every primitive of ``Backend`` as a kernel from ``cl_kernels/``.

This module owns the context/queue (devices are found and checked in ``devices``), memory and transfers; the primitives
themselves live in mixins grouped by job (``cl_gemm``: dense matrix products and transposes,
``cl_nn``: the neural-network and optimizer ops, ``cl_csr``: sparse CSR ops, ``cl_quantize``:
shared-weight ops). Arrays are
``pyopencl.array.Array`` used only as containers (shape, dtype, buffer): all arithmetic goes
through our own kernels. Work is queued without ``finish()``; only ``to_host`` waits.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Backend
from ..errors import UnusableDeviceError
from .devices import cl, describe_device, device_problem, list_devices, select_device  # noqa: F401

try:  # pyopencl is an optional extra: the NumPy backend works without it
    import pyopencl.array as cl_array
    import pyopencl.tools as cl_tools
except ImportError:  # pragma: no cover - exercised only where pyopencl is absent
    cl_array = None
    cl_tools = None


from .cl_csr import CLCSROps  # noqa: E402  (mixins need cl imported above)
from .cl_gemm import CLGemmOps  # noqa: E402
from .cl_nn import CLNNOps  # noqa: E402
from .cl_programs import ProgramCache  # noqa: E402
from .cl_quantize import CLQuantizeOps  # noqa: E402


class OpenCLBackend(CLGemmOps, CLNNOps, CLCSROps, CLQuantizeOps, Backend):
    """Float32 backend on one OpenCL device (default: first usable GPU, else the best usable CPU
    device; see ``devices.select_device``)."""

    name = "opencl"

    def __init__(self, device: "str | cl.Device | None" = None, profiling: bool = False) -> None:
        super().__init__()
        self.device = device if (cl is not None and isinstance(device, cl.Device)) \
            else select_device(device)
        problem = device_problem(self.device)
        if problem:
            raise UnusableDeviceError(f"OpenCL device {self.device.name.strip()} is unusable: "
                                      f"{problem}")
        self.device_name = describe_device(self.device)
        self.context = cl.Context([self.device])
        # profiling=True (opt-in, for benchmarks): a profiling queue; launch() then appends
        # (kernel name, event) to kernel_events, which the caller drains.
        self.queue = cl.CommandQueue(self.context, properties=(
            cl.command_queue_properties.PROFILING_ENABLE if profiling else 0))
        self.kernel_events: list | None = [] if profiling else None
        self.programs = ProgramCache(self.context)
        # Freed buffers up to POOL_MAX_BYTES go back to a pool and are handed out again: a
        # training step allocates the same activation shapes every time, and fresh buffers cost
        # page faults on PoCL. Reuse is safe because all work goes through this one in-order
        # queue. Larger buffers are not pooled: a pool keeps every size class it has seen, and
        # with big im2row buffers of many sizes (VGG16 evaluated at batch 1000) it would hold
        # gigabytes that are never reused.
        self._direct = cl_tools.ImmediateAllocator(self.queue)
        self._pool = cl_tools.MemoryPool(self._direct)
        self._typed_kernels: set[tuple[str, str]] = set()
        self.dtype = np.dtype(np.float32)
        self.is_cpu = bool(self.device.type & cl.device_type.CPU)

    def __repr__(self) -> str:
        return f"OpenCLBackend({self.device_name})"

    # ------------------------------------------------------------------ kernel launching
    def kernel(self, stem: str, name: str) -> "cl.Kernel":
        """Cached Kernel ``name`` from ``cl_kernels/<stem>.cl``."""
        return self.programs.kernel(stem, name)

    def launch(self, stem: str, name: str, global_size: Sequence[int],
               local_size: Sequence[int] | None, *args) -> None:
        """Enqueue a kernel; ``global_size`` is rounded up to a multiple of ``local_size``
        (kernels guard their own bounds). Arrays are passed as their buffers. On a kernel's
        first launch its scalar argument types are declared from the NumPy scalars given
        (np.int32/np.float32 matching the kernel), so PyOpenCL packs them directly afterwards
        (an undeclared NumPy scalar costs ~10 us per launch)."""
        k = self.kernel(stem, name)
        if (stem, name) not in self._typed_kernels:
            k.set_scalar_arg_dtypes([a.dtype if isinstance(a, np.generic) else None
                                     for a in args])
            self._typed_kernels.add((stem, name))
        gs = tuple(int(g) for g in global_size)
        if local_size is not None:
            ls = tuple(int(v) for v in local_size)
            gs = tuple(max(1, -(-g // l)) * l for g, l in zip(gs, ls))
        else:
            ls = None
            gs = tuple(max(1, g) for g in gs)
        k.set_args(*[a.data if isinstance(a, cl_array.Array) else a for a in args])
        event = cl.enqueue_nd_range_kernel(self.queue, k, gs, ls)
        if self.kernel_events is not None:
            self.kernel_events.append((name, event))

    def kernel_times(self) -> dict[str, tuple[int, float]]:
        """Per kernel name: (launches, seconds of device time) of the profiling events recorded
        since the last call, which clears them (needs ``profiling=True``)."""
        if self.kernel_events is None:
            raise RuntimeError("kernel_times needs an OpenCLBackend(profiling=True)")
        times: dict[str, tuple[int, float]] = {}
        for name, event in self.kernel_events:
            calls, seconds = times.get(name, (0, 0.0))
            times[name] = (calls + 1, seconds + (event.profile.end - event.profile.start) * 1e-9)
        self.kernel_events.clear()
        return times

    # ------------------------------------------------------------------ memory
    POOL_MAX_BYTES = 128 * 2**20

    def allocator(self, nbytes: int):
        """Device buffer of ``nbytes``: pooled when small, allocated directly when large."""
        return self._pool(nbytes) if nbytes <= self.POOL_MAX_BYTES else self._direct(nbytes)

    def _dt(self, dtype) -> np.dtype:
        dt = np.dtype(np.float32 if dtype is None else dtype)
        if dt.kind == "f" and dt != np.float32:
            raise TypeError(f"the OpenCL backend computes in float32, got {dt}")
        return dt

    def empty(self, shape, dtype=None):
        return cl_array.empty(self.queue, tuple(int(s) for s in shape), self._dt(dtype),
                              allocator=self.allocator)

    def zeros(self, shape, dtype=None):
        a = self.empty(shape, dtype)
        self.fill(a, 0)
        return a

    def fill(self, a, value):
        if a.size:
            pattern = np.array([value], dtype=a.dtype)
            cl.enqueue_fill_buffer(self.queue, a.data, pattern, 0, a.nbytes)

    def from_host(self, host, dtype=None):
        host = np.asarray(host)
        if dtype is None:
            dtype = np.float32 if host.dtype.kind == "f" else host.dtype
        host = np.ascontiguousarray(host, dtype=self._dt(dtype))
        self.transfers.to_device += 1
        self.transfers.bytes_to_device += host.nbytes
        a = self.empty(host.shape, host.dtype)
        if host.size:
            cl.enqueue_copy(self.queue, a.data, host, is_blocking=False)
            # the host array must outlive the non-blocking copy
            a._minidnn_host_ref = host
        return a

    def to_host(self, a):
        self.transfers.to_host += 1
        self.transfers.bytes_to_host += a.nbytes
        out = np.empty(a.shape, dtype=a.dtype)
        if a.size:
            cl.enqueue_copy(self.queue, out, a.data, is_blocking=True)
        return out

    def copy(self, a):
        b = self.empty(a.shape, a.dtype)
        self.copy_into(b, a)
        return b

    def copy_into(self, dst, src):
        if dst.nbytes != src.nbytes:
            raise ValueError(f"copy_into: {dst.shape} and {src.shape} differ in size")
        if src.size:
            cl.enqueue_copy(self.queue, dst.data, src.data, byte_count=src.nbytes)

    def synchronize(self) -> None:
        self.queue.finish()
