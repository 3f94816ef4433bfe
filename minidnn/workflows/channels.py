"""``minidnn prune-channels``: a saved model in, the same network with fewer channels out
(smaller dense layers; optionally fine-tuned), with accuracy, weights, FLOPs and file size
measured before and after."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import data as datasets  # looked up at call time (tests substitute load_dataset)
from ..backend import resolve_backend
from ..compress.channel_prune import (ChannelPruneSettings, finetune, prune_model_channels,
                                      relative_figures, weight_sizes)
from ..compress.flops import format_costs, layer_costs, total_cost
from ..compress.measure import evaluate
from ..data import ArrayDataset
from ..io import load
from ..layers.model import Model
from ..models import MODELS, default_data
from ..outputs import check_outputs
from ..train_config import Log, TrainConfig
from .common import check_input_shape, save_model_file


@dataclass
class ChannelPruneSpec:
    """The input file, what to prune (``settings``), fine-tuning, data, device and outputs."""

    path: str
    settings: ChannelPruneSettings = field(default_factory=ChannelPruneSettings)
    finetune_steps: int = 0
    finetune_lr: float | None = None     # default: the model recipe's lr
    finetune_minutes: float | None = None  # time budget of fine-tuning (steps: the cap)
    data: str | None = None              # default: the model's (recipe, else input shape)
    data_root: str | None = None
    backend: str = "auto"
    device: str | None = None
    batch_size: int | None = None        # default: the recipe's
    eval_images: int | None = None       # evaluate on the first N test images (default all)
    out: str | None = None               # default: IN-ch<score>.h5 next to IN
    json: str | None = None


def out_path(spec: ChannelPruneSpec) -> Path:
    """``spec.out``, else the input's name with '-ch<score>' added."""
    p = Path(spec.path)
    return Path(spec.out) if spec.out else p.with_name(f"{p.stem}-ch{spec.settings.score}.h5")


def train_settings(model: Model, spec: ChannelPruneSpec) -> TrainConfig:
    """The zoo recipe's training settings for the file's architecture (plain defaults for
    other models); fine-tuning uses the recipe's lr unless told otherwise."""
    given = {"batch_size": spec.batch_size, "seed": spec.settings.seed, "log_every": 200}
    config = TrainConfig.for_model(model.arch, **given) if model.arch in MODELS \
        else TrainConfig(**{k: v for k, v in given.items() if v is not None})
    return config


def first_images(ds: ArrayDataset, n: int | None) -> ArrayDataset:
    """The first ``n`` images of ``ds`` (all of them when ``n`` is None or larger)."""
    if n is None or n >= len(ds):
        return ds
    return ArrayDataset(ds.images[:n], ds.labels[:n], f"{ds.name}[:{n}]", ds.classes, ds.mean,
                        ds.std, ds.source)


def _figures(model: Model, test_ds, before: dict) -> dict:
    result = evaluate(model, test_ds)
    cost = total_cost(layer_costs(model))
    return {"accuracy": result["accuracy"], "loss": result["loss"],
            **relative_figures(model, before), "macs": cost.macs, "flops": cost.flops}


def prune_channels_file(spec: ChannelPruneSpec, log: Log = print) -> dict:
    """Load ``spec.path``, remove channels, optionally fine-tune, save; the result record."""
    out = out_path(spec)
    check_outputs({"--out": out, "--json": spec.json})
    backend = resolve_backend(spec.backend, spec.device)
    model = load(spec.path, backend)
    data = spec.data or default_data(model)
    train_ds, test_ds = datasets.load_dataset(data, spec.data_root)
    check_input_shape(model, train_ds)
    test_ds = first_images(test_ds, spec.eval_images)
    config = train_settings(model, spec)
    before = weight_sizes(model)
    dense = _figures(model, test_ds, before)
    log(f"minidnn prune-channels: {spec.path} ({model.arch}) on {data} ({len(test_ds)} test "
        f"images), "
        f"{backend.device_name}: dense accuracy {100 * dense['accuracy']:.2f}%, "
        f"{dense['weights']:,} weights, {dense['flops'] / 1e6:.2f} MFLOPs")
    t0 = time.perf_counter()
    cut = prune_model_channels(model, spec.settings, train_ds, config.batch_size, log)
    pruned = _figures(model, test_ds, before)
    log(f"pruned ({spec.settings.score}): accuracy {100 * pruned['accuracy']:.2f}%, "
        f"{pruned['kept_weights']:,} weights, {pruned['flops'] / 1e6:.2f} MFLOPs")
    record = {"method": f"ch{spec.settings.score}", "model": model.arch, "data": data,
              "input": str(spec.path), "score": spec.settings.score,
              "test_images": len(test_ds),
              "ratio": spec.settings.ratio, "per_layer": spec.settings.per_layer or {},
              **cut, "dense": dense, "pruned": pruned}
    if spec.finetune_steps:
        lr = spec.finetune_lr or config.lr
        log(f"fine-tuning {spec.finetune_steps} steps, {config.optimizer} lr {lr:g}")
        hist, done = finetune(model, train_ds, test_ds, spec.finetune_steps, config, lr,
                        spec.settings.bn_batches, log, spec.finetune_minutes)
        record.update(finetune_steps=done, finetune_lr=lr,
                      finetune_seconds=hist.seconds)
    final = _figures(model, test_ds, before)
    record.update(final, seconds=time.perf_counter() - t0)
    log(format_costs(layer_costs(model)))
    record["file_bytes"] = save_model_file(model, out, record)
    record["file"] = str(out)
    log(f"accuracy {100 * final['accuracy']:.2f}% (dense {100 * dense['accuracy']:.2f}%), "
        f"weights {dense['weights'] / final['kept_weights']:.2f}x fewer, FLOPs "
        f"{dense['flops'] / final['flops']:.2f}x fewer; saved {out} "
        f"({record['file_bytes']:,} bytes)")
    if spec.json:
        Path(spec.json).parent.mkdir(parents=True, exist_ok=True)
        Path(spec.json).write_text(json.dumps(record, indent=1, default=str))
    return record
