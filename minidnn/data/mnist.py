"""MNIST from the standard IDX files (plain, .gz, dotted mirror names) or from `mnist.npz`."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from minidnn.errors import DataError
from minidnn.data.idx import read_idx

CLASSES = tuple(str(d) for d in range(10))
MEAN, STD = 0.1307, 0.3081
# (split, kind) -> the standard stem; mirrors also write "train-images.idx3-ubyte" (dot before idx).
STEMS = {("train", "images"): "train-images-idx3-ubyte", ("train", "labels"): "train-labels-idx1-ubyte",
         ("test", "images"): "t10k-images-idx3-ubyte", ("test", "labels"): "t10k-labels-idx1-ubyte"}
NPZ_NAME = "mnist.npz"

Split = tuple[np.ndarray, np.ndarray]


def candidate_names(stem: str) -> list[str]:
    """The file names under which one MNIST file may be stored, preferred first."""
    head, tail = stem.rsplit("-idx", 1)
    return [name + suffix for name in (stem, f"{head}.idx{tail}") for suffix in ("", ".gz")]


def find_idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """The MNIST IDX files present in `folder`, keyed by (split, kind); missing ones are absent."""
    found = {}
    for key, stem in STEMS.items():
        for name in candidate_names(stem):
            if (folder / name).is_file():
                found[key] = folder / name
                break
    return found


def check_split(images: np.ndarray, labels: np.ndarray, source: str) -> Split:
    """Validate one split: uint8 (N, 28, 28) images, N integer labels in 0..9; returns (images, labels)."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{source}: images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{source}: {len(images)} images but labels of shape {labels.shape}; expected ({len(images)},)")
    if not len(labels):
        raise DataError(f"{source}: holds no images")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{source}: labels range over {labels.min()}..{labels.max()}, expected 0..9")
    return images, labels


def read_idx_folder(folder: str | Path) -> tuple[Split, Split]:
    """((x_train, y_train), (x_test, y_test)) as uint8 from the four IDX files in `folder`."""
    folder = Path(folder)
    files = find_idx_files(folder)
    missing = [STEMS[key] for key in STEMS if key not in files]
    if missing:
        raise DataError(f"{folder}: MNIST is incomplete, missing {', '.join(missing)} (plain or .gz); "
                        f"put all four IDX files there")
    splits = []
    for split in ("train", "test"):
        images, labels = read_idx(files[split, "images"], 3), read_idx(files[split, "labels"], 1)
        splits.append(check_split(images, labels, f"{files[split, 'images']} + {files[split, 'labels'].name}"))
    return splits[0], splits[1]


def _as_uint8(array: np.ndarray, what: str, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < 0 or array.max() > 255)):
        raise DataError(f"{source}: {what} has dtype {array.dtype} with values outside 0..255; expected uint8 pixels")
    return array.astype(np.uint8)


def read_npz(path: str | Path) -> tuple[Split, Split]:
    """((x_train, y_train), (x_test, y_test)) from a Keras-style `mnist.npz`."""
    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            absent = [k for k in keys if k not in npz.files]
            if absent:
                raise DataError(f"{path}: missing arrays {absent}; found {npz.files}, expected {list(keys)}")
            arrays = {k: npz[k] for k in keys}
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    splits = []
    for split in ("train", "test"):
        labels = arrays[f"y_{split}"]
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: y_{split} has dtype {labels.dtype}, expected integer labels")
        images = _as_uint8(arrays[f"x_{split}"], f"x_{split}", str(path))
        splits.append(check_split(images, labels, f"{path} ({split})"))
    return splits[0], splits[1]
