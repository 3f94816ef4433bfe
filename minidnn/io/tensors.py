"""Parameters and buffers in a file: encode (dense / CSR / pattern) on save, validate on read.

A read never touches a model: it returns host ``ParamRecord``s that are fully checked, and only
``install_param`` puts one into a Parameter on a backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..backend.base import Backend
from ..blockdiag import BlockDiagMatrix, BlockLayout
from ..errors import ConfigError, ModelFileError, ShapeError
from ..parameter import Parameter
from ..sparse import CSRMatrix
from .h5 import (Node, array, attr_bool, attr_int, attr_shape, attr_str, check_finite,
                 check_members, set_attrs, smallest_uint, where, write_array)

FLOAT_KINDS = {"f": (2, 4)}
FLOAT32_KINDS = {"f": (4,)}
UINT_KINDS = {"u": (1, 2, 4, 8)}
FLOAT16_MAX = float(np.finfo(np.float16).max)
INT32_MAX = np.iinfo(np.int32).max


@dataclass
class ParamRecord:
    """One parameter as read from a file: host arrays in the in-memory form it had when saved."""

    shape: tuple[int, ...]
    groups: int
    prox: bool
    form: str                      # 'dense', 'csr' or 'blockdiag': the representation to restore
    storage: str                   # 'dense', 'csr' or 'blockdiag': how it is stored in the file
    stored_dtype: str              # dtype of the stored values ('float32' or 'float16')
    nnz: int                       # nonzero values
    file_bytes: int                # bytes of its datasets in the file
    dense: np.ndarray | None = None                                   # form 'dense'
    csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None      # form 'csr' (int32, f32)
    matrix_shape: tuple[int, int] | None = None
    mask: np.ndarray | None = None                                    # float32 0/1
    quantized: dict | None = None   # storage 'quantized': bits, k, index_bits, bytes per part
    blockdiag: tuple[BlockLayout, np.ndarray] | None = None          # form 'blockdiag'

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    @property
    def values_shape(self) -> tuple[int, ...]:
        """Shape of ``Parameter.values`` once installed (what optimizer state must match)."""
        if self.blockdiag is not None:
            return tuple(self.blockdiag[1].shape)
        return (len(self.csr[2]),) if self.csr is not None else self.shape


# ---------------------------------------------------------------------- save
def _host(p: Parameter, a) -> np.ndarray:
    return np.asarray(a if p.backend is None else p.backend.to_host(a))


def cast_values(a: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``a`` as ``dtype`` (float16/32); ModelFileError for NaN/Inf or float16 overflow."""
    check_finite(a, f"cannot save {what}")
    if dtype == np.float16 and a.size and float(np.abs(a).max()) > FLOAT16_MAX:
        raise ModelFileError(f"cannot save {what} as float16: |value| up to "
                             f"{float(np.abs(a).max()):.3g} exceeds {FLOAT16_MAX:g}")
    return a.astype(dtype)


def _write_csr(g: h5py.Group, row_ptr: np.ndarray, col_idx: np.ndarray, values: np.ndarray,
               matrix_shape: tuple[int, int], compression: str) -> None:
    nnz = len(values)
    set_attrs(g, matrix_shape=np.asarray(matrix_shape, np.int64))
    write_array(g, "values", values, compression)
    write_array(g, "col_idx", col_idx.astype(smallest_uint(int(col_idx.max()) if nnz else 0)),
                compression)
    write_array(g, "row_ptr", row_ptr.astype(smallest_uint(nnz)), compression)


def write_param(parent: h5py.Group, name: str, p: Parameter, values_dtype: np.dtype,
                exact: bool, compression: str) -> int:
    """Group ``name``: CSR params as CSR, dense prox weights as CSR when smaller; returns nnz.

    ``values_dtype``: float32 or float16 for its values (the caller picks it per parameter:
    weights and biases may differ). ``exact`` (checkpoints): float32, dense stays dense with
    its mask, bit for bit.
    """
    what = f"parameter {name!r}"
    dtype = np.dtype(np.float32) if exact else values_dtype
    g = parent.create_group(name)
    set_attrs(g, shape=np.asarray(p.shape, np.int64), groups=int(p.groups), prox=bool(p.prox),
              form="csr" if p.is_sparse else "blockdiag" if p.is_blockdiag else "dense")
    if p.is_blockdiag:
        return _write_blockdiag(g, p, dtype, exact, compression, what)
    if p.is_sparse:
        row_ptr, col_idx, values = (np.asarray(a) for a in p.csr.to_host())
        rows, cols = p.csr.shape
        check_csr(row_ptr.astype(np.int64), col_idx, len(values), rows, cols,
                  f"cannot save {what}")
        set_attrs(g, storage="csr", mask="none")
        _write_csr(g, row_ptr, col_idx, cast_values(values, dtype, what), (rows, cols),
                   compression)
        return int(np.count_nonzero(values))
    dense = np.asarray(p.host_dense(), np.float32).reshape(p.shape)
    mask = None if p.mask is None else _host(p, p.mask).reshape(p.shape)
    if mask is not None and not np.isin(mask, (0, 1)).all():
        raise ModelFileError(f"cannot save {what}: its mask holds values other than 0 and 1")
    if not exact and p.prox and dense.ndim >= 1 and dense.size:
        rows, cols = p.matrix_shape
        mat = dense.reshape(rows, cols)
        # a mask is the sparsity pattern itself, unless (abnormally) values live outside it
        pattern = mat != 0 if mask is None else mask.reshape(rows, cols) != 0
        if mask is None or not np.any(mat[~pattern]):
            nnz = int(np.count_nonzero(pattern))
            csr_bytes = nnz * (dtype.itemsize + smallest_uint(cols - 1).itemsize) \
                + (rows + 1) * smallest_uint(nnz).itemsize
            dense_bytes = dense.size * dtype.itemsize + (0 if mask is None else dense.size // 8)
            if csr_bytes < dense_bytes:
                r, c = np.nonzero(pattern)
                row_ptr = np.zeros(rows + 1, np.int64)
                np.cumsum(np.bincount(r, minlength=rows), out=row_ptr[1:])
                set_attrs(g, storage="csr", mask="none" if mask is None else "pattern")
                _write_csr(g, row_ptr, c, cast_values(mat[r, c], dtype, what), (rows, cols),
                           compression)
                return int(np.count_nonzero(dense))
    set_attrs(g, storage="dense", mask="none" if mask is None else "dataset")
    write_array(g, "data", cast_values(dense, dtype, what), compression)
    if mask is not None:
        write_array(g, "mask", mask.astype(np.uint8), compression)
    return int(np.count_nonzero(dense))


def _write_blockdiag(g: h5py.Group, p: Parameter, dtype: np.dtype, exact: bool,
                     compression: str, what: str) -> int:
    """A block-diagonal weight: the B padded blocks and the two permutations, no per-weight
    index (docs/format.md); a checkpoint also keeps a mask of the blocks, if any."""
    layout, blocks = p.blockdiag.layout, p.blockdiag.to_host()
    keep_mask = exact and p.mask is not None
    set_attrs(g, storage="blockdiag", mask="dataset" if keep_mask else "none",
              matrix_shape=np.asarray((layout.rows, layout.cols), np.int64),
              blocks=int(layout.blocks), unit=int(layout.unit))
    write_array(g, "blocks", cast_values(blocks, dtype, what), compression)
    for name, perm in (("row_perm", layout.row_perm), ("col_perm", layout.col_perm)):
        perm = np.asarray(perm)
        write_array(g, name, perm.astype(smallest_uint(max(len(perm) - 1, 0))), compression)
    if keep_mask:
        write_array(g, "mask", _host(p, p.mask).astype(np.uint8), compression)
    return int(np.count_nonzero(blocks))


def write_buffer(parent: h5py.Group, name: str, host: np.ndarray, compression: str) -> None:
    """A buffer as float32 (floats) or int64 (integers)."""
    host = np.asarray(host)
    if host.dtype.kind == "f":
        write_array(parent, name, cast_values(host, np.dtype(np.float32), f"buffer {name!r}"),
                    compression)
    elif host.dtype.kind in "iub":
        write_array(parent, name, host.astype(np.int64), compression)
    else:
        raise ModelFileError(f"cannot save buffer {name!r} of dtype {host.dtype}")


# ---------------------------------------------------------------------- read and validate
def check_csr(row_ptr: np.ndarray, col_idx: np.ndarray, nnz: int, rows: int, cols: int,
              what: str) -> None:
    """ModelFileError unless row_ptr/col_idx describe a valid (rows, cols) CSR with nnz entries."""
    if len(row_ptr) != rows + 1:
        raise ModelFileError(f"{what}: row_ptr has {len(row_ptr)} entries, expected {rows + 1}")
    if len(col_idx) != nnz:
        raise ModelFileError(f"{what}: col_idx has {len(col_idx)} entries but values has {nnz}")
    if row_ptr[0] != 0:
        raise ModelFileError(f"{what}: row_ptr must start at 0, starts at {int(row_ptr[0])}")
    step = np.diff(row_ptr)
    if np.any(step < 0):
        r = int(np.argmax(step < 0))
        raise ModelFileError(f"{what}: row_ptr decreases at row {r} (not monotone)")
    if row_ptr[-1] != nnz:
        raise ModelFileError(f"{what}: row_ptr ends at {int(row_ptr[-1])} but there are {nnz} "
                             f"values")
    if not nnz:
        return
    if int(col_idx.max()) >= cols:
        raise ModelFileError(f"{what}: column index {int(col_idx.max())} out of range for "
                             f"{cols} columns")
    ascending = np.diff(col_idx.astype(np.int64)) > 0
    starts = row_ptr[1:-1]
    ascending[starts[(starts > 0) & (starts < nnz)] - 1] = True  # row boundaries may drop
    if not ascending.all():
        k = int(np.argmin(ascending)) + 1
        r = int(np.searchsorted(row_ptr, k, side="right")) - 1
        raise ModelFileError(f"{what}: column indices not strictly ascending in row {r}")


def read_param(g: Node, path: Path) -> ParamRecord:
    """The validated host record of one parameter group (see docs/format.md)."""
    what = where(g, path)
    shape = attr_shape(g, "shape", path)
    groups = attr_int(g, "groups", path)
    prox = attr_bool(g, "prox", path)
    form, storage, mask_kind = (attr_str(g, k, path) for k in ("form", "storage", "mask"))
    if (form, storage, mask_kind) not in {("dense", "dense", "none"), ("dense", "dense", "dataset"),
                                          ("dense", "csr", "none"), ("dense", "csr", "pattern"),
                                          ("csr", "csr", "none"),
                                          ("blockdiag", "blockdiag", "none"),
                                          ("blockdiag", "blockdiag", "dataset")}:
        raise ModelFileError(f"{what}: invalid combination form={form!r} storage={storage!r} "
                             f"mask={mask_kind!r}")
    if groups < 1 or (shape and shape[0] % groups) or (not shape and groups != 1):
        raise ModelFileError(f"{what}: groups={groups} does not divide the shape {shape}")
    extra = {"mask"} if mask_kind == "dataset" else set()
    file_bytes = sum(c.storage_bytes for c in g.children.values())
    rec = ParamRecord(shape, groups, prox, form, storage, "float32", 0, file_bytes)
    if storage == "dense":
        check_members(g, {"data"} | extra, path)
        data = array(g, "data", path, shape, FLOAT_KINDS)
        check_finite(data, f"{what}/data")
        rec.stored_dtype = data.dtype.name
        rec.dense = data.astype(np.float32)
        rec.nnz = int(np.count_nonzero(rec.dense))
    elif storage == "blockdiag":
        _read_blockdiag(g, path, rec, extra)
    else:
        _read_csr_storage(g, path, rec, extra, mask_kind)
    if mask_kind == "dataset":
        mask = array(g, "mask", path, rec.values_shape, {"u": (1,)})
        if not np.isin(mask, (0, 1)).all():
            raise ModelFileError(f"{what}/mask: values must be 0 or 1")
        rec.mask = mask.astype(np.float32)
    return rec

def _read_blockdiag(g: Node, path: Path, rec: ParamRecord, extra: set) -> None:
    """Fill ``rec`` from a block-diagonal parameter: the permutations must be permutations, the
    blocks exactly (B, rb, cb) of the layout, finite, and zero on their padding."""
    what, shape = where(g, path), rec.shape
    check_members(g, {"blocks", "row_perm", "col_perm"} | extra, path)
    rows, cols = attr_shape(g, "matrix_shape", path, ndim=2)
    if len(shape) < 2 or rows != shape[0] or rows * cols != rec.numel or rec.groups != 1:
        raise ModelFileError(f"{what}: matrix_shape {(rows, cols)} (groups {rec.groups}) does "
                             f"not fit shape {shape}")
    nblocks, unit = attr_int(g, "blocks", path), attr_int(g, "unit", path)
    row_perm = array(g, "row_perm", path, (rows,), UINT_KINDS).astype(np.int64)
    col_perm = array(g, "col_perm", path, (cols,), UINT_KINDS).astype(np.int64)
    try:
        layout = BlockLayout(rows, cols, nblocks, row_perm, col_perm, unit)
    except (ConfigError, ShapeError) as e:
        raise ModelFileError(f"{what}: {e}") from None
    blocks = array(g, "blocks", path, (nblocks,) + layout.block_shape, FLOAT_KINDS)
    check_finite(blocks, f"{what}/blocks")
    if np.any(blocks[layout.padding_mask() == 0]):
        raise ModelFileError(f"{what}/blocks: nonzero values on the padding of short blocks")
    rec.stored_dtype = blocks.dtype.name
    rec.blockdiag = (layout, blocks.astype(np.float32))
    rec.nnz = int(np.count_nonzero(blocks))


def _read_csr_storage(g: Node, path: Path, rec: ParamRecord, extra: set, mask_kind: str) -> None:
    """Fill ``rec`` from a parameter stored as CSR (kept as CSR, or expanded to dense+mask)."""
    what, shape, form = where(g, path), rec.shape, rec.form
    check_members(g, {"values", "col_idx", "row_ptr"} | extra, path)
    rows, cols = attr_shape(g, "matrix_shape", path, ndim=2)
    if not shape or rows != shape[0] or rows * cols != rec.numel or cols > INT32_MAX:
        raise ModelFileError(f"{what}: matrix_shape {(rows, cols)} does not fit shape {shape}")
    values = array(g, "values", path, None, FLOAT_KINDS)
    if values.ndim != 1 or len(values) > rec.numel or len(values) > INT32_MAX:
        raise ModelFileError(f"{what}/values: shape {values.shape} invalid for "
                             f"{rec.numel} weights")
    nnz = len(values)
    col_idx = array(g, "col_idx", path, None, UINT_KINDS)
    if col_idx.shape != (nnz,):
        raise ModelFileError(f"{what}: col_idx has shape {col_idx.shape} but values has "
                             f"{nnz} entries")
    row_ptr = array(g, "row_ptr", path, (rows + 1,), UINT_KINDS)
    if row_ptr.size and int(row_ptr.max()) > INT32_MAX:
        raise ModelFileError(f"{what}: row_ptr value out of range")
    row_ptr = row_ptr.astype(np.int64)
    check_csr(row_ptr, col_idx, nnz, rows, cols, what)
    check_finite(values, f"{what}/values")
    rec.stored_dtype = values.dtype.name
    rec.matrix_shape = (rows, cols)
    values = values.astype(np.float32)
    col_idx = col_idx.astype(np.int32)
    rec.nnz = int(np.count_nonzero(values))
    if form == "csr":
        rec.csr = (row_ptr.astype(np.int32), col_idx, values)
    else:
        r = np.repeat(np.arange(rows), np.diff(row_ptr))
        dense = np.zeros((rows, cols), np.float32)
        dense[r, col_idx] = values
        rec.dense = dense.reshape(shape)
        if mask_kind == "pattern":
            mask = np.zeros((rows, cols), np.float32)
            mask[r, col_idx] = 1.0
            rec.mask = mask.reshape(shape)


# ---------------------------------------------------------------------- install
def install_param(p: Parameter, rec: ParamRecord, backend: Backend) -> None:
    """Put a validated record into ``p`` on ``backend`` in its saved form (CSR or dense+mask)."""
    p.grad = None
    p.blockdiag = None
    if rec.blockdiag is not None:
        p.data, p.csr = None, None
        p.blockdiag = BlockDiagMatrix.from_host(backend, *rec.blockdiag)
        p.mask = None if rec.mask is None else backend.from_host(rec.mask)
    elif rec.csr is not None:
        p.data, p.mask = None, None
        p.csr = CSRMatrix.from_host(backend, *rec.csr, rec.matrix_shape, p.groups)
    else:
        p.csr = None
        p.data = backend.from_host(rec.dense)
        p.mask = None if rec.mask is None else backend.from_host(rec.mask)
    p.backend = backend
