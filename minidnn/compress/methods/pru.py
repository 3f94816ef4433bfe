"""Pru: magnitude pruning of the dense reference (Han et al. 2015), then retraining."""
from __future__ import annotations

from ...names import per_layer
from ..prune import prune_retrain
from ..storage import load_weights
from .common import record
from .registry import Method, MethodRun, register


@register
class Pru(Method):
    """Prune to a ``sparsity`` or ``quality`` (per-layer overrides: ``spec.prune_per_layer``)
    in ``spec.prune_rounds`` rounds, retraining ``spec.retrain_steps`` after each."""

    name = "pru"
    label = "Pru"
    color = "tab:red"
    params = ("sparsity", "quality")
    from_reference = True

    def run(self, run: MethodRun):
        spec = run.spec
        load_weights(run.model, run.reference)
        target = per_layer(run.model, run.value, spec.prune_per_layer) \
            if spec.prune_per_layer else run.value
        rounds = prune_retrain(run.model, run.train_ds, run.test_ds, spec.retrain_steps,
                               **{run.param: target}, rounds=spec.prune_rounds,
                               config=spec.train, form=spec.retrain_form, lr=spec.retrain_lr,
                               log=run.log)
        last = rounds[-1]
        records = [{"method": "pru", "accuracy": last["accuracy_pruned"],
                    **last["figures_pruned"], "steps": 0,
                    "retrain_steps": spec.retrain_steps * (spec.prune_rounds - 1)}]
        if spec.retrain_steps:
            records.append(record("pru+retrain", run, 0, spec.retrain_steps * spec.prune_rounds))
        return records, rounds
