"""HDF5 plumbing: atomic writes, compact integer types, filters, the content checksum, and reads.

A file is read in one guarded pass into a tree of plain ``Node``s (attributes and arrays); all
validation then works on that tree, so callers never see h5py's own exceptions, only
``ModelFileError`` naming the file and object.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from ..errors import DTypeError, ModelFileError
from .atomic import write_atomically

FORMAT = "minidnn"
FORMAT_VERSION = 4                # the newest version read: 2 added the architecture record
#                                   (io/architecture.py), 3 quantized weights (io/quantized.py),
#                                   4 a quantized model as one packed record (io/packed.py)
PLAIN_VERSION = 2                 # written unless something is quantized
MAX_COMPACT_ATTRS = 64            # attributes kept in the object header (HDF5's default, 8,
#                                   moves a 9th into a fractal heap + B-tree: ~1.7 KB more)
CHECKSUM_ATTR = "checksum"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LIBVER = ("v110", "v110")         # readable by HDF5 >= 1.10; checksummed metadata
FILTER_MIN_BYTES = 512            # below this a filter's chunk bookkeeping costs more than it saves
FILTER_MIN_GAIN = 0.10            # 'auto' compresses an array only if it saves at least 10%
SAMPLE_BYTES = 1 << 18            # 'auto' measures the gain on the first 256 KiB
CHUNK_BYTES = 1 << 22             # arrays up to 4 MiB are one chunk
COMPRESSIONS = ("auto", "gzip", "lzf", "none")


# ---------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Yield a new HDF5 file that replaces ``path`` only if the block completes without error.

    The file is built in memory: HDF5 never writes to the disk (on a full disk it can crash the
    process). The finished image then replaces ``path`` with plain I/O (``write_atomically``:
    temp file, fsync, rename, the old file's mode kept; FileWriteError on failure).
    """
    buffer = io.BytesIO()
    with h5py.File(_memory_file(buffer)) as f:
        yield f
    with buffer.getbuffer() as image:
        write_atomically(path, image)


def _memory_file(buffer: io.BytesIO) -> h5py.h5f.FileID:
    """A new HDF5 file in ``buffer``: version bounds ``LIBVER``, no timestamps, and the root's
    attributes kept in its object header (up to ``MAX_COMPACT_ATTRS``; h5py.File cannot set
    that, hence the low-level calls)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fileobj_driver(h5py.h5fd.fileobj_driver, buffer)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fcpl.set_attr_phase_change(MAX_COMPACT_ATTRS, 0)
    return h5py.h5f.create(b"minidnn-image", h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)


def set_attrs(obj: h5py.HLObject, **values: Any) -> None:
    """Set attributes; strings as fixed-length UTF-8 (variable-length ones cost a 4 KiB heap)."""
    for key, value in values.items():
        if isinstance(value, str):
            data = value.encode("utf-8")
            value = np.array(data, dtype=h5py.string_dtype("utf-8", max(1, len(data))))
        obj.attrs[key] = value


def smallest_uint(max_value: int) -> np.dtype:
    """The narrowest unsigned integer type holding 0..max_value."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def _shuffled(a: np.ndarray) -> bytes:
    flat = np.ascontiguousarray(a).reshape(-1)
    if flat.itemsize == 1:
        return flat.tobytes()
    return flat.view(np.uint8).reshape(-1, flat.itemsize).T.tobytes()


def filter_options(a: np.ndarray, compression: str) -> dict:
    """create_dataset keywords: shuffle + gzip/lzf where it pays off ('auto' measures it)."""
    if compression == "none" or a.nbytes < FILTER_MIN_BYTES:
        return {}
    if compression == "auto":
        sample = np.ascontiguousarray(a).reshape(-1)[:max(1, SAMPLE_BYTES // a.itemsize)]
        if len(zlib.compress(_shuffled(sample), 4)) > (1 - FILTER_MIN_GAIN) * sample.nbytes:
            return {}
        compression = "gzip"
    opts: dict[str, Any] = {"compression": compression, "shuffle": a.itemsize > 1}
    if compression == "gzip":
        opts["compression_opts"] = 4
    opts["chunks"] = a.shape if a.nbytes <= CHUNK_BYTES else True
    return opts


def write_array(group: h5py.Group, name: str, a: np.ndarray, compression: str) -> None:
    """One dataset, no timestamps (files are byte-reproducible apart from ``created``)."""
    a = np.ascontiguousarray(a)
    group.create_dataset(name, data=a, track_times=False, **filter_options(a, compression))


def to_json(value: Any, what: str) -> str:
    """JSON text of ``value`` (NumPy scalars/arrays and paths converted); ModelFileError if not."""
    def convert(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise DTypeError(f"{type(o).__name__} is not JSON-serializable")
    try:
        return json.dumps(value, default=convert, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"cannot save: {what} is not JSON-serializable ({exc})") from None


# ---------------------------------------------------------------------- reading into a tree
MAX_DEPTH = 4
MAX_JSON_DEPTH = 32             # config, metadata, ...: plain records, never deep
MAX_ARRAY_BYTES = 1 << 32         # all datasets of one file together, once read (4 GiB)
MAX_EXPANSION = 1100              # deflate expands at most 1032:1 (lzf 88:1): declared/stored
EXPANSION_SLACK = 1 << 16         # small datasets: chunk bookkeeping may exceed the ratio
DIGEST_BLOCK = 1 << 24            # seal() reads datasets in blocks of about this many bytes
FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle",
           h5py.h5z.FILTER_FLETCHER32: "fletcher32", 32000: "lzf"}


@dataclass
class Node:
    """A group (``children``) or dataset (``data``) read from a file, with its attributes.

    A dataset node read with ``data=False`` keeps the open file it is in (``source``) instead
    of its data.
    """

    name: str
    attrs: dict
    children: dict[str, "Node"] | None = None
    data: np.ndarray | None = None
    storage_bytes: int = 0
    source: h5py.File | None = None

    @property
    def is_group(self) -> bool:
        return self.children is not None


def _check_dtype(dt: np.dtype, what: str) -> None:
    """Only fixed-size numbers, booleans and fixed-length strings occur in a minidnn file.

    Variable-length data lives in HDF5's global heap, which has no checksum: a corrupt heap can
    make HDF5 loop forever, so such data is refused before it is read.
    """
    if dt.kind not in "biufS" or dt.subdtype is not None or dt.fields is not None:
        raise ModelFileError(f"{what}: type {dt} (variable-length or compound) is not used in "
                             f"minidnn files")


def _check_filters(ds: h5py.Dataset) -> None:
    """Only the filters minidnn writes (gzip, lzf, shuffle) and HDF5's checksum may occur."""
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in FILTERS:
            raise ModelFileError(f"dataset {ds.name}: filter {code} is not used in minidnn files")


def declared_bytes(ds: h5py.Dataset, budget: list[int]) -> int:
    """Bytes the dataset will take once read, checked before reading: no more than its stored
    bytes can expand to (a never-written dataset stores nothing), nor than ``budget[0]`` (the
    room left for the file), which is reduced by it."""
    _check_filters(ds)
    size = int(ds.id.get_space().get_simple_extent_npoints()) * ds.dtype.itemsize
    stored = int(ds.id.get_storage_size())
    if size > MAX_EXPANSION * stored + EXPANSION_SLACK:
        raise ModelFileError(f"dataset {ds.name} declares {size:,} bytes but stores only "
                             f"{stored:,} (never written, or not a minidnn file)")
    if size > budget[0]:
        raise ModelFileError(f"dataset {ds.name}: the file's arrays exceed "
                             f"{MAX_ARRAY_BYTES:,} bytes, more than a minidnn file holds")
    budget[0] -= size
    return stored


def _read_node(obj, depth: int, budget: list[int], data: bool) -> Node:
    attrs = {}
    for key in obj.attrs:
        _check_dtype(obj.attrs.get_id(key).dtype, f"{obj.name} attribute {key!r}")
        attrs[key] = obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        _check_dtype(obj.dtype, f"dataset {obj.name}")
        stored = declared_bytes(obj, budget)
        if not data:
            return Node(obj.name, attrs, storage_bytes=stored, source=obj.file)
        value = obj[()]
        if isinstance(value, h5py.Empty):
            raise ModelFileError(f"dataset {obj.name} has no data (null dataspace)")
        return Node(obj.name, attrs, data=np.asarray(value), storage_bytes=stored)
    if depth > MAX_DEPTH:
        raise ModelFileError(f"group {obj.name} is nested deeper than a minidnn file")
    children = {}
    for key in obj.keys():
        if not isinstance(obj.get(key, getlink=True), h5py.HardLink):
            raise ModelFileError(f"{obj.name}/{key}: soft or external links are not allowed")
        child = obj[key]
        if not isinstance(child, (h5py.Group, h5py.Dataset)):
            raise ModelFileError(f"{obj.name}/{key}: not a group or dataset")
        children[key] = _read_node(child, depth + 1, budget, data)
    return Node(obj.name, attrs, children=children)


def read_tree(f: h5py.File, data: bool = True) -> Node:
    """Every group, dataset and attribute of an open file (hard links only).

    Each dataset's size is checked before it is read (``declared_bytes``). With ``data=False``
    datasets are not read: their nodes keep the open file for ``tree_digest``.
    """
    return _read_node(f, 0, [MAX_ARRAY_BYTES], data)


# ---------------------------------------------------------------------- checksum
def _array_header(h, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    meta = f"{dtype.str}{shape}".encode()
    h.update(b"a" + len(meta).to_bytes(2, "little") + meta)


def _hash_value(h, value) -> None:
    if isinstance(value, h5py.Empty):
        h.update(b"e" + str(value.dtype).encode())
    elif isinstance(value, bytes):
        h.update(b"b" + len(value).to_bytes(8, "little") + value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s" + len(data).to_bytes(8, "little") + data)
    else:
        a = np.asarray(value)
        if a.dtype.kind == "O":
            h.update(b"o" + str(a.shape).encode())
            for item in a.reshape(-1):
                _hash_value(h, item)
            return
        _array_header(h, a.dtype, a.shape)
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))  # no copy when contiguous


def _hash_source(h, ds: h5py.Dataset) -> None:
    """Hash a dataset as ``_hash_value`` hashes its data, reading it block by block."""
    if ds.ndim == 0 or ds.shape[0] == 0:
        _hash_value(h, np.asarray(ds[()]))
        return
    _array_header(h, ds.dtype, ds.shape)
    rows = max(1, DIGEST_BLOCK // max(1, ds.size // ds.shape[0] * ds.dtype.itemsize))
    for start in range(0, ds.shape[0], rows):
        h.update(np.ascontiguousarray(ds[start:start + rows]).reshape(-1).view(np.uint8))


def tree_digest(root: Node) -> str:
    """sha256 of every object's name, attributes and data (the root checksum attr excluded)."""
    h = hashlib.sha256()
    stack = [root]
    while stack:
        node = stack.pop()
        _hash_value(h, node.name)
        for key in sorted(node.attrs):
            if node is root and key == CHECKSUM_ATTR:
                continue
            _hash_value(h, key)
            _hash_value(h, node.attrs[key])
        if node.is_group:
            _hash_value(h, f"{len(node.children)} members")
            stack.extend(node.children[k] for k in sorted(node.children, reverse=True))
        elif node.data is None and node.source is not None:
            _hash_source(h, node.source[node.name])  # closed after: HDF5 frees its chunk cache
        else:
            _hash_value(h, node.data)
    return "sha256:" + h.hexdigest()


def seal(f: h5py.File) -> None:
    """Write the checksum of everything written so far (the last thing a writer does)."""
    f.flush()
    set_attrs(f, **{CHECKSUM_ATTR: tree_digest(read_tree(f, data=False))})


def _open_regular(path: Path):
    """The file opened for reading; ModelFileError if missing, unreadable or not a regular file
    (a FIFO or device would block or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ModelFileError(f"{path}: {kind}, not a minidnn model file")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_h5(path: str | os.PathLike) -> Node:
    """Read a minidnn file into a tree: signature, format, version and checksum checked."""
    path = Path(path)
    with _open_regular(path) as fh:
        head = fh.read(len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE:
        raise ModelFileError(f"{path}: not an HDF5 file (so not a minidnn model file)")
    try:
        with h5py.File(path, "r", locking=False) as f:
            fmt = f.attrs.get_id("format") if "format" in f.attrs else None
            if fmt is None or fmt.dtype.kind != "S" or f.attrs["format"] != FORMAT.encode():
                raise ModelFileError("an HDF5 file but not a minidnn model file (no root "
                                     "attribute format='minidnn')")
            root = read_tree(f)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except MemoryError:
        raise ModelFileError(f"{path}: declares arrays too large to load") from None
    except Exception as exc:  # noqa: BLE001 - HDF5 reports corruption with assorted types
        raise ModelFileError(f"{path}: corrupt or truncated HDF5 file "
                             f"({type(exc).__name__}: {_short(exc)})") from None
    check_header(root, path)
    return root


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def check_header(root: Node, path: Path) -> None:
    """Format tag, supported version and the content checksum."""
    fmt = root.attrs.get("format")
    if not isinstance(fmt, (bytes, str)) or fmt not in (FORMAT, FORMAT.encode()):
        raise ModelFileError(f"{path}: an HDF5 file but not a minidnn model file "
                             f"(no root attribute format='minidnn')")
    version = attr_int(root, "format_version", path)
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written in minidnn file format version {version}, newer "
                             f"than this minidnn reads ({FORMAT_VERSION}); upgrade minidnn")
    if version < 1:
        raise ModelFileError(f"{path}: invalid format_version {version}")
    if attr_str(root, CHECKSUM_ATTR, path) != tree_digest(root):
        raise ModelFileError(f"{path}: checksum mismatch: the file is corrupt (its contents "
                             f"changed after it was written)")


# ---------------------------------------------------------------------- typed access
def where(node: Node, path: Path) -> str:
    return f"{path}:{node.name}"


def attr(node: Node, key: str, path: Path) -> Any:
    if key not in node.attrs:
        raise ModelFileError(f"{where(node, path)}: missing attribute {key!r}")
    value = node.attrs[key]
    return value[()] if isinstance(value, np.ndarray) and value.shape == () else value


def attr_str(node: Node, key: str, path: Path) -> str:
    value = attr(node, key, path)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{where(node, path)}: attribute {key!r} is not UTF-8") from None
    if not isinstance(value, str):
        raise ModelFileError(f"{where(node, path)}: attribute {key!r} must be a string")
    return value


def attr_int(node: Node, key: str, path: Path) -> int:
    value = attr(node, key, path)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ModelFileError(f"{where(node, path)}: attribute {key!r} must be an integer")
    return int(value)


def attr_bool(node: Node, key: str, path: Path) -> bool:
    value = attr(node, key, path)
    if not isinstance(value, (bool, np.bool_)):
        raise ModelFileError(f"{where(node, path)}: attribute {key!r} must be a boolean")
    return bool(value)


def attr_shape(node: Node, key: str, path: Path, ndim: int | None = None) -> tuple[int, ...]:
    value = np.asarray(attr(node, key, path))
    if value.ndim != 1 or (value.size and value.dtype.kind not in "iu") \
            or (ndim is not None and value.size != ndim) or np.any(value < 0) \
            or np.any(value > 2 ** 40):
        raise ModelFileError(f"{where(node, path)}: attribute {key!r} must be a list of "
                             f"{ndim or 'non-negative'} integers, got {value!r}")
    return tuple(int(v) for v in value)


def json_depth(value: Any) -> int:
    """How deeply lists and dicts nest in a parsed JSON value (0 for a scalar), iteratively."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                  else item))
    return deepest


def attr_json(node: Node, key: str, path: Path, kind: type) -> Any:
    text = attr_str(node, key, path)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"{where(node, path)}: attribute {key!r} is not valid JSON "
                             f"({_short(exc)})") from None
    except RecursionError:  # deeper than Python's parser recurses
        value = None
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise ModelFileError(f"{where(node, path)}: attribute {key!r} nests JSON deeper than "
                             f"{MAX_JSON_DEPTH} levels")
    if not isinstance(value, kind):
        raise ModelFileError(f"{where(node, path)}: attribute {key!r} must be a JSON "
                             f"{kind.__name__}")
    return value


def child(node: Node, name: str, path: Path, group: bool) -> Node:
    """Member ``name`` of a group, required to be a group (or a dataset)."""
    c = node.children.get(name)
    if c is None:
        raise ModelFileError(f"{where(node, path)}: missing {name!r}")
    if c.is_group != group:
        raise ModelFileError(f"{where(c, path)}: expected a {'group' if group else 'dataset'}")
    return c


def check_members(node: Node, allowed: set[str], path: Path) -> None:
    unknown = sorted(set(node.children) - allowed)
    if unknown:
        raise ModelFileError(f"{where(node, path)}: unexpected member(s) {unknown}")


def array(node: Node, name: str, path: Path, shape: tuple[int, ...] | None,
          kinds: dict[str, tuple[int, ...]]) -> np.ndarray:
    """Dataset ``name`` checked for dtype and shape (kinds e.g. {'f': (2, 4), 'u': (1, 2)})."""
    ds = child(node, name, path, group=False)
    dt = ds.data.dtype
    if dt.kind not in kinds or dt.itemsize not in kinds[dt.kind] or dt.fields is not None:
        allowed = ", ".join(f"{'float' if k == 'f' else 'uint' if k == 'u' else 'int'}{8 * s}"
                            for k, sizes in kinds.items() for s in sizes)
        raise ModelFileError(f"{where(ds, path)}: dtype {dt} not allowed here (expected "
                             f"{allowed})")
    if shape is not None and tuple(ds.data.shape) != tuple(shape):
        raise ModelFileError(f"{where(ds, path)}: shape {tuple(ds.data.shape)} != expected "
                             f"{tuple(shape)}")
    return ds.data


def check_finite(a: np.ndarray, what: str) -> None:
    """ModelFileError naming ``what`` if a float array holds NaN or Inf."""
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise ModelFileError(f"{what}: {bad} NaN/Inf value(s)")
