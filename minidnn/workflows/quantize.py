"""The quantize workflow (``minidnn quantize``, and the last stage of ``minidnn train``): share
the nonzero weights of every layer (k-means or DP), optionally fine-tune the shared values,
and save the model as a quantized file (format version 3)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import data as datasets  # looked up at call time (tests substitute load_dataset)
from ..backend import resolve_backend
from ..compress.measure import evaluate
from ..compress.quantize import (METHODS, QuantizedLayer, finetune_codebooks, layer_bits,
                                 quantize_model)
from ..data import ArrayDataset
from ..errors import ConfigError
from ..io import load, save
from ..layers.model import Model
from ..models import default_data
from ..names import parse_layer_spec
from ..outputs import check_outputs, write_or_rescue
from ..train_config import Log
from .common import check_input_shape


@dataclass
class QuantizeSettings:
    """How to quantize: bits (per layer overrides), quantizer, centroid fine-tuning."""

    bits: int = 5
    per_layer: str | dict | None = None   # 'conv1=8,fc2=6' or {'conv1': 8}
    method: str = "kmeans"                 # 'kmeans' or 'dp'
    finetune_steps: int = 0
    finetune_lr: float = 1e-4
    batch_size: int = 128
    seed: int = 0
    bias_dtype: str = "float16"            # biases and other unquantized parameters

    def check(self, model: Model | None = None) -> None:
        """ConfigError for an unknown method or bits outside 1..16 (per layer too, by name
        when ``model`` is given), before any work."""
        if self.method not in METHODS:
            raise ConfigError(f"unknown quantization method {self.method!r}: choose from "
                              f"{METHODS}")
        per = self.per_layer if isinstance(self.per_layer, dict) \
            else parse_layer_spec(self.per_layer, int)
        if model is not None:
            layer_bits(model, self.bits, per)
        if self.bias_dtype not in ("float16", "float32"):
            raise ConfigError(f"bias dtype must be float16 or float32, got {self.bias_dtype!r}")


def quantize_stage(model: Model, q: QuantizeSettings, train_ds: ArrayDataset | None,
                   test_ds: ArrayDataset | None, log: Log = print
                   ) -> tuple[list[QuantizedLayer], dict]:
    """Quantize ``model`` in place and fine-tune its codebooks (needs ``train_ds`` when
    ``q.finetune_steps``); returns the records and the figures (accuracies when ``test_ds``)."""
    q.check(model)
    per = q.per_layer if isinstance(q.per_layer, dict) else parse_layer_spec(q.per_layer, int)
    figures: dict = {"quantize_bits": q.bits, "quantize_per_layer": q.per_layer or None,
                     "quantize_method": q.method, "finetune_steps": q.finetune_steps}
    if test_ds is not None:
        figures["accuracy_float"] = evaluate(model, test_ds)["accuracy"]
    records = quantize_model(model, q.bits, per, q.method)
    if test_ds is not None:
        figures["accuracy_quantized"] = evaluate(model, test_ds)["accuracy"]
        log(f"quantized ({q.method}, {q.bits} bits{', ' + str(q.per_layer) if per else ''}): "
            f"test accuracy {100 * figures['accuracy_float']:.2f}% -> "
            f"{100 * figures['accuracy_quantized']:.2f}%")
    if q.finetune_steps:
        if train_ds is None:
            raise ConfigError("fine-tuning the codebooks needs training data (--data)")
        records, _ = finetune_codebooks(model, records, train_ds, q.finetune_steps,
                                        q.finetune_lr, q.batch_size, q.seed, log=log,
                                        test_ds=None)
    if test_ds is not None:
        figures["accuracy"] = evaluate(model, test_ds)["accuracy"]
        log(f"after {q.finetune_steps} fine-tuning steps: test accuracy "
            f"{100 * figures['accuracy']:.2f}%")
    figures["codebook_sizes"] = {r.label: r.k for r in records}
    return records, figures


def save_quantized(model: Model, records: list[QuantizedLayer], path: str | os.PathLike,
                   metadata: dict, bias_dtype: str = "float16") -> int:
    """Save as a quantized file (creating the folder); returns its size in bytes. If that
    write fails, the model is saved in the temp folder and FileWriteError says where."""
    def write(target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        save(model, target, metadata=metadata, quantized=records, bias_dtype=bias_dtype)
    return os.path.getsize(write_or_rescue(write, path, "model"))


@dataclass
class QuantizeSpec:
    """``minidnn quantize IN --out OUT``: the input file, settings, data and outputs."""

    input: str
    out: str
    settings: QuantizeSettings
    data: str | None = None            # evaluate (and fine-tune) on it; None: no data
    data_root: str | None = None
    backend: str = "auto"
    device: str | None = None
    json: str | None = None


def quantize_file(spec: QuantizeSpec, log: Log = print) -> dict:
    """Load ``spec.input``, quantize (and fine-tune), save ``spec.out``; the figures.
    Outputs and settings are checked before the model is loaded."""
    check_outputs({"--out": spec.out, "--json": spec.json})
    spec.settings.check()
    if spec.settings.finetune_steps and spec.data is None:
        raise ConfigError("--finetune-steps needs training data: give --data (e.g. mnist)")
    backend = resolve_backend(spec.backend, spec.device)
    model = load(spec.input, backend=backend)
    spec.settings.check(model)
    train_ds = test_ds = None
    if spec.data is not None:
        train_ds, test_ds = datasets.load_dataset(spec.data or default_data(model),
                                                  spec.data_root)
        check_input_shape(model, train_ds)
    log(f"minidnn quantize: {spec.input} ({model.arch}) on {backend.device_name}")
    records, figures = quantize_stage(model, spec.settings, train_ds, test_ds, log)
    metadata = {**getattr(model, "metadata", {}), **figures, "quantized_from": str(spec.input)}
    size = save_quantized(model, records, spec.out, metadata, spec.settings.bias_dtype)
    figures.update(file=str(spec.out), file_bytes=size)
    log(f"saved {spec.out}: {size:,} bytes")
    if spec.json:
        Path(spec.json).parent.mkdir(parents=True, exist_ok=True)
        Path(spec.json).write_text(json.dumps(figures, indent=2))
    return figures
