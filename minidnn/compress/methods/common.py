"""Pieces the method modules share: a result record, debiasing after a method."""
from __future__ import annotations

from ..debias import retrain
from ..measure import measure
from .registry import MethodRun


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
