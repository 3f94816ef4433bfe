"""save / load a model file, and describe one without a backend (``minidnn info``)."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..backend import NumpyBackend, get_backend
from ..backend.base import Backend
from ..errors import ConfigError, ModelFileError
from ..layers.base import Module
from ..layers.model import Model
from ..layers.registry import TensorShape
from ..parameter import InitBudgetExceeded, init_budget
from ..report import Column, counts_cell, format_columns, percent_cell, times_cell
from ..text import printable
from .architecture import build_from_record, expected_tensors, format_architecture
from .h5 import COMPRESSIONS, atomic_h5, seal
from .layout import FileContents, read_file, write_model
from .quantized import records_by_name
from .tensors import install_param

if TYPE_CHECKING:
    from ..compress.quantize import QuantizedLayer

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
         values_dtype: str = "float32", compression: str = "auto",
         architecture: bool = True, quantized: Iterable[QuantizedLayer] | None = None,
         bias_dtype: str = "float32", format_version: int | None = None) -> None:
    """Write ``model`` (architecture, weights in their smallest form, buffers, metadata) atomically.

    The file records the module tree, so ``load`` rebuilds the network without its class; a
    model that cannot be described that way (a ``forward`` of its own, a layer type minidnn
    does not have) is refused, unless ``architecture=False``: then only the weights are saved,
    and the file loads into an instance, ``load(path, model=...)``. ``values_dtype='float16'``
    halves the conv/linear weight values, ``bias_dtype='float16'`` the other parameters
    (biases, batch-norm weights); see docs/format.md.

    ``quantized``: the records of ``quantize_model`` (one per conv/linear weight, matching the
    weights exactly) write format version 3, each weight as its entropy-coded codebook,
    assignments and relative indices (``values_dtype`` then does not apply). A model loaded
    from such a file carries them as ``model.quantized``. A quantized model is written as
    format version 4 (one packed record, the smallest container) unless ``format_version=3``.
    """
    if format_version not in (None, 3, 4) or (format_version is not None and quantized is None):
        raise ConfigError(f"format_version: None, or 3 or 4 for a quantized model, got "
                          f"{format_version!r}")
    dtype, compression = values_dtype_of(values_dtype), compression_of(compression)
    other = values_dtype_of(bias_dtype)
    records = None if quantized is None else records_by_name(model, quantized)
    with atomic_h5(path) as f:
        write_model(f, model, "model", metadata, dtype, exact=False, compression=compression,
                    architecture="require" if architecture else "skip", quantized=records,
                    other_dtype=other, version=format_version or 4)
        seal(f)


def _build_budget(contents: FileContents) -> int:
    """Weights a model rebuilt from the file may initialise: the file's own, plus BUILD_SLACK."""
    return sum(r.numel for r in contents.params.values()) + BUILD_SLACK


def _zoo_model(contents: FileContents) -> Model:
    from ..models import MODELS, build_model
    if contents.arch not in MODELS:
        hint = ("; a version 1 file records only zoo models by name: load it into its class "
                "with minidnn.load(path, model=YourNet(...)) and save it again to make it "
                "loadable anywhere" if contents.architecture is None else "")
        raise ModelFileError(f"{contents.path}: unknown architecture "
                             f"{printable(repr(contents.arch), 100)} "
                             f"(this minidnn knows {sorted(MODELS)}){hint}")
    config = printable(json.dumps(contents.config, sort_keys=True), 200)
    try:
        with init_budget(_build_budget(contents)):
            return build_model(contents.arch, **contents.config)
    except InitBudgetExceeded:
        raise ModelFileError(f"{contents.path}: config {config} describes a larger "
                             f"{contents.arch} than the file's weights") from None
    except Exception as exc:  # noqa: BLE001 - any constructor failure means a bad config
        raise ModelFileError(f"{contents.path}: cannot rebuild {contents.arch} from config "
                             f"{config}: {printable(exc, 200)}") from None


def build_from(contents: FileContents) -> Model:
    """A fresh model of the file's architecture: a zoo model by name, else one built from the
    file's architecture record after its tensors' shapes were checked against the file's."""
    record = contents.architecture
    if record is None or record["zoo"]:
        return _zoo_model(contents)
    if record["module"] is None:
        raise ModelFileError(f"{contents.path}: holds the weights of {contents.arch} but not its "
                             f"architecture (saved with architecture=False): load it into an "
                             f"instance, minidnn.load(path, model={contents.arch}(...))")
    where = f"{contents.path}: architecture"
    check_tensors(contents, *expected_tensors(record, where), "its architecture record")
    try:
        with init_budget(_build_budget(contents)):
            model = build_from_record(record, where)
    except InitBudgetExceeded:
        raise ModelFileError(f"{where} describes more weights than the file holds") from None
    object.__setattr__(model, "arch", contents.arch)
    object.__setattr__(model, "config", dict(contents.config))
    return model


def model_tensors(model: Module) -> tuple[dict[str, TensorShape], dict[str, TensorShape]]:
    """(parameters, buffers) of ``model`` by dotted name, in the form ``check_tensors`` takes."""
    params = {n: TensorShape(p.shape, p.groups, p.prox) for n, p in model.named_parameters()}
    buffers = {n: TensorShape(tuple(b.shape), floating=np.dtype(b.dtype).kind == "f")
               for n, b in model.named_buffers()}
    return params, buffers


def _few(names: list[str], limit: int = 8) -> str:
    shown = repr(names[:limit])
    return shown if len(names) <= limit else f"{shown[:-1]}, ... ({len(names) - limit} more)]"


def tensor_mismatches(contents: FileContents, params: dict[str, TensorShape],
                      buffers: dict[str, TensorShape]) -> list[str]:
    """Every difference between the file's tensors and the expected ones (names, shapes, groups,
    prox, float or integer buffers), one phrase each."""
    problems = []
    for what, have, want in (("parameters", contents.params, params),
                             ("buffers", contents.buffers, buffers)):
        missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing or unexpected:
            problems.append(f"{what} missing {_few(missing)}, unexpected {_few(unexpected)}")
    for name in [n for n in params if n in contents.params]:
        rec, spec = contents.params[name], params[name]
        if rec.shape != spec.shape:
            problems.append(f"parameter {name!r} has shape {rec.shape} in the file but "
                            f"{spec.shape} in the model")
        elif rec.groups != spec.groups or rec.prox != spec.prox:
            problems.append(f"parameter {name!r} has groups={rec.groups} prox={rec.prox} in the "
                            f"file but groups={spec.groups} prox={spec.prox} in the model")
    for name in [n for n in buffers if n in contents.buffers]:
        a, spec = contents.buffers[name], buffers[name]
        if a.shape != spec.shape or (a.dtype.kind == "f") != spec.floating:
            kind = lambda f: "float" if f else "integer"  # noqa: E731
            problems.append(f"buffer {name!r} is {kind(a.dtype.kind == 'f')} {a.shape} in the "
                            f"file but {kind(spec.floating)} {spec.shape} in the model")
    return problems


def check_tensors(contents: FileContents, params: dict[str, TensorShape],
                  buffers: dict[str, TensorShape], what: str) -> None:
    """ModelFileError, in one line listing every mismatch, unless the file's parameters and
    buffers are exactly ``params`` and ``buffers``."""
    problems = tensor_mismatches(contents, params, buffers)
    if problems:
        shown = problems[:8] + ([f"and {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise ModelFileError(f"{contents.path}: the file does not fit {what}: "
                             + "; ".join(shown))


def check_model(model: Module, contents: FileContents) -> None:
    """ModelFileError unless the file has exactly the model's parameters and buffers."""
    check_tensors(contents, *model_tensors(model), f"the model ({type(model).__name__})")


def install(model: Module, contents: FileContents, backend: Backend) -> None:
    """Copy checked contents into ``model``: parameters in their saved form, then buffers."""
    for name, p in model.named_parameters():
        install_param(p, contents.params[name], backend)
    model.load_buffers(contents.buffers)
    if model.backend is None:
        model.to(backend)


def load(path: str | os.PathLike, backend: Backend | str | None = None,
         model: Module | None = None) -> Model:
    """The saved model on ``backend``; ModelFileError for any bad file.

    Without ``model``, the network is rebuilt from the file alone (a zoo model by name, any
    other from its architecture record; default backend NumPy). With ``model`` (an instance of
    your class), the file's weights fill it after every name and shape was checked (default
    backend: the model's own); the same object is returned. The file's metadata dict is
    attached as ``model.metadata``.
    """
    contents = read_file(path)
    if model is None:
        model = build_from(contents)
    if backend is not None:
        target = get_backend(backend)
    else:
        target = model.backend if model.backend is not None else NumpyBackend()
    check_model(model, contents)
    if model.backend is not None and model.backend is not target:
        model.to(target)
    install(model, contents, target)
    model.metadata = dict(contents.metadata)
    quantized = [r.quantized["record"] for r in contents.params.values() if r.quantized]
    model.quantized = quantized or None
    return model


# ---------------------------------------------------------------------- reporting
def file_report(path: str | os.PathLike) -> dict:
    """Per-parameter NNZ/total/zeros/compression and bytes in the file vs dense float32."""
    c = read_file(path)
    weights_only = c.architecture is not None and not c.architecture["zoo"] \
        and c.architecture["module"] is None
    if not weights_only:  # a file load would refuse, info refuses too
        check_model(build_from(c), c)
    layers = []
    for name, r in c.params.items():
        form = r.form if r.form != "dense" else ("dense+mask" if r.mask is not None else "dense")
        layers.append(dict(name=name, shape=r.shape, prox=r.prox, nnz=r.nnz, total=r.numel,
                           zeros=1 - r.nnz / r.numel if r.numel else 0.0,
                           compression=r.numel / r.nnz if r.nnz else float("inf"),
                           form=form, storage=r.storage, dtype=r.stored_dtype,
                           file_bytes=r.file_bytes, quantized=_quant_row(r)))
    weights = [row for row in layers if row["prox"]]
    nnz, total = sum(r["nnz"] for r in weights), sum(r["total"] for r in weights)
    dense = 4 * (sum(r.numel for r in c.params.values())
                 + sum(b.size for b in c.buffers.values()))
    return dict(path=str(c.path), kind=c.kind, arch=c.arch, config=c.config,
                architecture=c.architecture, rebuilt_from=rebuilt_from(c),
                format_version=c.format_version, minidnn_version=c.minidnn_version,
                created=c.created, metadata=c.metadata, layers=layers,
                weights=dict(nnz=nnz, total=total, zeros=1 - nnz / total if total else 0.0,
                             compression=total / nnz if nnz else float("inf")),
                other_values=sum(r["total"] for r in layers if not r["prox"])
                + sum(b.size for b in c.buffers.values()),
                other_file_bytes=sum(r["file_bytes"] for r in layers if not r["prox"])
                + c.buffer_bytes,
                file_bytes=c.file_bytes, dense_bytes=dense, other_buffer_bytes=c.buffer_bytes,
                ratio=dense / c.file_bytes if c.file_bytes else 0.0,
                optimizer=c.optimizer, step_count=c.step_count, extra=c.extra,
                optimizer_state=sorted(c.optimizer_state))


def _quant_row(r) -> dict | None:
    """bits, codebook size, bits per value / per index and bytes of a quantized layer."""
    q = r.quantized
    if not q:
        return None
    per = lambda n: 8 * n / r.nnz if r.nnz else 0.0  # noqa: E731
    return dict(bits=q["bits"], k=q["k"], index_bits=q["index_bits"], compact=q["compact"],
                bits_per_value=per(q["values_bytes"]), bits_per_index=per(q["indices_bytes"]),
                codebook_bytes=q["codebook_bytes"], bytes=r.file_bytes)


QUANT_COLUMNS = (
    Column("quantized layer", 28, lambda row: row["name"], "<"),
    Column("bits", 5, lambda row: str(row["quantized"]["bits"])),
    Column("k", 6, lambda row: str(row["quantized"]["k"])),
    Column("bits/value", 11, lambda row: f"{row['quantized']['bits_per_value']:.2f}"),
    Column("bits/index", 11, lambda row: f"{row['quantized']['bits_per_index']:.2f}"),
    Column("codebook B", 11, lambda row: f"{row['quantized']['codebook_bytes']:,}"),
    Column("bytes", 9, lambda row: f"{row['quantized']['bytes']:,}"))


FILE_COLUMNS = (
    Column("layer", 28, lambda row: row["name"], "<"),
    Column("shape", 14, lambda row: "x".join(map(str, row["shape"]))),
    Column("nnz/total", 22, lambda row: counts_cell(row["nnz"], row["total"])),
    Column("zeros", 8, lambda row: percent_cell(row["zeros"])),
    Column("x", 8, lambda row: times_cell(row["compression"])),
    Column("in memory", 10, lambda row: row["form"]),
    Column("stored", 12, lambda row: f"{row['storage']} "
           f"{ {'float32': 'f32', 'float16': 'f16'}.get(row['dtype'], row['dtype'])}"),
    Column("file KiB", 9, lambda row: f"{row['file_bytes'] / 1024:,.1f}"))


def _quant_lines(r: dict) -> list[str]:
    """The quantized-layer table of ``describe`` (nothing for an unquantized file), with the
    HDF5 container's share: file bytes beyond the bytes of every parameter and buffer."""
    rows = [row for row in r["layers"] if row["quantized"]]
    if not rows:
        return []
    payload = sum(row["file_bytes"] for row in r["layers"]) + r["other_buffer_bytes"]
    return [*format_columns(QUANT_COLUMNS, rows).splitlines(),
            f"payload {payload:,} bytes; HDF5 container and header "
            f"{r['file_bytes'] - payload:,} bytes", ""]


def rebuilt_from(c: FileContents) -> str:
    """How ``load`` rebuilds the file's network, in words."""
    record = c.architecture
    if record is None:
        return "by its zoo name (format version 1)"
    if record["zoo"]:
        return "by its zoo name"
    if record["module"] is None:
        return "only into an instance of its class (weights only: load(path, model=...))"
    return "from the module tree in the file:"


def describe(path: str | os.PathLike) -> str:
    """A human-readable summary: architecture, per-layer sparsity table, sizes, metadata.

    Strings from the file are printed with control characters escaped, each line cut to
    ``INFO_LINE`` characters and the metadata to ``INFO_METADATA`` entries."""
    r = file_report(path)
    kib = lambda n: f"{n / 1024:,.1f}"  # noqa: E731
    lines = [f"minidnn {r['kind']} file {r['path']}",
             f"  format {r['format_version']}, written by minidnn {r['minidnn_version']} on "
             f"{r['created']}",
             f"architecture: {r['arch']} {json.dumps(r['config'], sort_keys=True)}, "
             f"rebuilt {r['rebuilt_from']}"]
    if r["architecture"] is not None and r["architecture"]["module"] is not None \
            and not r["architecture"]["zoo"]:
        lines += format_architecture(r["architecture"])
    lines.append("")
    total = {**r["weights"], "name": "weights (conv/linear)", "shape": ()}
    lines += [*format_columns(FILE_COLUMNS, [row for row in r["layers"] if row["prox"]], total,
                              total_columns=5).splitlines(),
              f"other parameters and buffers (biases, BN): {r['other_values']:,} values, "
              f"{kib(r['other_file_bytes'])} KiB in the file", "",
              *_quant_lines(r),
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
