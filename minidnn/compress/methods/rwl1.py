"""Reweighted l1: SpC whose per-weight threshold follows 1/(|w| + eps), refreshed every K steps."""
from __future__ import annotations

from ...optim.hooks import ReweightedL1Prox
from ..spc import train_spc
from .common import debias, record
from .registry import Method, MethodRun, register

REWEIGHT_EVERY = 100   # steps between refreshes of the per-weight scales
REWEIGHT_EPS = 0.1     # a zero's lam is lam / eps; a weight at the layer's RMS gets ~lam


@register
class ReweightedL1(Method):
    """Prox-<optimizer> with per-weight l1 strength lam * s / (|w| + eps s) (Candes, Wakin &
    Boyd 2008; s the layer's RMS nonzero weight), the scales held on the device."""

    name = "rwl1"
    label = "Reweighted l1"
    color = "tab:purple"
    params = ("lam",)
    l1_family = True

    def prox_hook(self) -> ReweightedL1Prox:
        """The reweighted soft-threshold (scales refreshed every REWEIGHT_EVERY steps)."""
        return ReweightedL1Prox(REWEIGHT_EVERY, REWEIGHT_EPS)

    def run(self, run: MethodRun):
        hist = train_spc(run.model, run.train_ds, run.test_ds, run.steps, run.value,
                         run.spec.train, lam_per_layer=run.spec.lam_per_layer or None,
                         log=run.log, prox=self.prox_hook())
        records = [record("rwl1", run, run.steps)]
        history = {"rwl1": hist.evals}
        if run.retrain:
            rec, history["retrain"] = debias(run, "rwl1", run.steps)
            records.append(rec)
        return records, history
