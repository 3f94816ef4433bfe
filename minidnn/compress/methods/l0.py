"""Annealed l0: a hard-threshold prox whose strength ramps up over the first quarter of the run."""
from __future__ import annotations

from ...optim.hooks import HardThresholdProx
from ...optim.target import ControlSettings
from .common import ProxMethod
from .registry import register

ANNEAL = 0.25   # the l0 strength reaches lam at this fraction of the run


@register
class AnnealedL0(ProxMethod):
    """Prox-<optimizer> with the l0 prox: weights with |w| <= sqrt(2 lr lam a) are zeroed after
    every update, a = min(1, step / (ANNEAL x steps)) (``HardThresholdProx``); steered by lam
    through ``lam_for`` like the l1 proxes."""

    name = "l0"
    label = "Annealed l0"
    color = "tab:brown"
    # a hard threshold zeroes at once what falls below it (no lag, unlike the l1 proxes), and
    # its zeros never revive: steer faster and aim at the target itself (from below; the
    # trim at the freeze closes the last tenths of a point); its lam is t^2 / (2 lr) for a
    # threshold t, so it needs far more room than an l1 strength
    control = ControlSettings(gain=0.5, proportional=1.0, max_error=2.0, margin=0.0,
                              max_lam=1e4)

    def prox_hook(self, steps: int) -> HardThresholdProx:
        """The hard threshold, annealed over ANNEAL of a run of ``steps`` steps."""
        return HardThresholdProx(max(1, int(round(ANNEAL * steps))))
