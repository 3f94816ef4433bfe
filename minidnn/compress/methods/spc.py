"""SpC: l1 proximal training from scratch (the paper's method), optionally debiased."""
from __future__ import annotations

from .common import ProxMethod
from .registry import register


@register
class SpC(ProxMethod):
    """Prox-<optimizer> with l1 strength ``lam`` (per-layer overrides: ``spec.lam_per_layer``)."""

    name = "spc"
    label = "SpC"
    color = "tab:blue"
