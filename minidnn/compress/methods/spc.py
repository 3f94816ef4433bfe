"""SpC: l1 proximal training from scratch (the paper's method), optionally debiased."""
from __future__ import annotations

from ...optim.hooks import L1Prox
from ..spc import train_spc
from .common import debias, record
from .registry import Method, MethodRun, register


@register
class SpC(Method):
    """Prox-<optimizer> with l1 strength ``lam`` (per-layer overrides: ``spec.lam_per_layer``)."""

    name = "spc"
    label = "SpC"
    color = "tab:blue"
    params = ("lam",)
    l1_family = True

    def prox_hook(self) -> L1Prox:
        """The plain soft-threshold by lr * lam."""
        return L1Prox()

    def run(self, run: MethodRun):
        hist = train_spc(run.model, run.train_ds, run.test_ds, run.steps, run.value,
                         run.spec.train, lam_per_layer=run.spec.lam_per_layer or None,
                         log=run.log)
        records = [record("spc", run, run.steps)]
        history = {"spc": hist.evals}
        if run.retrain:
            rec, history["retrain"] = debias(run, "spc", run.steps)
            records.append(rec)
        return records, history
