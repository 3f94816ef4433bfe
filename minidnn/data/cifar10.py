"""CIFAR-10 from the standard python-pickle batches (cifar-10-batches-py) or the binary version (-bin)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minidnn.errors import DataError
from minidnn.data.safe_pickle import load_arrays_pickle

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PY_DIR, BIN_DIR = "cifar-10-batches-py", "cifar-10-batches-bin"
PY_TRAIN, PY_TEST = tuple(f"data_batch_{k}" for k in range(1, 6)), "test_batch"
BIN_TRAIN, BIN_TEST = tuple(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"
PIXELS = 3 * 32 * 32
RECORD = 1 + PIXELS  # binary version: one label byte, then 3072 pixel bytes (R, G, B planes)

Split = tuple[np.ndarray, np.ndarray]


def _check(images: np.ndarray, labels: np.ndarray, source: str) -> Split:
    """Validate and reshape one batch to uint8 (N, 3, 32, 32) images and int labels in 0..9."""
    if images.ndim != 2 or images.shape[1] != PIXELS:
        raise DataError(f"{source}: data has shape {images.shape}, expected (N, {PIXELS})")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{source}: {len(images)} images but {labels.shape} labels; expected ({len(images)},)")
    if not len(labels):
        raise DataError(f"{source}: holds no images")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{source}: labels range over {labels.min()}..{labels.max()}, expected 0..9")
    return images.reshape(-1, 3, 32, 32), labels


def read_py_batch(path: str | Path) -> Split:
    """(uint8 (N, 3, 32, 32) images, labels) from one python-pickle batch file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = load_arrays_pickle(f, str(path), encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict with b'data' and b'labels', got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path}: expected keys b'data' and b'labels', found {sorted(map(str, batch))}")
    images = batch["data"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise DataError(f"{path}: b'data' is {getattr(images, 'dtype', type(images).__name__)}, expected a uint8 array")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: b'labels' is not a list of integers ({e})") from e
    return _check(images, labels, str(path))


def read_bin_batch(path: str | Path) -> Split:
    """(uint8 (N, 3, 32, 32) images, labels) from one binary batch file of 3073-byte records."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if raw.size == 0 or raw.size % RECORD:
        raise DataError(f"{path}: {raw.size} bytes, expected a positive multiple of {RECORD} "
                        f"(1 label byte + {PIXELS} pixel bytes per image); truncated or not a CIFAR-10 batch")
    records = raw.reshape(-1, RECORD)
    return _check(records[:, 1:], records[:, 0].astype(np.int64), str(path))


def _read_folder(folder: Path, train_names: tuple[str, ...], test_name: str, reader) -> tuple[Split, Split]:
    missing = [n for n in (*train_names, test_name) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: CIFAR-10 is incomplete, missing {', '.join(missing)}")
    parts = [reader(folder / n) for n in train_names]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, reader(folder / test_name)


def read_py_folder(folder: str | Path) -> tuple[Split, Split]:
    """((x_train, y_train), (x_test, y_test)) uint8 from a `cifar-10-batches-py` folder."""
    return _read_folder(Path(folder), PY_TRAIN, PY_TEST, read_py_batch)


def read_bin_folder(folder: str | Path) -> tuple[Split, Split]:
    """((x_train, y_train), (x_test, y_test)) uint8 from a `cifar-10-batches-bin` folder."""
    return _read_folder(Path(folder), BIN_TRAIN, BIN_TEST, read_bin_batch)
