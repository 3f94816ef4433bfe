"""Version 3 parameters: quantized weights as codec blobs, everything else packed (docs/format.md).

A version 3 file stores its parameters in two datasets under ``/params`` instead of one group
per parameter: ``codes`` (uint8) holds the codec blob of every quantized conv/linear weight
(``minidnn.compress.codec``), one after the other, and ``values`` (float16 or float32) holds the
other parameters (biases, batch-norm weights) flattened, one after the other. The ``/params``
attribute ``table`` lists each parameter once, in model order, as
``[name, shape, groups, prox, form, storage, mask, size]``; ``size`` is its length in the pool
of its storage, so offsets are the running sums. HDF5 spends ~270 bytes of object header on
every dataset and ~130 on every group; a quantized LeNet-5 is ~8 KB, so one dataset per pool
(instead of 8 groups and 8 datasets) is what keeps the container small.

Reading is bounded: the table's shapes are capped before anything is expanded, each blob's
declared shape must equal its parameter's before a stream is decoded (``decode_layer`` then
checks every stream), and the pools must be tiled exactly by the table.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import h5py
import numpy as np

from ..errors import ConfigError, ModelFileError
from ..layers.base import Module
from .h5 import (Node, array, attr_json, check_finite, check_members, set_attrs, to_json,
                 where, write_array)
from .tensors import FLOAT_KINDS, ParamRecord, cast_values

if TYPE_CHECKING:
    from ..compress.quantize import QuantizedLayer

TABLE_FIELDS = ("name", "shape", "groups", "prox", "form", "storage", "mask", "size")
STORAGES = ("quantized", "dense")
MAX_VALUES = 1 << 28   # as layout.MAX_VALUES: parameter values of one model


# ---------------------------------------------------------------------- write
def _check_record(name: str, p, record: "QuantizedLayer") -> None:
    """ModelFileError unless the weight holds exactly the record's values (so the file
    reloads bit-identical to the model in memory)."""
    if tuple(record.shape) != tuple(p.shape):
        raise ModelFileError(f"cannot save parameter {name!r}: its quantization record has "
                             f"shape {tuple(record.shape)}, the weight {tuple(p.shape)}")
    flat = np.asarray(p.host_dense(), np.float32).ravel()
    positions = np.flatnonzero(flat)
    if not np.array_equal(positions, record.positions) \
            or not np.array_equal(flat[positions], record.values()):
        raise ModelFileError(f"cannot save parameter {name!r} quantized: its weights are no "
                             f"longer its codebook's values (changed after quantize_model?)")


def records_by_name(model: Module, quantized: Iterable["QuantizedLayer"] | dict
                    ) -> dict[str, "QuantizedLayer"]:
    """{weight name: record} covering every conv/linear weight of ``model`` (ConfigError if a
    record names no weight or a weight has no record)."""
    recs = dict(quantized) if isinstance(quantized, dict) else {r.name: r for r in quantized}
    prox = [n for n, _ in model.prox_parameters()]
    unknown = sorted(set(recs) - set(prox))
    missing = [n for n in prox if n not in recs]
    if unknown or missing:
        raise ConfigError(f"a quantized file needs one record per conv/linear weight: missing "
                          f"{missing}, unknown {unknown} (quantize_model makes them all)")
    return recs


def pack_params(model: Module, quantized: dict[str, "QuantizedLayer"], values_dtype: np.dtype
                ) -> tuple[list, np.ndarray, np.ndarray, int]:
    """(table, codes, values, nnz) of a quantized model: the parameter table of docs/format.md,
    the concatenated codec blobs (uint8), the other parameters flattened (``values_dtype``) and
    the nnz of the conv/linear weights. Shared by format versions 3 and 4."""
    from ..compress.codec import encode_layer
    table, blobs, dense, nnz = [], [], [], 0
    for name, p in model.named_parameters():
        form = "csr" if p.is_sparse else "dense"
        if name in quantized:
            record = quantized[name]
            _check_record(name, p, record)
            blob = encode_layer(record).to_bytes()
            blobs.append(np.frombuffer(blob, np.uint8))
            nnz += record.nnz
            mask = "pattern" if p.mask is not None else "none"
            table.append([name, list(p.shape), int(p.groups), bool(p.prox), form, "quantized",
                          mask, len(blob)])
            continue
        if p.mask is not None or p.is_sparse:
            raise ModelFileError(f"cannot save parameter {name!r} in a quantized file: only "
                                 f"conv/linear weights may be sparse or masked")
        host = np.asarray(p.host_dense(), np.float32).ravel()
        dense.append(cast_values(host, values_dtype, f"parameter {name!r}"))
        table.append([name, list(p.shape), int(p.groups), bool(p.prox), form, "dense", "none",
                      int(host.size)])
    codes = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
    values = np.concatenate(dense) if dense else np.zeros(0, values_dtype)
    return table, codes, values, nnz


def write_packed_params(f: h5py.File, model: Module, quantized: dict[str, "QuantizedLayer"],
                        values_dtype: np.dtype, compression: str) -> int:
    """/params of a version 3 file: ``codes``, ``values`` and the ``table``; returns the nnz of
    the conv/linear weights."""
    table, codes, values, nnz = pack_params(model, quantized, values_dtype)
    params = f.create_group("params")
    set_attrs(params, table=to_json(table, "the parameter table"))
    # the large pool first: HDF5 serves raw data under 2 KiB from a 2 KiB block, and only a
    # block that ends the file gives its unused tail back (~900 B on a LeNet-5)
    write_array(params, "codes", codes, "none")
    write_array(params, "values", values, compression)
    return nnz


# ---------------------------------------------------------------------- read
def _entry(item, i: int, what: str) -> tuple:
    """One checked table row: (name, shape, groups, prox, form, storage, mask, size)."""
    if not isinstance(item, list) or len(item) != len(TABLE_FIELDS):
        raise ModelFileError(f"{what}: entry {i} must be a list {list(TABLE_FIELDS)}")
    name, shape, groups, prox, form, storage, mask, size = item
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if not isinstance(name, str) or not name or not isinstance(shape, list) \
            or len(shape) > 8 or not all(is_int(s) and 0 <= s <= 1 << 40 for s in shape) \
            or not is_int(groups) or not isinstance(prox, bool) or not is_int(size) \
            or size < 0:
        raise ModelFileError(f"{what}: entry {i} has a bad name, shape, groups, prox or size")
    if storage not in STORAGES or form not in ("dense", "csr") \
            or mask not in (("none", "pattern") if storage == "quantized" else ("none",)) \
            or (storage == "dense" and form != "dense"):
        raise ModelFileError(f"{what}: entry {i} ({name!r}): invalid combination "
                             f"form={form!r} storage={storage!r} mask={mask!r}")
    shape = tuple(shape)
    if groups < 1 or (shape and shape[0] % groups) or (not shape and groups != 1) \
            or (storage == "quantized" and not shape):
        raise ModelFileError(f"{what}: entry {i} ({name!r}): groups={groups} does not fit "
                             f"the shape {shape}")
    return name, shape, groups, prox, form, storage, mask, size


def read_table(pg: Node, path: Path) -> list[tuple]:
    """The checked ``table`` of a version 3 /params group (names unique, values capped)."""
    what = f"{where(pg, path)} attribute 'table'"
    return check_table(attr_json(pg, "table", path, list), what)


def check_table(items: list, what: str) -> list[tuple]:
    """The rows of a parameter table (JSON list) checked: entries well typed, names unique,
    declared values capped (before anything is expanded)."""
    rows = [_entry(item, i, what) for i, item in enumerate(items)]
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        raise ModelFileError(f"{what}: a parameter is listed twice")
    total = sum(int(np.prod(r[1], dtype=object)) for r in rows)
    if total > MAX_VALUES:
        raise ModelFileError(f"{what}: the parameters declare {total:,} values, more than a "
                             f"minidnn model holds ({MAX_VALUES:,})")
    return rows


def _tiles(rows: list[tuple], storage: str, pool: np.ndarray, what: str) -> None:
    used = sum(r[7] for r in rows if r[5] == storage)
    if used != pool.size:
        raise ModelFileError(f"{what}: the table gives {used:,} entries to the {storage} "
                             f"parameters but the dataset holds {pool.size:,}")


def _quantized_record(row: tuple, blob: bytes, where_: str) -> ParamRecord:
    """The ParamRecord of one quantized weight, its blob checked against the table first."""
    from ..compress.codec import EncodedLayer, decode_layer
    name, shape, groups, prox, form, _, mask, size = row
    enc = EncodedLayer.from_bytes(blob, where_)
    if enc.shape != shape:
        raise ModelFileError(f"{where_}: the layer encodes shape {enc.shape}, the parameter "
                             f"has {shape}")
    q = decode_layer(enc, name, where_)
    rows, cols = q.matrix_shape
    rec = ParamRecord(shape, groups, prox, form, "quantized", f"q{enc.bits}", q.nnz, size,
                      matrix_shape=(rows, cols))
    rec.quantized = dict(bits=enc.bits, k=q.k, index_bits=enc.index_bits,
                         **{f"{k}_bytes": v for k, v in enc.stream_bytes.items()},
                         compact=bool(enc.live), record=q)
    if form == "csr":
        row_ptr, col_idx = q.csr()
        rec.csr = (row_ptr, col_idx, q.values())
    else:
        rec.dense = q.dense()
        if mask == "pattern":
            rec.mask = (rec.dense != 0).astype(np.float32)
    return rec


def read_packed_params(pg: Node, path: Path) -> dict[str, ParamRecord]:
    """{name: ParamRecord} of a version 3 /params group, every blob decoded and checked."""
    check_members(pg, {"codes", "values"}, path)
    rows = read_table(pg, path)
    codes = array(pg, "codes", path, None, {"u": (1,)})
    values = array(pg, "values", path, None, FLOAT_KINDS)
    return decode_pools(rows, codes, values, pg.children["values"].storage_bytes,
                        where(pg, path))


def decode_pools(rows: list[tuple], codes: np.ndarray, values: np.ndarray, stored: int,
                 where_: str) -> dict[str, ParamRecord]:
    """{name: ParamRecord} from a checked table and its two pools (``stored``: the values
    pool's bytes in the file, shared out among the dense parameters for reports)."""
    for pool, name in ((codes, "codes"), (values, "values")):
        if pool.ndim != 1:
            raise ModelFileError(f"{where_}/{name}: must be one-dimensional")
        _tiles(rows, "quantized" if name == "codes" else "dense", pool, f"{where_}/{name}")
    check_finite(values, f"{where_}/values")
    out, at = {}, {"quantized": 0, "dense": 0}
    for row in rows:
        name, shape, groups, prox, form, storage, mask, size = row
        start = at[storage]
        at[storage] += size
        what = f"{where_}: parameter {name!r}"
        if storage == "quantized":
            out[name] = _quantized_record(row, codes[start:start + size].tobytes(), what)
            continue
        if size != int(np.prod(shape, dtype=object)):
            raise ModelFileError(f"{what}: {size} values for shape {shape}")
        data = values[start:start + size].astype(np.float32).reshape(shape)
        share = round(stored * size / values.size) if values.size else 0  # of a gzip'd pool
        out[name] = ParamRecord(shape, groups, prox, "dense", "dense", values.dtype.name,
                                int(np.count_nonzero(data)), share, dense=data)
    return out
