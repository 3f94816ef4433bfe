"""Optimizer hooks (as in Chainer): what wraps the update of every parameter.

A step is the fixed sequence (as in Caffe's solver): the ``pre`` hooks (e.g. a penalty's
gradient), then per parameter the optimizer's update followed by the ``post`` hooks: the l1
proximal step (``L1Prox``), then re-applying the fixed mask (``FixedMask``). Every optimizer
starts with those two standard hooks; with only them, it runs the backend's fused
update + prox + mask op instead (one kernel per parameter, the same arithmetic).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

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


class HardThresholdProx(L1Prox):
    """Annealed l0: the prox of lr * lam * ||w||_0, i.e. zero every weight with
    |w| <= sqrt(2 * lr * lam * a), a = min(1, step / anneal) ramping the strength up from 0 over
    the first ``anneal`` steps (a hard threshold at full strength on the first step would cut a
    third of a freshly initialised LeNet at lam 0.3). A zeroed weight revives only if one update
    carries it past the threshold, i.e. practically never: this is gradual magnitude pruning
    written as a prox, and ``--target-sparsity`` steers its lam like the l1 proxes'."""

    def __init__(self, anneal: int) -> None:
        if isinstance(anneal, bool) or not isinstance(anneal, int) or anneal < 1:
            raise ConfigError(f"annealed l0: anneal must be an integer >= 1, got {anneal!r}")
        self.anneal = anneal

    def threshold(self, optimizer, name, p, lr) -> float:
        """sqrt(2 lr lam a) at this step (0: no prox)."""
        strength = lr * optimizer.lam_for(name, p) * min(1.0, optimizer.step_count / self.anneal)
        return (2.0 * strength) ** 0.5 if strength > 0 else 0.0

    def post(self, optimizer, name, p, lr) -> None:
        threshold = self.threshold(optimizer, name, p, lr)
        if threshold > 0:
            p.backend.hard_threshold(p.values, threshold, out=p.values)


STANDARD_HOOKS = (L1Prox, FixedMask)


def replace_prox(optimizer: "Optimizer", prox: L1Prox) -> L1Prox:
    """Put ``prox`` (an ``L1Prox`` or a subclass: reweighted l1, ...) in the place of the
    optimizer's l1 prox hook, so it runs before ``FixedMask``; returns it."""
    for i, hook in enumerate(optimizer.hooks):
        if isinstance(hook, L1Prox):
            optimizer.hooks[i] = prox
            return prox
    raise ConfigError("the optimizer has no l1 prox hook to replace")


class ReweightedL1Prox(L1Prox):
    """Reweighted l1 (Candes, Wakin & Boyd 2008) as a prox: each weight's threshold is
    lr * lam * r with r = s / (|w| + eps * s) (s: the RMS of the layer's nonzero weights),
    refreshed from the current weights every ``every`` steps. A typical weight gets about lam, a
    small one more (up to lam / eps for a zero, so zeros hardly revive) and a large one less
    (less shrinkage bias on the weights that matter). The scales stay on the device, one array
    per weight; the optimizer's own update runs unfused, then this prox (two kernels)."""

    def __init__(self, every: int = 100, eps: float = 0.1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"reweighted l1: every must be an integer >= 1, got {every!r}")
        if not 0.0 < eps:
            raise ConfigError(f"reweighted l1: eps must be > 0, got {eps!r}")
        self.every, self.eps = every, float(eps)
        self.scales: dict[int, tuple] = {}     # id(p) -> (scale array, step it was computed)

    def scale_of(self, optimizer: "Optimizer", p: "Parameter"):
        """The parameter's per-weight scales, recomputed when ``every`` steps old (or when the
        parameter changed shape, e.g. became CSR)."""
        held = self.scales.get(id(p))
        if held is None or tuple(held[0].shape) != tuple(p.values.shape) or \
                optimizer.step_count - held[1] >= self.every:
            out = held[0] if held is not None and tuple(held[0].shape) == \
                tuple(p.values.shape) else None
            held = (p.backend.l1_reweight(p.values, self.eps, out=out), optimizer.step_count)
            self.scales[id(p)] = held
        return held[0]

    def post(self, optimizer, name, p, lr) -> None:
        threshold = self.threshold(optimizer, name, p, lr)
        if threshold > 0:
            p.backend.soft_threshold_scaled(p.values, self.scale_of(optimizer, p), threshold,
                                            out=p.values)


class GroupL21Prox(L1Prox):
    """Group lasso (l2,1) as a prox: a conv weight is grouped by output filter, a linear weight
    by input (the outgoing weights of one neuron of the layer below, or of one input feature),
    and each group of n entries is shrunk as a whole, w_g *= max(0, 1 - lr lam sqrt(n) /
    ||w_g||), so groups vanish whole instead of single weights (Yuan & Lin 2006; filters: Wen
    et al. 2016). A vanished filter or input column means a channel or neuron that can be
    removed; a linear layer is not grouped by its outputs, which for the last layer are the
    classes. The sqrt(n) makes lam comparable to an l1 strength (a group of weights of size a
    loses lr lam per weight per step, as under the l1 prox). One kernel per weight
    (``Backend.group_soft_threshold``); the optimizer's own update runs unfused before it."""

    def post(self, optimizer, name, p, lr) -> None:
        threshold = self.threshold(optimizer, name, p, lr)
        if threshold <= 0:
            return
        if p.is_sparse:
            raise ConfigError(f"the group prox needs dense weights; {name} is CSR")
        p.backend.group_soft_threshold(p.values, threshold, out=p.values,
                                       columns=len(p.shape) == 2)
