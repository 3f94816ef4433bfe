"""Group l2,1: whole filters (conv) and input neurons (linear) to zero (group soft-threshold)."""
from __future__ import annotations

from ...optim.hooks import GroupL21Prox
from ...optim.target import ControlSettings
from .common import ProxMethod
from .registry import register


@register
class GroupL21(ProxMethod):
    """Prox-<optimizer> with the group-lasso prox over the filters of every conv weight and the
    input columns of every linear weight (``GroupL21Prox``): a group's norm shrinks by
    lr lam sqrt(n) per step and the group vanishes whole. Its zeros come a group at a time
    (structured sparsity: a vanished filter or neuron can be removed, issue 17), steered by lam
    through ``lam_for`` like the l1 proxes."""

    name = "gl21"
    label = "Group l2,1"
    color = "tab:olive"
    # zeros come a row at a time, and a vanished row revives only when its whole gradient
    # outgrows lam: approach from further below, like reweighted l1
    control = ControlSettings(gain=0.05, margin=0.25)

    def prox_hook(self, steps: int) -> GroupL21Prox:
        """The group soft-threshold over the filters / input columns of each weight."""
        return GroupL21Prox()
