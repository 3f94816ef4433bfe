"""The state every OpenCL op group shares: one device, its context and in-order queue, the
built programs, the memory pool, typed kernel launches, work-group sizing and transfer counts.

``OpenCLBackend`` creates one ``CLRuntime`` and hands it to each op group (``cl_gemm``,
``cl_nn``, ``cl_optim``, ``cl_csr``); the groups hold no device state of their own beyond
tuning constants. Devices are found and checked in ``devices``. Work is queued without
``finish()``; only ``to_host`` (and ``read_int``) wait.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .base import Array, TransferStats
from .cl_prepared import PreparedCL, Recording
from .cl_programs import ProgramCache
from .devices import cl, describe_device, device_problem, select_device
from ..errors import DTypeError, ShapeError, StateError, UnusableDeviceError

try:  # pyopencl is an optional extra: the NumPy backend works without it
    import pyopencl.array as cl_array
    import pyopencl.tools as cl_tools
except ImportError:  # pragma: no cover - exercised only where pyopencl is absent
    cl_array = None
    cl_tools = None


class CLRuntime:
    """One OpenCL device as the op groups use it (see the module docstring)."""

    # Freed buffers up to POOL_MAX_BYTES go back to a pool and are handed out again: a training
    # step allocates the same activation shapes every time, and fresh buffers cost page faults
    # on PoCL. Reuse is safe because all work goes through this one in-order queue. Larger
    # buffers are not pooled: a pool keeps every size class it has seen, and with big im2row
    # buffers of many sizes (VGG16 evaluated at batch 1000) it would hold gigabytes that are
    # never reused.
    POOL_MAX_BYTES = 128 * 2**20

    # the Backend methods OpenCLBackend takes from the runtime: memory and copies
    provides = ("empty", "zeros", "from_host", "to_host", "copy", "copy_into", "fill",
                "synchronize", "prepare")

    def __init__(self, device: "str | cl.Device | None" = None, profiling: bool = False) -> None:
        self.device = device if (cl is not None and isinstance(device, cl.Device)) \
            else select_device(device)
        problem = device_problem(self.device)
        if problem:
            raise UnusableDeviceError(f"OpenCL device {self.device.name.strip()} is unusable: "
                                      f"{problem}")
        self.device_name = describe_device(self.device)
        self.is_cpu = bool(self.device.type & cl.device_type.CPU)
        self.context = cl.Context([self.device])
        # profiling=True (opt-in, for benchmarks): a profiling queue; launch() then appends
        # (kernel name, event) to kernel_events, which kernel_times() drains.
        self.queue = cl.CommandQueue(self.context, properties=(
            cl.command_queue_properties.PROFILING_ENABLE if profiling else 0))
        self.kernel_events: list | None = [] if profiling else None
        self.programs = ProgramCache(self.context)
        self.transfers = TransferStats()
        self._direct = cl_tools.ImmediateAllocator(self.queue)
        self._pool = cl_tools.MemoryPool(self._direct)
        self._typed_kernels: set[tuple[str, str]] = set()
        self._group_sizes: dict[tuple[str, str, int], int] = {}
        self._scratch: dict[str, Array] = {}
        # work-group size of the tree reductions: a power of two (64 on CPUs, 256 on GPUs)
        self.reduction_size = _power_of_two_below(min(64 if self.is_cpu else 256,
                                                      self.device.max_work_group_size))
        # passed for absent optional array arguments (never read by the kernels)
        self.dummy = cl.Buffer(self.context, cl.mem_flags.READ_WRITE, 64)
        self._recording: Recording | None = None  # set while record() runs

    def __repr__(self) -> str:
        return f"CLRuntime({self.device_name})"

    # ------------------------------------------------------------------ kernels
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
        kernel_args = [a.data if isinstance(a, cl_array.Array) else a for a in args]
        k.set_args(*kernel_args)
        event = cl.enqueue_nd_range_kernel(self.queue, k, gs, ls)
        if self._recording is not None:
            self._recording.ops.append(("kernel", stem, name, gs, ls, kernel_args))
        if self.kernel_events is not None:
            self.kernel_events.append((name, event))

    def kernel_times(self) -> dict[str, tuple[int, float]]:
        """Per kernel name: (launches, seconds of device time) of the profiling events recorded
        since the last call, which clears them (needs ``profiling=True``)."""
        if self.kernel_events is None:
            raise StateError("kernel_times needs an OpenCLBackend(profiling=True)")
        times: dict[str, tuple[int, float]] = {}
        for name, event in self.kernel_events:
            calls, seconds = times.get(name, (0, 0.0))
            times[name] = (calls + 1, seconds + (event.profile.end - event.profile.start) * 1e-9)
        self.kernel_events.clear()
        return times

    def group_size(self, stem: str, name: str, want: int) -> int:
        """Work-group size ``want`` capped by what the device allows for this kernel (small
        GPUs); asked once per (kernel, wanted size)."""
        key = (stem, name, want)
        size = self._group_sizes.get(key)
        if size is None:
            limit = self.kernel(stem, name).get_work_group_info(
                cl.kernel_work_group_info.WORK_GROUP_SIZE, self.device)
            size = self._group_sizes[key] = max(1, min(want, int(limit)))
        return size

    # ------------------------------------------------------------------ memory
    def allocator(self, nbytes: int):
        """Device buffer of ``nbytes``: pooled when small, allocated directly when large."""
        return self._pool(nbytes) if nbytes <= self.POOL_MAX_BYTES else self._direct(nbytes)

    @staticmethod
    def checked_dtype(dtype) -> np.dtype:
        """``dtype`` (None: float32); floats other than float32 are refused."""
        dt = np.dtype(np.float32 if dtype is None else dtype)
        if dt.kind == "f" and dt != np.float32:
            raise DTypeError(f"the OpenCL backend computes in float32, got {dt}")
        return dt

    def empty(self, shape: Sequence[int], dtype=None) -> Array:
        return cl_array.empty(self.queue, tuple(int(s) for s in shape),
                              self.checked_dtype(dtype), allocator=self.allocator)

    def zeros(self, shape: Sequence[int], dtype=None) -> Array:
        a = self.empty(shape, dtype)
        self.fill(a, 0)
        return a

    def fill(self, a: Array, value: float) -> None:
        if a.size:
            pattern = np.array([value], dtype=a.dtype)
            cl.enqueue_fill_buffer(self.queue, a.data, pattern, 0, a.nbytes)
            if self._recording is not None:
                self._recording.ops.append(("fill", a.data, pattern, a.nbytes))

    def from_host(self, host: np.ndarray, dtype=None) -> Array:
        host = np.asarray(host)
        if dtype is None:
            dtype = np.float32 if host.dtype.kind == "f" else host.dtype
        host = np.ascontiguousarray(host, dtype=self.checked_dtype(dtype))
        self.transfers.to_device += 1
        self.transfers.bytes_to_device += host.nbytes
        a = self.empty(host.shape, host.dtype)
        if host.size:
            cl.enqueue_copy(self.queue, a.data, host, is_blocking=False)
            # the host array must outlive the non-blocking copy
            a._minidnn_host_ref = host
            if self._recording is not None:
                self._recording.ops.append(("write", a.data, host))
        return a

    def to_host(self, a: Array) -> np.ndarray:
        self._check_not_recording("to_host")
        self.transfers.to_host += 1
        self.transfers.bytes_to_host += a.nbytes
        out = np.empty(a.shape, dtype=a.dtype)
        if a.size:
            cl.enqueue_copy(self.queue, out, a.data, is_blocking=True)
        return out

    def read_int(self, a: Array, index: int) -> int:
        """One int32 element of a device array (a counted 4-byte host transfer)."""
        self._check_not_recording("read_int")
        out = np.empty(1, dtype=np.int32)
        cl.enqueue_copy(self.queue, out, a.data, src_offset=4 * index, is_blocking=True)
        self.transfers.to_host += 1
        self.transfers.bytes_to_host += 4
        return int(out[0])

    def copy(self, a: Array) -> Array:
        b = self.empty(a.shape, a.dtype)
        self.copy_into(b, a)
        return b

    def copy_into(self, dst: Array, src: Array) -> None:
        if dst.nbytes != src.nbytes:
            raise ShapeError(f"copy_into: {dst.shape} and {src.shape} differ in size")
        if src.size:
            cl.enqueue_copy(self.queue, dst.data, src.data, byte_count=src.nbytes)
            if self._recording is not None:
                self._recording.ops.append(("copy", dst.data, src.data, src.nbytes))

    def synchronize(self) -> None:
        self.queue.finish()

    # ------------------------------------------------------------------ prepared work
    def record(self, fn: Callable[[], Array]) -> tuple[Array, Recording]:
        """(fn(), what it enqueued): kernels, fills, device copies and host writes, with their
        arguments. Reading back to the host while recording is a StateError."""
        if self._recording is not None:
            raise StateError("record() cannot be nested")
        self._recording = recording = Recording()
        try:
            out = fn()
        finally:
            self._recording = None
        return out, recording

    def _check_not_recording(self, what: str) -> None:
        if self._recording is not None:
            raise StateError(f"{what} while recording: work that reads values back to the host "
                             "cannot be prepared (a replay could not repeat its decisions)")

    def prepare(self, fn: Callable[[Array], Array], input_shape: Sequence[int]) -> PreparedCL:
        """``fn`` recorded once on an input of ``input_shape`` and replayed per call with
        kernel arguments bound once (see ``cl_prepared``)."""
        return PreparedCL(self, fn, input_shape)

    def scratch(self, role: str, nfloats: int) -> Array:
        """A flat float32 buffer of at least ``nfloats`` kept per ``role`` and grown on demand:
        a fresh large buffer page-faults on first touch, which can cost as much as the kernel.
        Reuse across calls is safe because queued kernels run in order. Roles are named
        '<group>.<use>' so that groups never share one."""
        buf = self._scratch.get(role)
        if buf is None or buf.size < nfloats:
            buf = self._scratch[role] = self.empty((max(nfloats, 1),), np.float32)
        return buf

    def free_scratch(self, prefix: str = "") -> None:
        """Release the scratch buffers whose role starts with ``prefix`` (all by default)."""
        for role in [r for r in self._scratch if r.startswith(prefix)]:
            del self._scratch[role]


def _power_of_two_below(limit: int) -> int:
    """The largest power of two <= ``limit`` (at least 1)."""
    size = 1
    while size * 2 <= limit:
        size *= 2
    return size
