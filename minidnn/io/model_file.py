"""save / load a model file, and describe one without a backend (``minidnn info``)."""
from __future__ import annotations

import json
import os

import numpy as np

from ..backend import NumpyBackend, get_backend
from ..backend.base import Backend
from ..errors import ConfigError, ModelFileError
from ..layers.base import Module
from ..layers.model import Model
from ..report import Column, counts_cell, format_columns, percent_cell, times_cell
from ..parameter import InitBudgetExceeded, init_budget
from ..text import printable
from .h5 import COMPRESSIONS, atomic_h5, seal
from .layout import FileContents, read_file, write_model
from .tensors import check_fits, install_param

BUILD_SLACK = 1 << 20   # weights a rebuilt model may have beyond the file's before it is refused
INFO_LINE = 300         # ``describe`` cuts each line (file strings) to this many characters
INFO_METADATA = 40      # ... and lists at most this many metadata entries


def values_dtype_of(values_dtype) -> np.dtype:
    """'float32' or 'float16' as a dtype (ConfigError otherwise)."""
    try:
        dt = np.dtype(values_dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ConfigError(f"values_dtype must be 'float32' or 'float16', got {values_dtype!r}")
    return dt


def compression_of(compression) -> str:
    """One of 'auto', 'gzip', 'lzf', 'none' (None means 'none')."""
    key = "none" if compression is None else str(compression).lower()
    if key not in COMPRESSIONS:
        raise ConfigError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    return key


def save(model: Model, path: str | os.PathLike, metadata: dict | None = None,
         values_dtype: str = "float32", compression: str = "auto") -> None:
    """Write ``model`` (architecture, weights in their smallest form, buffers, metadata) atomically.

    ``values_dtype='float16'`` halves the conv/linear weight values; see docs/format.md.
    """
    dtype, compression = values_dtype_of(values_dtype), compression_of(compression)
    with atomic_h5(path) as f:
        write_model(f, model, "model", metadata, dtype, exact=False, compression=compression)
        seal(f)


def build_from(contents: FileContents) -> Model:
    """A fresh zoo model of the file's architecture and config (ModelFileError if impossible)."""
    from ..models import MODELS, build_model
    if contents.arch.lower() not in MODELS:
        raise ModelFileError(f"{contents.path}: unknown architecture "
                             f"{printable(repr(contents.arch), 100)} "
                             f"(this minidnn knows {sorted(MODELS)})")
    budget = sum(r.numel for r in contents.params.values()) + BUILD_SLACK
    config = printable(json.dumps(contents.config, sort_keys=True), 200)
    try:
        with init_budget(budget):
            return build_model(contents.arch, **contents.config)
    except InitBudgetExceeded:
        raise ModelFileError(f"{contents.path}: config {config} describes a larger "
                             f"{contents.arch} than the file's weights") from None
    except Exception as exc:  # noqa: BLE001 - any constructor failure means a bad config
        raise ModelFileError(f"{contents.path}: cannot rebuild {contents.arch} from config "
                             f"{config}: {printable(exc, 200)}") from None


def check_model(model: Module, contents: FileContents) -> None:
    """ModelFileError unless the file has exactly the model's parameters and buffers."""
    path = contents.path
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for what, have, want in (("parameters", contents.params, params),
                             ("buffers", contents.buffers, buffers)):
        missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing or unexpected:
            raise ModelFileError(f"{path}: {what} do not match the model: missing {missing}, "
                                 f"unexpected {unexpected}")
    for name, p in params.items():
        check_fits(name, contents.params[name], p, path)
    for name, b in buffers.items():
        a = contents.buffers[name]
        if a.shape != tuple(b.shape) or (a.dtype.kind == "f") != (np.dtype(b.dtype).kind == "f"):
            raise ModelFileError(f"{path}: buffer {name!r} is {a.dtype}{a.shape} in the file but "
                                 f"{np.dtype(b.dtype)}{tuple(b.shape)} in the model")


def install(model: Module, contents: FileContents, backend: Backend) -> None:
    """Copy checked contents into ``model``: parameters in their saved form, then buffers."""
    for name, p in model.named_parameters():
        install_param(p, contents.params[name], backend)
    model.load_buffers(contents.buffers)
    if model.backend is None:
        model.to(backend)


def load(path: str | os.PathLike, backend: Backend | str | None = None) -> Model:
    """Rebuild the saved model on ``backend`` (default NumPy); ModelFileError for any bad file.

    The file's metadata dict is attached as ``model.metadata``.
    """
    contents = read_file(path)
    model = build_from(contents)
    check_model(model, contents)
    install(model, contents, NumpyBackend() if backend is None else get_backend(backend))
    model.metadata = dict(contents.metadata)
    return model


# ---------------------------------------------------------------------- reporting
def file_report(path: str | os.PathLike) -> dict:
    """Per-parameter NNZ/total/zeros/compression and bytes in the file vs dense float32."""
    c = read_file(path)
    check_model(build_from(c), c)  # what ``load`` refuses, ``info`` refuses too
    layers = []
    for name, r in c.params.items():
        form = "csr" if r.form == "csr" else ("dense+mask" if r.mask is not None else "dense")
        layers.append(dict(name=name, shape=r.shape, prox=r.prox, nnz=r.nnz, total=r.numel,
                           zeros=1 - r.nnz / r.numel if r.numel else 0.0,
                           compression=r.numel / r.nnz if r.nnz else float("inf"),
                           form=form, storage=r.storage, dtype=r.stored_dtype,
                           file_bytes=r.file_bytes))
    weights = [row for row in layers if row["prox"]]
    nnz, total = sum(r["nnz"] for r in weights), sum(r["total"] for r in weights)
    dense = 4 * (sum(r.numel for r in c.params.values())
                 + sum(b.size for b in c.buffers.values()))
    return dict(path=str(c.path), kind=c.kind, arch=c.arch, config=c.config,
                format_version=c.format_version, minidnn_version=c.minidnn_version,
                created=c.created, metadata=c.metadata, layers=layers,
                weights=dict(nnz=nnz, total=total, zeros=1 - nnz / total if total else 0.0,
                             compression=total / nnz if nnz else float("inf")),
                other_values=sum(r["total"] for r in layers if not r["prox"])
                + sum(b.size for b in c.buffers.values()),
                other_file_bytes=sum(r["file_bytes"] for r in layers if not r["prox"])
                + c.buffer_bytes,
                file_bytes=c.file_bytes, dense_bytes=dense,
                ratio=dense / c.file_bytes if c.file_bytes else 0.0,
                optimizer=c.optimizer, step_count=c.step_count, extra=c.extra,
                optimizer_state=sorted(c.optimizer_state))


FILE_COLUMNS = (
    Column("layer", 28, lambda row: row["name"], "<"),
    Column("shape", 14, lambda row: "x".join(map(str, row["shape"]))),
    Column("nnz/total", 22, lambda row: counts_cell(row["nnz"], row["total"])),
    Column("zeros", 8, lambda row: percent_cell(row["zeros"])),
    Column("x", 8, lambda row: times_cell(row["compression"])),
    Column("in memory", 10, lambda row: row["form"]),
    Column("stored", 10, lambda row: f"{row['storage']} f{row['dtype'][-2:]}"),
    Column("file KiB", 9, lambda row: f"{row['file_bytes'] / 1024:,.1f}"))


def describe(path: str | os.PathLike) -> str:
    """A human-readable summary: architecture, per-layer sparsity table, sizes, metadata.

    Strings from the file are printed with control characters escaped, each line cut to
    ``INFO_LINE`` characters and the metadata to ``INFO_METADATA`` entries."""
    r = file_report(path)
    kib = lambda n: f"{n / 1024:,.1f}"  # noqa: E731
    lines = [f"minidnn {r['kind']} file {r['path']}",
             f"  format {r['format_version']}, written by minidnn {r['minidnn_version']} on "
             f"{r['created']}",
             f"architecture: {r['arch']} {json.dumps(r['config'], sort_keys=True)}", ""]
    total = {**r["weights"], "name": "weights (conv/linear)", "shape": ()}
    lines += [*format_columns(FILE_COLUMNS, [row for row in r["layers"] if row["prox"]], total,
                              total_columns=5).splitlines(),
              f"other parameters and buffers (biases, BN): {r['other_values']:,} values, "
              f"{kib(r['other_file_bytes'])} KiB in the file", "",
              f"file size {r['file_bytes']:,} bytes ({kib(r['file_bytes'])} KiB); dense float32 "
              f"equivalent {r['dense_bytes']:,} bytes ({kib(r['dense_bytes'])} KiB): "
              f"{r['ratio']:.1f}x smaller"]
    if r["kind"] == "checkpoint":
        lines.append(f"checkpoint: {r['optimizer']} at step {r['step_count']:,}, optimizer state "
                     f"for {len(r['optimizer_state'])} parameter(s)"
                     + (f", extra {json.dumps(r['extra'], sort_keys=True)}" if r["extra"] else ""))
    if r["metadata"]:
        items = sorted(r["metadata"].items())
        lines.append("metadata:")
        lines += [f"  {k}: {json.dumps(v)}" for k, v in items[:INFO_METADATA]]
        if len(items) > INFO_METADATA:
            lines.append(f"  ... ({len(items) - INFO_METADATA} more entries)")
    return "\n".join(printable(line, INFO_LINE) for line in lines)
