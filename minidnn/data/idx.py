"""Read IDX files (the MNIST format), plain or gzip-compressed, validating header and length.

The header is read and checked first; then exactly the size it declares is read (at most
``MAX_IDX_BYTES``), so a file that is longer than it says, or a .gz that expands without end,
costs no more memory than the declared array.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from minidnn.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 1 << 30       # MNIST's largest file holds 47 MB
READ_BLOCK = 1 << 22


@contextlib.contextmanager
def open_idx(path: Path) -> Iterator[tuple[BinaryIO, bool]]:
    """(a binary stream of the file's IDX bytes, whether it is gzip); gzip is detected by content,
    not name, and decompressed as it is read."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    with raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            yield stream, compressed
        except (OSError, EOFError, zlib.error) as e:
            if not compressed:
                raise DataError(f"{path}: cannot read ({e})") from e
            raise DataError(f"{path}: corrupt or truncated gzip file ({e}); delete it and copy it "
                            f"again") from e


def _read_into(stream: BinaryIO, out: memoryview) -> int:
    """Fill ``out`` from ``stream`` block by block; returns the bytes read (less at the end)."""
    done = 0
    while done < len(out):
        n = stream.readinto(out[done:done + READ_BLOCK])
        if not n:
            break
        done += n
    return done


def _read_header(stream: BinaryIO, path: Path, ndim: int) -> tuple[int, ...]:
    """The dimensions from an IDX header with the uint8 magic for ``ndim`` dimensions."""
    expected_magic = 0x0800 | ndim
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{path}: {len(head)} bytes, too short for an IDX header "
                        f"(expected magic {expected_magic:#010x})")
    magic = int.from_bytes(head, "big")
    if magic != expected_magic:
        raise DataError(f"{path}: magic number {magic:#010x}, expected {expected_magic:#010x} "
                        f"(uint8 IDX with {ndim} dimension{'s' if ndim > 1 else ''}); wrong or corrupt file")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated header ({4 + len(dims)} bytes, expected at least {4 + 4 * ndim})")
    return tuple(int.from_bytes(dims[4 * i:4 * i + 4], "big") for i in range(ndim))


def read_idx(path: str | Path, ndim: int, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """A uint8 IDX array with `ndim` dimensions (3 for images, 1 for labels); anything else -> DataError."""
    path = Path(path)
    with open_idx(path) as (stream, compressed):
        dims = _read_header(stream, path, ndim)
        header, size = 4 + 4 * ndim, int(np.prod(dims, dtype=object))
        what = " (decompressed)" if compressed else ""
        if size > max_bytes:
            raise DataError(f"{path}: header declares shape {dims} ({size:,} bytes), more than "
                            f"{max_bytes:,}; not an MNIST file")
        if not compressed and os.fstat(stream.fileno()).st_size != header + size:
            actual = os.fstat(stream.fileno()).st_size
            kind = "truncated" if actual < header + size else "longer than its header says"
            raise DataError(f"{path}: {kind}: {actual} bytes, expected {header + size} for shape {dims}")
        data = np.empty(size, np.uint8)
        got = _read_into(stream, memoryview(data))
        if got < size:
            raise DataError(f"{path}: truncated: {header + got} bytes{what}, expected {header + size} "
                            f"for shape {dims}")
        if stream.read(1):
            raise DataError(f"{path}: longer than its header says: more than {header + size} "
                            f"bytes{what}, expected {header + size} for shape {dims}")
    return data.reshape(dims)
