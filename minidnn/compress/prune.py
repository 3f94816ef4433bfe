"""Pru (Han et al. 2015): magnitude pruning of a trained dense model, then retraining the survivors.

The pruning decision is made once per round on the host (one copy of each weight back); the
retraining runs on the device with the mask fixed (``debias.retrain``).
"""
from __future__ import annotations

import numpy as np

from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.base import Module
from .debias import retrain
from ..names import per_layer, short_name
from ..report import compression_figures, layer_line
from ..train_config import Log, TrainConfig
from .measure import evaluate


def magnitude_mask(w: np.ndarray, sparsity: float | None = None,
                   quality: float | None = None) -> np.ndarray:
    """0/1 mask zeroing exactly round(s * size) smallest |w| (ties: lower flat index first) for
    ``sparsity`` s, or |w| < q * std of the nonzero w for ``quality`` q."""
    if (sparsity is None) == (quality is None):
        raise ConfigError("give exactly one of sparsity or quality")
    a = np.abs(np.asarray(w, np.float64)).ravel()
    keep = np.ones(a.size, np.float32)
    if sparsity is not None:
        if not 0.0 <= sparsity <= 1.0:
            raise ConfigError(f"sparsity must be in [0, 1], got {sparsity}")
        k = int(round(sparsity * a.size))
        keep[np.argsort(a, kind="stable")[:k]] = 0.0
    else:
        if quality < 0:
            raise ConfigError(f"quality must be >= 0, got {quality}")
        alive = a[a != 0]
        threshold = quality * float(alive.std()) if alive.size else 0.0
        keep[a < threshold] = 0.0
    return keep.reshape(np.shape(w))


def prune_masks(model: Module, sparsity: float | dict | None = None,
                quality: float | dict | None = None) -> dict[str, np.ndarray]:
    """Per-layer magnitude masks {parameter name: mask}; a dict value gives per-layer targets
    (short layer names allowed) and leaves the layers it does not name unpruned."""
    by_sparsity = sparsity is not None
    value = sparsity if by_sparsity else quality
    if value is None or (by_sparsity and quality is not None):
        raise ConfigError("give exactly one of sparsity or quality")
    values = per_layer(model, None, value) if isinstance(value, dict) else \
        {n: value for n, _ in model.prox_parameters()}
    masks = {}
    for name, p in model.prox_parameters():
        v = values[name]
        w = p.host_dense()
        masks[name] = (np.ones(w.shape, np.float32) if v is None else
                       magnitude_mask(w, **{"sparsity" if by_sparsity else "quality": v}))
    return masks


def prune(model: Module, sparsity: float | dict | None = None,
          quality: float | dict | None = None) -> dict[str, np.ndarray]:
    """Zero the small weights of every conv/linear layer and fix that mask (combined with any
    earlier mask); returns the masks."""
    masks = prune_masks(model, sparsity, quality)
    for name, p in model.prox_parameters():
        if p.is_sparse:
            p.to_dense()
        if p.mask is not None:
            masks[name] *= p.backend.to_host(p.mask).reshape(p.shape)
        p.set_mask(masks[name])
    return masks


def sparsity_ramp(target: float, rounds: int) -> list[float]:
    """Iterative-pruning sparsities: density shrinks geometrically to 1 - target in ``rounds``."""
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    density = 1.0 - target
    return [target if r == rounds else 1.0 - density ** (r / rounds) for r in range(1, rounds + 1)]


def _ramp(value, rounds: int, by_sparsity: bool) -> list:
    """Per-round targets: sparsity ramps geometrically in density, quality linearly."""
    ramp = (lambda v: sparsity_ramp(v, rounds)) if by_sparsity else \
        (lambda v: [v * r / rounds for r in range(1, rounds + 1)])
    one = lambda v: [None] * rounds if v is None else ramp(v)  # None: layer left unpruned
    if isinstance(value, dict):
        ramps = {k: one(v) for k, v in value.items()}
        return [{k: ramps[k][r] for k in value} for r in range(rounds)]
    return one(value)


def _show(target) -> str:
    if not isinstance(target, dict):
        return f"{target:.3g}"
    return ", ".join(f"{short_name(k)} {v:.3g}" for k, v in target.items() if v is not None)


def prune_retrain(model: Module, train_ds: ArrayDataset, test_ds: ArrayDataset | None,
                  steps: int, sparsity: float | dict | None = None,
                  quality: float | dict | None = None, rounds: int = 1,
                  config: TrainConfig | None = None, form: str = "mask", lr: float | None = None,
                  log: Log = print) -> list[dict]:
    """Prune, then retrain ``steps`` with the mask fixed, ``rounds`` times ramping to the target;
    per round: target, figures and accuracy after pruning (the 'Pru' point) and retraining."""
    by_sparsity = sparsity is not None
    targets = _ramp(sparsity if by_sparsity else quality, rounds, by_sparsity)
    rounds_out = []
    for r, target in enumerate(targets, 1):
        prune(model, **{"sparsity" if by_sparsity else "quality": target})
        info = {"round": r, "target": target, "figures_pruned": compression_figures(model)}
        if test_ds is not None:
            info["accuracy_pruned"] = evaluate(model, test_ds)["accuracy"]
        log(f"prune round {r}/{rounds} ({'sparsity' if by_sparsity else 'quality'} "
            f"{_show(target)}): "
            f"{layer_line(model)}" + (f"  acc {100 * info['accuracy_pruned']:.2f}%"
                                      if test_ds is not None else ""))
        if steps:
            retrain(model, train_ds, test_ds, steps, config, form=form, lr=lr, seed_offset=r,
                    log=log)
            if test_ds is not None:
                info["accuracy_retrained"] = evaluate(model, test_ds)["accuracy"]
        rounds_out.append(info)
    return rounds_out
