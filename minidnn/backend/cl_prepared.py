"""Prepared work on a ``CLRuntime``: a function of one input array run once while the runtime
records what it enqueues, then replayed with no Python between the enqueues.

What inference plans (``minidnn/inference.py``) run on OpenCL. While recording, every kernel
launch, fill and device copy the function makes is kept with its arguments (the buffers stay
alive with the recording, so the pool never hands them out again); reading back to the host in
the middle is an error, because a replay could not repeat a decision taken on the values.
Each recorded launch gets its own ``cl.Kernel`` with its arguments set once, so a call is: one
copy of the input in, one enqueue per kernel, one blocking read of the output.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from .base import Array
from .devices import cl
from ..errors import ShapeError


class Recording:
    """What a function enqueued on a runtime, in order: ('kernel', stem, name, global size,
    local size, args), ('fill', buffer, pattern, nbytes), ('copy', dst, src, nbytes) and
    ('write', buffer, host array)."""

    def __init__(self) -> None:
        self.ops: list[tuple] = []

    def __len__(self) -> int:
        return len(self.ops)


class PreparedCL:
    """``fn`` prepared for one input shape on ``rt``: ``self(host) -> host`` output.

    ``write``, ``enqueue`` and ``read`` are the three parts of a call, separately timeable
    (benchmarks' ``--profile``); on a profiling runtime the replayed kernels' events go to
    ``rt.kernel_events`` like any launch's."""

    def __init__(self, rt, fn: Callable[[Array], Array], input_shape: Sequence[int]) -> None:
        self.rt = rt
        self.input_shape = tuple(int(s) for s in input_shape)
        self.x = rt.empty(self.input_shape)
        rt.fill(self.x, 0.0)  # a defined input for the recording run
        recording = rt.record(lambda: fn(self.x))
        self.y, self.recording = recording
        self.output_shape = tuple(int(s) for s in self.y.shape)
        self._out = np.empty(self.output_shape, np.float32)
        self.names: list[str] = []
        self._calls = [self._bind(op) for op in self.recording.ops]

    def _bind(self, op: tuple) -> Callable[[], object]:
        """A no-argument callable enqueueing ``op`` with everything bound now."""
        queue = self.rt.queue
        kind = op[0]
        if kind == "kernel":
            _, stem, name, gs, ls, args = op
            kernel = cl.Kernel(self.rt.programs.program(stem), name)
            kernel.set_scalar_arg_dtypes([a.dtype if isinstance(a, np.generic) else None
                                          for a in args])
            kernel.set_args(*args)
            self.names.append(name)
            return functools.partial(cl.enqueue_nd_range_kernel, queue, kernel, gs, ls)
        self.names.append(kind)
        if kind == "fill":
            _, buf, pattern, nbytes = op
            return functools.partial(cl.enqueue_fill_buffer, queue, buf, pattern, 0, nbytes)
        if kind == "copy":
            _, dst, src, nbytes = op
            return functools.partial(cl.enqueue_copy, queue, dst, src, byte_count=nbytes)
        _, buf, host = op  # "write": a host constant uploaded by fn
        return functools.partial(cl.enqueue_copy, queue, buf, host, is_blocking=False)

    @property
    def launches(self) -> int:
        """Enqueues per call besides the input copy and the output read."""
        return len(self._calls)

    def write(self, host: np.ndarray) -> None:
        """Queue the copy of ``host`` (C-contiguous float32 of ``input_shape``) into the input."""
        if host.shape != self.input_shape or host.dtype != np.float32 \
                or not host.flags.c_contiguous:
            raise ShapeError(f"prepared for C-contiguous float32 input of shape "
                             f"{self.input_shape}, got {host.dtype} {host.shape}")
        self.rt.transfers.to_device += 1
        self.rt.transfers.bytes_to_device += host.nbytes
        self._host_in = host  # must outlive the non-blocking copy (read() waits)
        cl.enqueue_copy(self.rt.queue, self.x.data, host, is_blocking=False)

    def enqueue(self) -> None:
        """Queue every recorded kernel, fill and copy (bound at preparation)."""
        events = self.rt.kernel_events
        if events is None:
            for call in self._calls:
                call()
        else:
            for name, call in zip(self.names, self._calls):
                events.append((name, call()))

    def read(self) -> np.ndarray:
        """Wait for the queue and return the output (a new host array)."""
        self.rt.transfers.to_host += 1
        self.rt.transfers.bytes_to_host += self._out.nbytes
        cl.enqueue_copy(self.rt.queue, self._out, self.y.data, is_blocking=True)
        self._host_in = None
        return self._out.copy()

    def __call__(self, host: np.ndarray) -> np.ndarray:
        self.write(host)
        self.enqueue()
        return self.read()
