"""The OpenCL backend is composed of a runtime and op groups: each group names the Backend
methods it provides, the backend delegates each to its group, and adding a group is one class
plus one entry in ``OPS``."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from minidnn.backend.base import CORE_PRIMITIVES, OPTIONAL_PRIMITIVES, Backend
from minidnn.errors import ConfigError

opencl_backend = pytest.importorskip("minidnn.backend.opencl_backend")
OpenCLBackend, OPS, _delegating = (opencl_backend.OpenCLBackend, opencl_backend.OPS,
                                   opencl_backend._delegating)
BACKEND_DIR = Path(opencl_backend.__file__).parent


def test_every_primitive_comes_from_exactly_one_group():
    provided = [n for _, g in (("runtime", opencl_backend.CLRuntime),) + OPS for n in g.provides]
    assert len(provided) == len(set(provided))
    assert set(provided) == set(CORE_PRIMITIVES) | set(OPTIONAL_PRIMITIVES) - {"nbytes"}
    assert not hasattr(OpenCLBackend, "__getattr__")
    for name in provided:  # a real method of the class, documented like its implementation
        method = getattr(OpenCLBackend, name)
        assert inspect.isfunction(method) and method is not getattr(Backend, name), name
        assert method.__doc__, name


def test_groups_share_state_only_through_the_runtime():
    for path in BACKEND_DIR.glob("cl_*.py"):
        text = path.read_text()
        assert "__dict__" not in text and "noqa: E402" not in text, path.name
        assert "getattr(self" not in text, path.name


def test_a_new_group_is_one_class_and_one_line(clb):
    class ToyOps:
        provides = ("toy_twice",)

        def __init__(self, runtime) -> None:
            self.rt = runtime

        def toy_twice(self, a):
            """2 * a, with the elementwise add kernel."""
            out = self.rt.empty(a.shape)
            self.rt.launch("elementwise", "add", ((a.size + 7) // 8,), (64,), a, a, out,
                           np.uint32(a.size))
            return out

    @_delegating
    class ToyBackend(OpenCLBackend):
        OPS = OpenCLBackend.OPS + (("toy", ToyOps),)

    be = ToyBackend(clb.device)
    x = np.arange(13, dtype=np.float32)
    assert ToyBackend.provider["toy_twice"] == "toy"
    np.testing.assert_array_equal(be.to_host(be.toy_twice(be.from_host(x))), 2 * x)
    with pytest.raises(ConfigError, match="provided by both"):
        _delegating(type("Twice", (OpenCLBackend,), {"OPS": OPS + (("again", ToyOps),
                                                                    ("more", ToyOps))}))
