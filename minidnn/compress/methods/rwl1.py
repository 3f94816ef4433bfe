"""Reweighted l1: SpC whose per-weight threshold follows 1/(|w| + eps), refreshed every K steps."""
from __future__ import annotations

from ...optim.hooks import ReweightedL1Prox
from ...optim.target import ControlSettings
from .common import ProxMethod
from .registry import register

REWEIGHT_EVERY = 100   # steps between refreshes of the per-weight scales
REWEIGHT_EPS = 0.1     # a zero's lam is lam / eps; a weight at the layer's RMS gets ~lam


@register
class ReweightedL1(ProxMethod):
    """Prox-<optimizer> with per-weight l1 strength lam * s / (|w| + eps s) (Candes, Wakin &
    Boyd 2008; s the layer's RMS nonzero weight), the scales held on the device."""

    name = "rwl1"
    label = "Reweighted l1"
    color = "tab:purple"
    # a zero's lam is 10x: zeros hardly revive, so an overshoot stays; approach slowly and from
    # further below (the trim at the freeze closes the gap)
    control = ControlSettings(gain=0.05, margin=0.25)

    def prox_hook(self, steps: int) -> ReweightedL1Prox:
        """The reweighted soft-threshold (scales refreshed every REWEIGHT_EVERY steps)."""
        return ReweightedL1Prox(REWEIGHT_EVERY, REWEIGHT_EPS)
