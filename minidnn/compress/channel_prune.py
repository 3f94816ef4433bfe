"""Channel pruning end to end on a model in memory: score, remove, recalibrate, fine-tune, and
the figures measured against the model before pruning (``minidnn prune-channels`` and the
'chnb'/'chl1' methods both run this)."""
from __future__ import annotations

from dataclasses import dataclass

from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.base import Module
from ..report import compression_figures
from ..train import Trainer
from ..train_config import Log, TrainConfig
from .channel_scores import channel_scores
from .channels import SCORES, keep_counts, keep_indices, prunable_groups, prune_channels


@dataclass
class ChannelPruneSettings:
    """What to remove and how: ``ratio`` of every prunable layer's channels (``per_layer``:
    {layer: ratio} overrides), by ``score`` ('nb' or 'l1'); ``samples`` calibration images
    for 'nb'; ``bn_batches`` training batches to re-estimate batch norm after the cut."""

    ratio: float | None = None
    per_layer: dict | None = None
    score: str = "nb"
    samples: int = 1024
    bn_batches: int = 20
    seed: int = 0


def weight_sizes(model: Module) -> dict[str, int]:
    """{weight name: values}: the conv/linear weights' sizes (to compare before and after)."""
    return {n: p.numel for n, p in model.prox_parameters()}


def relative_figures(model: Module, before: dict[str, int]) -> dict:
    """``compression_figures`` with each layer's removed weights counted as zeros of its size
    ``before`` pruning: 'weights' is the original count, 'nnz' the nonzeros kept, so
    'compression' is original weights / kept nonzeros, as for the zeroing methods."""
    fig = compression_figures(model)
    for row in fig["layers"]:
        row["total"] = before.get(row["param"], row["total"])
        row["zeros"] = 1 - row["nnz"] / row["total"] if row["total"] else 0.0
        row["compression"] = row["total"] / row["nnz"] if row["nnz"] else float("inf")
    total = sum(before.values())
    fig.update(weights=total, zeros=1 - fig["nnz"] / total if total else 0.0,
               compression=total / fig["nnz"] if fig["nnz"] else float("inf"),
               kept_weights=sum(p.numel for _, p in model.prox_parameters()))
    return fig


def prune_model_channels(model: Module, settings: ChannelPruneSettings,
                         train_ds: ArrayDataset | None = None, batch_size: int = 128,
                         log: Log = print) -> dict:
    """Score and remove channels of ``model`` in place, then re-estimate batch norm on
    ``train_ds`` (when given); returns {layer: [before, after]} and the scores' summary."""
    groups = prunable_groups(model)
    if not groups:
        raise ConfigError(f"{type(model).__name__} has no prunable channels")
    counts = keep_counts(groups, settings.ratio, settings.per_layer)
    if settings.score not in SCORES:
        raise ConfigError(f"unknown channel score {settings.score!r}: choose {' or '.join(SCORES)}")
    scores = channel_scores(model, groups, settings.score, train_ds, settings.samples,
                            settings.seed)
    keep = {g.name: keep_indices(s, counts[g.name]) for g, s in zip(groups, scores)}
    widths = prune_channels(model, keep, groups)
    log("channels kept: " + "  ".join(f"{g.label} {widths[g.name][1]}/{widths[g.name][0]}"
                                      for g in groups))
    if train_ds is not None and settings.bn_batches:
        Trainer(model).recalibrate_batchnorm(train_ds, settings.bn_batches, batch_size,
                                             settings.seed)
    return {"widths": {g.label: list(widths[g.name]) for g in groups},
            "kept": {g.label: keep[g.name].tolist() for g in groups}}


def finetune(model: Module, train_ds: ArrayDataset, test_ds: ArrayDataset | None, steps: int,
             config: TrainConfig, lr: float | None = None, bn_batches: int = 20,
             log: Log = print, minutes: float | None = None):
    """``steps`` of plain training (no l1, nothing held at zero) of the pruned model, or fewer
    when ``minutes`` of training run out; then batch norm re-estimated. Returns (history,
    steps done)."""
    opt = config.make_optimizer(model, steps, lam=0.0, lr=lr)
    trainer = Trainer(model, opt)
    history = config.fit(trainer, train_ds, test_ds, steps, seed_offset=7, log=log,
                         max_seconds=None if minutes is None else 60 * minutes)
    trainer.recalibrate_batchnorm(train_ds, bn_batches, config.batch_size, config.seed)
    return history, opt.step_count
