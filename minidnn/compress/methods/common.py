"""Pieces the method modules share: a result record, debiasing after a method, and the run of
the l1-family methods (``ProxMethod``)."""
from __future__ import annotations

from ...optim.hooks import L1Prox
from ..debias import retrain
from ..measure import measure
from ..spc import train_spc
from .registry import Method, MethodRun


def record(method: str, run: MethodRun, steps: int, retrain_steps: int = 0) -> dict:
    """A result record of the model as it is now."""
    return {"method": method, **measure(run.model, run.test_ds), "steps": steps,
            "retrain_steps": retrain_steps}


def debias(run: MethodRun, name: str, steps: int) -> tuple[dict, list]:
    """Retrain with the zeros fixed (the spec's retraining settings); the '+retrain' record and
    the evaluations made while retraining."""
    spec = run.spec
    hist = retrain(run.model, run.train_ds, run.test_ds, spec.retrain_steps, spec.train,
                   form=spec.retrain_form, lr=spec.retrain_lr, log=run.log)
    return record(name + "+retrain", run, steps, spec.retrain_steps), hist.evals


class ProxMethod(Method):
    """A method of the l1 family: Prox-<optimizer> from scratch with the prox of
    ``prox_hook`` at strength ``lam`` (per-layer overrides: ``spec.lam_per_layer``), optionally
    debiased. A subclass sets the name, label, colour and ``prox_hook``."""

    params = ("lam",)
    l1_family = True

    def prox_hook(self, steps: int) -> L1Prox:
        """The plain soft-threshold by lr * lam (subclasses: another prox of the family)."""
        return L1Prox()

    def run(self, run: MethodRun):
        hist = train_spc(run.model, run.train_ds, run.test_ds, run.steps, run.value,
                         run.spec.train, lam_per_layer=run.spec.lam_per_layer or None,
                         log=run.log, prox=self.prox_hook(run.steps))
        records = [record(self.name, run, run.steps)]
        history = {self.name: hist.evals}
        if run.retrain:
            rec, history["retrain"] = debias(run, self.name, run.steps)
            records.append(rec)
        return records, history
