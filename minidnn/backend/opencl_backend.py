"""The OpenCL backend: every primitive of ``Backend`` as a kernel from ``cl_kernels/``.

Built by composition: one ``CLRuntime`` (device, context, queue, programs, memory pool, launch,
transfer counts; ``cl_runtime``) handed to op groups, each a plain class in its own module that
holds only the runtime and its tuning constants:

- the runtime itself: memory and copies;
- ``GemmOps`` (``cl_gemm``): dense matrix products and transposes;
- ``NNOps`` (``cl_nn``): conv lowering, elementwise, pooling, loss, batch norm, reductions;
- ``OptimOps`` (``cl_optim``): the fused optimizer updates, soft-threshold and mask;
- ``CSROps`` (``cl_csr``): sparse CSR ops;
- ``QuantizeOps`` (``cl_quantize``): shared (quantized) weights;
- ``BlockOps`` (``cl_block``): gather/scatter of permuted block-diagonal weights.

The runtime and each group name the ``Backend`` methods they implement in ``provides``; ``OPS``
lists the groups and ``_delegating`` turns each provided name into an ordinary method of
``OpenCLBackend`` that calls its group (no ``__getattr__``: ``OpenCLBackend.gemm`` is a real
method, ``OpenCLBackend.provider`` says which group each comes from). Adding a group is one
module and one line in ``OPS``. Arrays are ``pyopencl.array.Array`` used only as containers
(shape, dtype, buffer): all arithmetic goes through our own kernels. Work is queued without
``finish()``; only ``to_host`` waits.
"""
from __future__ import annotations

import abc
import functools
import operator

import numpy as np

from .base import Backend
from .cl_block import BlockOps
from .cl_conv import ConvOps
from .cl_csr import CSROps
from .cl_gemm import GemmOps
from .cl_nn import NNOps
from .cl_optim import OptimOps
from .cl_quantize import QuantizeOps
from .cl_runtime import CLRuntime
from .devices import cl
from ..errors import ConfigError

# The op groups: (attribute of the backend, class built with the runtime). One line per group.
OPS = (
    ("dense", GemmOps),
    ("nn", NNOps),
    ("conv", ConvOps),
    ("optim", OptimOps),
    ("sparse", CSROps),
    ("shared", QuantizeOps),
    ("block", BlockOps),
)


def _delegate(attribute: str, name: str, impl, contract=None):
    """A backend method calling ``self.<attribute>.<name>``, with ``impl``'s signature and
    docstring (else the docstring of the ``contract`` it implements)."""
    target = operator.attrgetter(f"{attribute}.{name}")

    def method(self, *args, **kwargs):
        return target(self)(*args, **kwargs)
    functools.update_wrapper(method, impl)
    method.__doc__ = impl.__doc__ or getattr(contract, "__doc__", None)
    return method


def _delegating(cls):
    """Class decorator: every method named in the ``provides`` of the runtime and of each
    ``OPS`` group becomes a method of ``cls`` calling it; a name provided twice is an error."""
    owner: dict[str, str] = {}
    for attribute, group in (("runtime", CLRuntime),) + cls.OPS:
        for name in group.provides:
            if name in owner:
                raise ConfigError(f"{name} is provided by both {owner[name]} and {attribute}")
            owner[name] = attribute
            setattr(cls, name, _delegate(attribute, name, getattr(group, name),
                                         getattr(Backend, name, None)))
    cls.provider = owner
    abc.update_abstractmethods(cls)
    return cls


@_delegating
class OpenCLBackend(Backend):
    """Float32 backend on one OpenCL device (default: first usable GPU, else the best usable CPU
    device; see ``devices.select_device``)."""

    name = "opencl"
    OPS = OPS

    def __init__(self, device: "str | cl.Device | None" = None, profiling: bool = False) -> None:
        super().__init__()
        self.runtime = CLRuntime(device, profiling)
        for attribute, group in self.OPS:  # self.dense, self.nn, self.optim, self.sparse
            setattr(self, attribute, group(self.runtime))
        self.transfers = self.runtime.transfers
        self.device = self.runtime.device
        self.device_name = self.runtime.device_name
        self.dtype = np.dtype(np.float32)

    def __repr__(self) -> str:
        return f"OpenCLBackend({self.device_name})"

    def kernel_times(self) -> dict[str, tuple[int, float]]:
        """Per kernel name: (launches, seconds of device time) since the last call (needs
        ``profiling=True``); see ``CLRuntime.kernel_times``."""
        return self.runtime.kernel_times()

    def csr_free_workspace(self) -> None:
        """Release the scratch buffers kept between sparse products."""
        self.sparse.free_workspace()
