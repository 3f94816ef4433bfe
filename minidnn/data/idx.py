"""Read IDX files (the MNIST format), plain or gzip-compressed, validating header and length."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from minidnn.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> tuple[bytes, bool]:
    """(all bytes of `path`, whether it was gzip); gzip is detected by content, not name, and decompressed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if data[:2] != GZIP_MAGIC:
        return data, False
    try:
        return gzip.decompress(data), True
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e}); delete it and copy it again") from e


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """A uint8 IDX array with `ndim` dimensions (3 for images, 1 for labels); anything else -> DataError."""
    path = Path(path)
    data, compressed = read_bytes(path)
    expected_magic = 0x0800 | ndim
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header "
                        f"(expected magic {expected_magic:#010x})")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{path}: magic number {magic:#010x}, expected {expected_magic:#010x} "
                        f"(uint8 IDX with {ndim} dimension{'s' if ndim > 1 else ''}); wrong or corrupt file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header ({len(data)} bytes, expected at least {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        size = f"{len(data)} bytes{' (decompressed)' if compressed else ''}"
        raise DataError(f"{path}: {what}: {size}, expected {expected} for shape {dims}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)
