"""Format version 4: a quantized model as one packed record in one small HDF5 dataset.

Version 3 spread a quantized model over 11 root attributes, two groups and two datasets; on a
~7 KB LeNet-5 payload that container cost ~2.7 KB (every attribute, group and dataset header has
its own overhead in HDF5). Version 4 keeps only ``format``, ``format_version`` and ``checksum``
as root attributes and puts everything else into the uint8 dataset ``/model`` (docs/format.md,
*Version 4*)::

    u32 H | header: raw DEFLATE of a JSON object (H bytes) | codes | values | buffers

The header holds what the version 3 attributes held (kind, versions, arch, config,
architecture record, metadata, the parameter table) and the sizes of the three pools; the
pools are those of version 3 (``io/quantized.py``), the values optionally byte-shuffled and
DEFLATE'd, the buffers raw little-endian. The dataset uses HDF5's compact layout (its bytes
inside its object header) when it is small enough. Reading checks the record exactly as the
version 3 reader checks its datasets, and the pools must tile the record to the byte.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np

from ..errors import ModelFileError
from .architecture import parse_architecture
from .h5 import Node, array, check_finite, check_members, json_depth, to_json, MAX_JSON_DEPTH
from .quantized import check_table, decode_pools

VERSION = 4
HEADER_KEYS = {"kind", "minidnn_version", "created", "arch", "config", "architecture",
               "metadata", "params", "codes", "values", "buffers"}
MAX_HEADER = 1 << 22          # inflated JSON header, bytes (the architecture alone is <= 1 MiB)
COMPACT_MAX = 60_000          # HDF5 compact layout holds < 64 KiB inside the object header
VALUE_TYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
BUFFER_TYPES = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
_LEN = struct.Struct("<I")


# ---------------------------------------------------------------------- write
def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _shuffled(values: np.ndarray) -> bytes:
    return values.view(np.uint8).reshape(-1, values.itemsize).T.tobytes()


def pack_values(values: np.ndarray) -> tuple[str, bytes]:
    """('raw' | 'deflate', bytes) of the values pool, whichever is smaller: DEFLATE runs over
    the byte-shuffled values (all low bytes, then all high bytes), as HDF5's shuffle + gzip."""
    raw = values.astype(values.dtype.newbyteorder("<")).tobytes()
    packed = _deflate(_shuffled(values.astype(values.dtype.newbyteorder("<"))))
    return ("deflate", packed) if len(packed) < len(raw) else ("raw", raw)


def pack_model_record(header: dict, codes: np.ndarray, values: np.ndarray,
                      buffers: list[tuple[str, np.ndarray]]) -> bytes:
    """The bytes of ``/model``: ``header`` completed with the pools' sizes, then the pools."""
    codec, vbytes = pack_values(values)
    bufs = [(n, b.astype(BUFFER_TYPES["float32" if b.dtype.kind == "f" else "int64"]))
            for n, b in buffers]
    header = {**header, "codes": int(codes.size),
              "values": [values.dtype.name, codec, len(vbytes)],
              "buffers": [[n, list(b.shape), b.dtype.name] for n, b in bufs]}
    text = _deflate(to_json(header, "the file header").encode("utf-8"))
    return b"".join([_LEN.pack(len(text)), text, codes.tobytes(), vbytes,
                     *(b.tobytes() for _, b in bufs)])


def write_model_dataset(f: h5py.File, record: bytes) -> None:
    """``/model`` (uint8): compact layout below COMPACT_MAX bytes, contiguous above; no
    timestamps."""
    data = np.frombuffer(record, np.uint8)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    if 0 < data.size < COMPACT_MAX:
        dcpl.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple((data.size,))
    ds = h5py.h5d.create(f.id, b"model", h5py.h5t.STD_U8LE, space, dcpl=dcpl)
    if data.size:
        ds.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


# ---------------------------------------------------------------------- read
class _Reader:
    """Consumes ``/model`` front to back; running past its end is a ModelFileError."""

    def __init__(self, data: bytes, what: str):
        self.data, self.at, self.what = data, 0, what

    def take(self, n: int, part: str) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ModelFileError(f"{self.what}: truncated: the {part} needs {n:,} bytes at "
                                 f"offset {self.at:,}, the record has {len(self.data):,}")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out


def _inflate(data: bytes, limit: int, what: str) -> bytes:
    """Raw DEFLATE ``data`` inflated to at most ``limit`` bytes, consuming all of it."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, max(limit, 1))   # 0 would mean "no limit"
    except zlib.error as exc:
        raise ModelFileError(f"{what}: does not inflate ({exc})") from None
    if d.unconsumed_tail or not d.eof or d.unused_data:
        raise ModelFileError(f"{what}: the DEFLATE stream is longer than {limit:,} bytes "
                             f"inflated, incomplete or followed by other bytes")
    return out


def read_header(r: _Reader) -> dict:
    """The JSON header, every key present and typed, nested no deeper than MAX_JSON_DEPTH."""
    (n,) = _LEN.unpack(r.take(4, "header length"))
    text = _inflate(r.take(n, "header"), MAX_HEADER, f"{r.what}: header")
    try:
        header = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{r.what}: header is not valid JSON ({type(exc).__name__})") \
            from None
    if not isinstance(header, dict) or set(header) != HEADER_KEYS:
        raise ModelFileError(f"{r.what}: the header must be a JSON object with exactly the "
                             f"keys {sorted(HEADER_KEYS)}")
    if json_depth(header) > MAX_JSON_DEPTH + 1:
        raise ModelFileError(f"{r.what}: header nests JSON deeper than {MAX_JSON_DEPTH} levels")
    types = {"kind": str, "minidnn_version": str, "created": str, "arch": str, "config": dict,
             "architecture": dict, "metadata": dict, "params": list, "codes": int,
             "values": list, "buffers": list}
    for key, kind in types.items():
        value = header[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelFileError(f"{r.what}: header {key!r} must be a JSON {kind.__name__}")
    if header["kind"] != "model":
        raise ModelFileError(f"{r.what}: a version 4 file holds a model, not a "
                             f"{header['kind']!r}")
    return header


def _values_pool(r: _Reader, spec: list, count: int) -> tuple[np.ndarray, int]:
    """(values, bytes stored) of the values pool declared as [dtype, codec, bytes]."""
    if len(spec) != 3 or spec[0] not in VALUE_TYPES or spec[1] not in ("raw", "deflate") \
            or not isinstance(spec[2], int) or isinstance(spec[2], bool):
        raise ModelFileError(f"{r.what}: header 'values' must be [float16|float32, "
                             f"raw|deflate, bytes]")
    dtype, codec, size = VALUE_TYPES[spec[0]], spec[1], spec[2]
    data = r.take(size, "values pool")
    want = count * dtype.itemsize
    if codec == "deflate":
        data = _inflate(data, want, f"{r.what}: values pool")
    if len(data) != want:
        raise ModelFileError(f"{r.what}: the values pool holds {len(data):,} bytes, the table "
                             f"needs {want:,}")
    raw = np.frombuffer(data, np.uint8)
    if codec == "deflate" and count:
        raw = raw.reshape(dtype.itemsize, count).T
    return np.ascontiguousarray(raw).view(dtype).reshape(-1), size


def _buffers(r: _Reader, specs: list) -> tuple[dict[str, np.ndarray], int]:
    """{name: array} of the buffer pool declared as [[name, shape, dtype], ...]."""
    out, start = {}, r.at
    for spec in specs:
        if not isinstance(spec, list) or len(spec) != 3 or not isinstance(spec[0], str) \
                or not isinstance(spec[1], list) or len(spec[1]) > 8 or spec[2] not in \
                BUFFER_TYPES or spec[0] in out \
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 1 << 40
                           for s in spec[1]):
            raise ModelFileError(f"{r.what}: bad buffer entry in the header")
        dtype, shape = BUFFER_TYPES[spec[2]], tuple(spec[1])
        count = int(np.prod(shape, dtype=object))
        a = np.frombuffer(r.take(count * dtype.itemsize, f"buffer {spec[0]!r}"), dtype)
        check_finite(a, f"{r.what}: buffer {spec[0]!r}")
        out[spec[0]] = a.reshape(shape).astype(np.float32 if dtype.kind == "f" else np.int64)
    return out, r.at - start


def read_model_record(root: Node, path: Path) -> dict:
    """The ``FileContents`` fields of a version 4 file (root already checked for format and
    checksum): every byte of ``/model`` accounted for, every blob decoded and checked."""
    check_members(root, {"model"}, path)
    data = array(root, "model", path, None, {"u": (1,)})
    if data.ndim != 1:
        raise ModelFileError(f"{path}:/model: must be one-dimensional")
    r = _Reader(data.tobytes(), f"{path}:/model")
    header = read_header(r)
    rows = check_table(header["params"], f"{r.what}: header 'params'")
    count = sum(row[7] for row in rows if row[5] == "dense")
    codes = np.frombuffer(r.take(header["codes"], "codes pool"), np.uint8)
    values, stored = _values_pool(r, header["values"], count)
    buffers, buffer_bytes = _buffers(r, header["buffers"])
    if r.at != len(r.data):
        raise ModelFileError(f"{r.what}: {len(r.data) - r.at:,} trailing bytes after the pools")
    return dict(
        path=path, kind="model", format_version=VERSION,
        minidnn_version=header["minidnn_version"], created=header["created"],
        arch=header["arch"], config=header["config"], metadata=header["metadata"],
        params=decode_pools(rows, codes, values, stored, r.what), buffers=buffers,
        buffer_bytes=buffer_bytes,
        architecture=parse_architecture(json.dumps(header["architecture"]),
                                        f"{path}: architecture"))
