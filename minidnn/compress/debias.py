"""Debiasing: retrain a sparse model without the l1 term while its zeros stay zero."""
from __future__ import annotations

from ..data import ArrayDataset
from ..layers.base import Module
from ..train import History, Trainer
from .sparse_train import SPARSE_TRAIN_DENSITY
from .sparsify import freeze_zeros
from ..report import layer_line
from ..train_config import Log, TrainConfig


def retrain(model: Module, train_ds: ArrayDataset, test_ds: ArrayDataset | None, steps: int,
            config: TrainConfig | None = None, form: str = "mask", lr: float | None = None,
            seed_offset: int = 1, log: Log = print, max_density: float = SPARSE_TRAIN_DENSITY) -> History:
    """Freeze the current zeros (``form`` 'mask', 'csr' or 'auto': CSR for the weights at most
    ``max_density`` dense, see ``freeze_zeros``), then train ``steps`` updates with a fresh
    optimizer of the configured kind, lam = 0 (lr: ``lr`` or the configured one)."""
    config = config or TrainConfig()
    freeze_zeros(model, form, max_density)
    opt = config.make_optimizer(model, steps, lam=0.0, lr=lr)
    hist = config.fit(Trainer(model, opt), train_ds, test_ds, steps, seed_offset=seed_offset,
                      log=log)
    log(f"retrain: {steps} steps ({form}): {layer_line(model)}")
    return hist
