"""SpC: sparse networks learned from scratch with the l1 proximal step after every update."""
from __future__ import annotations

from ..data import ArrayDataset
from ..layers.base import Module
from ..train import History, Trainer
from ..names import per_layer
from ..optim.hooks import L1Prox, replace_prox
from ..report import layer_line
from ..train_config import Log, TrainConfig


def layer_lams(model: Module, lam: float, lam_per_layer: dict | None = None) -> float | dict:
    """The optimizer's ``lam``: ``lam`` for every weight, or a dict when layers override it."""
    if not lam_per_layer:
        return float(lam)
    return {name: float(v) for name, v in per_layer(model, lam, lam_per_layer).items()}


def train_spc(model: Module, train_ds: ArrayDataset, test_ds: ArrayDataset | None, steps: int,
              lam: float, config: TrainConfig | None = None,
              lam_per_layer: dict | None = None, log: Log = print,
              prox: L1Prox | None = None) -> History:
    """Train ``steps`` updates of Prox-<optimizer> with l1 strength ``lam`` (threshold lr*lam);
    ``lam_per_layer`` ({layer: lam}, short names like 'fc1' allowed) overrides it per layer;
    ``prox``: another prox of the l1 family in place of the plain soft-threshold."""
    config = config or TrainConfig()
    opt = config.make_optimizer(model, steps, lam=layer_lams(model, lam, lam_per_layer))
    if prox is not None:
        replace_prox(opt, prox)
    hist = config.fit(Trainer(model, opt), train_ds, test_ds, steps, log=log)
    log(f"spc: {steps} steps, lam {lam}"
        + (f" (per layer {lam_per_layer})" if lam_per_layer else "") + f": {layer_line(model)}")
    return hist
