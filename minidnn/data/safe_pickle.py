"""Unpickle dataset files allowing only NumPy arrays and plain containers (no arbitrary code)."""
from __future__ import annotations

import importlib
import pickle
from typing import IO, Any

from minidnn.errors import DataError

# The globals a pickled ndarray needs, as written by NumPy 1.x and 2.x with protocols 2-5.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
}


class _ArraysOnly(pickle.Unpickler):
    """An Unpickler that refuses every global except those needed to rebuild ndarrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are expected")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):  # a NumPy 2 pickle read by NumPy 1 or vice versa
            other = (module.replace("numpy._core", "numpy.core") if "._core" in module
                     else module.replace("numpy.core", "numpy._core"))
            return getattr(importlib.import_module(other), name)


def load_arrays_pickle(stream: IO[bytes], source: str, encoding: str = "bytes") -> Any:
    """Unpickle `stream` (from file `source`), allowing only NumPy arrays; corrupt data -> DataError."""
    try:
        return _ArraysOnly(stream, encoding=encoding).load()
    except DataError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, gzip/zlib errors, ValueError, ...
        raise DataError(f"{source}: not a readable pickle of NumPy arrays ({type(e).__name__}: {e})") from e
