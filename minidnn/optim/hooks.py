"""Optimizer hooks (as in Chainer): what wraps the update of every parameter.

A step is the fixed sequence (as in Caffe's solver): the ``pre`` hooks (e.g. a penalty's
gradient), then per parameter the optimizer's update followed by the ``post`` hooks: the l1
proximal step (``L1Prox``), then re-applying the fixed mask (``FixedMask``). Every optimizer
starts with those two standard hooks; with only them, it runs the backend's fused
update + prox + mask op instead (one kernel per parameter, the same arithmetic).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from ..parameter import Parameter
    from .base import Optimizer


class UpdateHook:
    """Base of optimizer hooks; ``timing`` says when the optimizer calls it."""

    timing: str = "post"   # 'pre': ``pre(optimizer)`` once per step, before the updates;
                           # 'post': ``post(optimizer, name, p, lr)`` after each update

    def pre(self, optimizer: "Optimizer") -> None:
        """Before the step's updates (e.g. add a penalty's gradient to every ``p.grad``)."""

    def post(self, optimizer: "Optimizer", name: str | None, p: "Parameter", lr: float) -> None:
        """After parameter ``p`` (named ``name``) was updated with learning rate ``lr``."""


class L1Prox(UpdateHook):
    """The l1 proximal step: soft-threshold conv/linear weights by lr * lam, with the
    optimizer's ``lam`` (a float, or per-layer {parameter name: lam})."""

    def threshold(self, optimizer: "Optimizer", name: str | None, p: "Parameter",
                  lr: float) -> float:
        """The soft-threshold of one parameter at this step (0: no prox)."""
        return lr * optimizer.lam_for(name, p)

    def post(self, optimizer, name, p, lr) -> None:
        threshold = self.threshold(optimizer, name, p, lr)
        if threshold > 0:
            p.backend.soft_threshold(p.values, threshold, out=p.values)


class FixedMask(UpdateHook):
    """Re-apply a dense parameter's fixed 0/1 mask, so its frozen zeros stay zero."""

    @staticmethod
    def mask_of(p: "Parameter"):
        """The mask to apply to ``p`` (None: no mask, or CSR, whose zeros are structural)."""
        return p.mask if not p.is_sparse else None

    def post(self, optimizer, name, p, lr) -> None:
        mask = self.mask_of(p)
        if mask is not None:
            p.backend.apply_mask(p.values, mask)


STANDARD_HOOKS = (L1Prox, FixedMask)
