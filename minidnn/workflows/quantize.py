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
from ..compress.quantize import QuantizedLayer
from ..compress.quantize_stage import QuantizeSettings, quantize_stage
from ..errors import ConfigError
from ..io import load, save
from ..layers.model import Model
from ..models import default_data
from ..outputs import check_outputs, write_or_rescue
from ..train_config import Log
from .common import check_input_shape


def save_quantized(model: Model, records: list[QuantizedLayer], path: str | os.PathLike,
                   metadata: dict, bias_dtype: str = "float16") -> int:
    """Save as a quantized file (creating the folder); returns its size in bytes. If that
    write fails, the model is saved in the temp folder and FileWriteError says where."""
    def write(target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        save(model, target, metadata=metadata, quantized=records, bias_dtype=bias_dtype)
    return os.path.getsize(write_or_rescue(write, path, "model"))


# what a quantized file keeps of its source's metadata: the recipe, not every figure (a
# trained file's metadata is ~700 B, 7% of a 10 KB LeNet-5; the source file keeps it all)
KEPT_METADATA = ("model", "data", "method", "lam", "lam_per_layer", "steps", "retrain_steps",
                 "seed")
DROPPED_FIGURES = ("codebook_sizes",)   # the file itself holds them (minidnn info)


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
    if (spec.settings.finetune_steps or spec.settings.retrain_steps) and spec.data is None:
        raise ConfigError("--finetune-steps and --retrain-steps need training data: give "
                          "--data (e.g. mnist)")
    backend = resolve_backend(spec.backend, spec.device)
    model = load(spec.input, backend=backend)
    spec.settings.check(model)
    train_ds = test_ds = None
    if spec.data is not None:
        train_ds, test_ds = datasets.load_dataset(spec.data or default_data(model),
                                                  spec.data_root)
        check_input_shape(model, train_ds)
    log(f"minidnn quantize: {spec.input} ({model.arch}) on {backend.device_name}")
    source = getattr(model, "metadata", {})
    kept = {**{k: source.get(k) for k in KEPT_METADATA}, "quantized_from": Path(spec.input).name}
    records, figures = quantize_stage(model, spec.settings, train_ds, test_ds, log,
                                      metadata={k: v for k, v in kept.items() if v is not None})
    metadata = {k: v for k, v in {**kept, **figures}.items()
                if v is not None and k not in DROPPED_FIGURES}
    size = save_quantized(model, records, spec.out, metadata, spec.settings.bias_dtype)
    figures.update(file=str(spec.out), file_bytes=size)
    log(f"saved {spec.out}: {size:,} bytes")
    if spec.json:
        Path(spec.json).parent.mkdir(parents=True, exist_ok=True)
        Path(spec.json).write_text(json.dumps(figures, indent=2))
    return figures
