"""The file layout of docs/format.md: header (with the architecture record), /params, /buffers
and (checkpoints) /state.

``read_file`` validates a whole file into host arrays (``FileContents``) before anything is built.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError, DTypeError, ModelFileError
from ..layers.base import Module
from .architecture import parse_architecture, record_architecture
from .h5 import (FORMAT, PLAIN_VERSION, Node, array, attr_int, attr_json, attr_shape,
                 attr_str, check_finite, check_members, child, read_h5, set_attrs, to_json,
                 where, write_array)
from .packed import VERSION as PACKED_VERSION
from .packed import pack_model_record, read_model_record, write_model_dataset
from .quantized import pack_params, read_packed_params, write_packed_params
from .tensors import (FLOAT32_KINDS, ParamRecord, read_param, write_buffer, write_param)

KINDS = ("model", "checkpoint")
BUFFER_KINDS = {"f": (4,), "i": (8,)}
MAX_VALUES = 1 << 28   # parameter values of one model (1 GiB as float32; VGG16 has 15M)


def minidnn_version() -> str:
    """The installed minidnn version ('unknown' when running from a bare source tree)."""
    try:
        from importlib.metadata import version as dist_version
        return dist_version("minidnn")
    except Exception:  # noqa: BLE001 - not installed
        return "unknown"


@dataclass
class OptimizerStateRecord:
    """Saved optimizer state of one parameter: arrays (float32, values-shaped) and scalars."""

    arrays: dict[str, np.ndarray]
    scalars: dict


@dataclass
class FileContents:
    """Everything a minidnn file holds, validated, on the host."""

    path: Path
    kind: str
    format_version: int
    minidnn_version: str
    created: str
    arch: str
    config: dict
    metadata: dict
    params: dict[str, ParamRecord]
    buffers: dict[str, np.ndarray]
    file_bytes: int
    buffer_bytes: int = 0
    optimizer: str = ""
    step_count: int = 0
    modules: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    optimizer_state: dict[str, OptimizerStateRecord] = field(default_factory=dict)
    architecture: dict | None = None   # the validated record (None: a version 1 file)


# ---------------------------------------------------------------------- write
def write_model(f: h5py.File, model: Module, kind: str, metadata: dict | None,
                values_dtype: np.dtype, exact: bool, compression: str,
                architecture: str = "try", quantized: dict | None = None,
                other_dtype: np.dtype = np.dtype(np.float32), version: int = 4) -> None:
    """Header attributes, /params and /buffers of ``model``.

    ``architecture``: 'require', 'try' or 'skip' recording the module tree
    (``architecture.record_architecture``). ``quantized`` ({weight name: QuantizedLayer},
    one per conv/linear weight) writes format version 3: the weights as codec blobs and the
    other parameters packed as ``other_dtype`` (io/quantized.py); a zoo model's record then
    leaves out its module tree (it is rebuilt by name), which saves ~1 KB. A quantized model
    is written as version 4 (one packed record, io/packed.py) unless ``version`` is 3.
    """
    arch = getattr(model, "arch", "") or type(model).__name__
    config = getattr(model, "config", {})
    if not isinstance(arch, str) or not isinstance(config, dict):
        raise DTypeError(f"saving needs a minidnn Model (a str `arch`, a dict `config`), got "
                        f"{type(model).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise DTypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    record = record_architecture(model, architecture)
    if quantized is not None and record is not None and record["zoo"]:
        record = {**record, "module": None}
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if quantized is not None and version == 4:
        _write_packed_model(f, model, kind, dict(
            kind=kind, minidnn_version=minidnn_version(), created=created, arch=arch,
            config=config, architecture=record, metadata=metadata or {}), quantized, other_dtype)
        return
    set_attrs(f, format=FORMAT, format_version=PLAIN_VERSION if quantized is None else 3,
              kind=kind,
              minidnn_version=minidnn_version(), created=created, arch=arch,
              config=to_json(config, "the model config"),
              architecture=to_json(record, "the architecture record"),
              metadata=to_json(metadata or {}, "metadata"))
    total = sum(p.numel for _, p in model.prox_parameters())
    if quantized is not None:
        nnz = write_packed_params(f, model, quantized, other_dtype, compression)
    else:
        nnz = _write_params(f, model, values_dtype, other_dtype, exact, compression)
    set_attrs(f, sparsity=to_json({"weights": total, "nnz": nnz,
                                   "zeros": 1 - nnz / total if total else 0.0}, "sparsity"))
    buffers = f.create_group("buffers")
    names = []
    for name, b in model.named_buffers():
        host = b if model.backend is None else model.backend.to_host(b)
        write_buffer(buffers, name, host, compression)
        names.append(name)
    set_attrs(buffers, order=to_json(names, "buffer names"))


def _write_packed_model(f: h5py.File, model: Module, kind: str, header: dict,
                        quantized: dict, other_dtype: np.dtype) -> None:
    """A version 4 file: three root attributes and the packed record ``/model``."""
    if kind != "model":
        raise ModelFileError("a checkpoint is never quantized")
    table, codes, values, _ = pack_params(model, quantized, other_dtype)
    buffers = [(n, np.asarray(b if model.backend is None else model.backend.to_host(b)))
               for n, b in model.named_buffers()]
    for name, b in buffers:
        if b.dtype.kind not in "fiub":
            raise ModelFileError(f"cannot save buffer {name!r} of dtype {b.dtype}")
        check_finite(b, f"cannot save buffer {name!r}")
    set_attrs(f, format=FORMAT, format_version=PACKED_VERSION)
    write_model_dataset(f, pack_model_record({**header, "params": table}, codes, values,
                                             buffers))


def _write_params(f: h5py.File, model: Module, values_dtype: np.dtype, other_dtype: np.dtype,
                  exact: bool, compression: str) -> int:
    """/params of a version 2 file, one group per parameter; returns the weights' nnz."""
    params = f.create_group("params")
    names, nnz = [], 0
    for name, p in model.named_parameters():
        n = write_param(params, name, p, values_dtype if p.prox else other_dtype, exact,
                        compression)
        names.append(name)
        nnz += n if p.prox else 0
    set_attrs(params, order=to_json(names, "parameter names"))
    return nnz


# ---------------------------------------------------------------------- read
def _ordered_members(g: Node, path: Path) -> list[str]:
    order = attr_json(g, "order", path, list)
    if any(not isinstance(n, str) for n in order) or len(set(order)) != len(order) \
            or set(order) != set(g.children):
        raise ModelFileError(f"{where(g, path)}: the 'order' attribute does not list its "
                             f"members exactly")
    return order


def check_param_count(pg: Node, path: Path) -> None:
    """ModelFileError when the declared parameter shapes add up to more than MAX_VALUES values
    (checked before any parameter is expanded to its dense shape)."""
    total = 0
    for g in pg.children.values():
        if g.is_group and "shape" in g.attrs:
            total += int(np.prod(attr_shape(g, "shape", path), dtype=object))
    if total > MAX_VALUES:
        raise ModelFileError(f"{where(pg, path)}: the parameters declare {total:,} values, more "
                             f"than a minidnn model holds ({MAX_VALUES:,})")


def read_file(path: str | os.PathLike) -> FileContents:
    """Read, check and decode a whole minidnn file (model or checkpoint) into host arrays."""
    path = Path(path)
    root = read_h5(path)
    try:
        return _decode(root, path)
    except MemoryError:
        raise ModelFileError(f"{path}: declares arrays too large to load") from None


def _decode(root: Node, path: Path) -> FileContents:
    if attr_int(root, "format_version", path) >= PACKED_VERSION:
        return FileContents(**read_model_record(root, path), file_bytes=os.path.getsize(path))
    kind = attr_str(root, "kind", path)
    if kind not in KINDS:
        raise ModelFileError(f"{path}: unknown file kind {kind!r} (expected one of {KINDS})")
    check_members(root, {"params", "buffers"} | ({"state"} if kind == "checkpoint" else set()),
                  path)
    contents = FileContents(
        path=path, kind=kind, format_version=attr_int(root, "format_version", path),
        minidnn_version=attr_str(root, "minidnn_version", path),
        created=attr_str(root, "created", path), arch=attr_str(root, "arch", path),
        config=attr_json(root, "config", path, dict),
        metadata=attr_json(root, "metadata", path, dict),
        params={}, buffers={}, file_bytes=os.path.getsize(path))
    attr_json(root, "sparsity", path, dict)  # informative: reports recompute it from the data
    if contents.format_version >= 2:
        contents.architecture = parse_architecture(attr_str(root, "architecture", path),
                                                   f"{path}: architecture")
    pg = child(root, "params", path, group=True)
    if contents.format_version >= 3:
        if kind != "model":
            raise ModelFileError(f"{path}: a checkpoint is never quantized (format version 3)")
        contents.params = read_packed_params(pg, path)
    else:
        check_param_count(pg, path)
        for name in _ordered_members(pg, path):
            contents.params[name] = read_param(child(pg, name, path, group=True), path)
    bg = child(root, "buffers", path, group=True)
    for name in _ordered_members(bg, path):
        a = array(bg, name, path, None, BUFFER_KINDS)
        check_finite(a, where(bg.children[name], path))
        contents.buffers[name] = a.astype(np.float32 if a.dtype.kind == "f" else np.int64)
        contents.buffer_bytes += bg.children[name].storage_bytes
    if kind == "checkpoint":
        _read_state(child(root, "state", path, group=True), path, contents)
    return contents


# ---------------------------------------------------------------------- checkpoint state
def has_counter(m: Module) -> bool:
    """Whether a module keeps an integer RNG ``counter`` (Dropout) that a checkpoint restores."""
    c = getattr(m, "counter", None)
    return isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_))


def write_state(f: h5py.File, model: Module, optimizer, extra: dict | None,
                compression: str) -> None:
    """/state: optimizer name and step_count, per-parameter optimizer state, module counters."""
    if extra is not None and not isinstance(extra, dict):
        raise DTypeError(f"extra must be a dict, got {type(extra).__name__}")
    names = {id(p): n for n, p in model.named_parameters()}
    st = f.create_group("state")
    counters = {n: {"counter": int(m.counter)} for n, m in model.named_modules()
                if has_counter(m)}
    set_attrs(st, optimizer=type(optimizer).__name__, step_count=int(optimizer.step_count),
              modules=to_json(counters, "module counters"), extra=to_json(extra or {}, "extra"))
    og = st.create_group("optimizer")
    saved = []
    for _, p in optimizer.named_params:
        if id(p) not in names:
            raise ConfigError("the optimizer holds a parameter that is not in the model")
        state = optimizer.state.get(id(p))
        # state made for another representation is stale: the optimizer would re-create it
        if state is None or state.get("_shape") != tuple(p.values.shape) \
                or state.get("_backend") is not p.backend:
            continue
        g = og.create_group(names[id(p)])
        scalars = {}
        for key, value in state.items():
            if key.startswith("_"):
                continue
            if value is None or isinstance(value, (bool, int, float, np.generic)):
                scalars[key] = value
            else:
                host = np.asarray(p.backend.to_host(value))
                check_finite(host, f"cannot save optimizer state {key!r} of {names[id(p)]!r}")
                write_array(g, key, host.astype(np.float32), compression)
        set_attrs(g, scalars=to_json(scalars, f"optimizer state of {names[id(p)]!r}"))
        saved.append(names[id(p)])
    set_attrs(og, order=to_json(saved, "optimizer state names"))


def _read_state(st: Node, path: Path, contents: FileContents) -> None:
    check_members(st, {"optimizer"}, path)
    contents.optimizer = attr_str(st, "optimizer", path)
    contents.step_count = attr_int(st, "step_count", path)
    if contents.step_count < 0:
        raise ModelFileError(f"{where(st, path)}: negative step_count")
    contents.modules = attr_json(st, "modules", path, dict)
    for name, entry in contents.modules.items():
        if not isinstance(entry, dict) or set(entry) != {"counter"} \
                or not isinstance(entry["counter"], int) or isinstance(entry["counter"], bool):
            raise ModelFileError(f"{where(st, path)}: bad module state for {name!r}")
    contents.extra = attr_json(st, "extra", path, dict)
    og = child(st, "optimizer", path, group=True)
    for name in _ordered_members(og, path):
        g = child(og, name, path, group=True)
        rec = contents.params.get(name)
        if rec is None:
            raise ModelFileError(f"{where(g, path)}: optimizer state for an unknown parameter")
        arrays = {}
        for key in g.children:
            a = array(g, key, path, rec.values_shape, FLOAT32_KINDS)
            check_finite(a, f"{where(g, path)}/{key}")
            arrays[key] = a
        scalars = attr_json(g, "scalars", path, dict)
        if set(scalars) & set(arrays):
            raise ModelFileError(f"{where(g, path)}: keys both scalar and array")
        contents.optimizer_state[name] = OptimizerStateRecord(arrays, scalars)
