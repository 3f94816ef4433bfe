"""Dense: the reference every method is compared with (trained without l1, or loaded)."""
from __future__ import annotations

from ...train import Trainer
from ..storage import load_weights
from .common import record
from .registry import Method, MethodRun, register


@register
class Dense(Method):
    """Plain training (lam = 0) for the run's steps; or the weights of ``run.reference``."""

    name = "dense"
    label = "Dense"
    color = "gray"
    retrainable = False

    def run(self, run: MethodRun):
        if run.reference is not None:
            load_weights(run.model, run.reference)
            run.log(f"reference weights from {run.reference}")
            return [record("dense", run, 0)], []
        config = run.spec.train
        opt = config.make_optimizer(run.model, run.steps, lam=0.0)
        hist = config.fit(Trainer(run.model, opt), run.train_ds, run.test_ds, run.steps,
                          log=run.log)
        return [record("dense", run, run.steps)], hist.evals
