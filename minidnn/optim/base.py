"""Optimizer: per-parameter state and the fixed step sequence pre hooks -> update -> post hooks.

Subclasses implement ``_update`` with one backend call. The post hooks are by default the l1
proximal step (``hooks.L1Prox``: the soft-threshold ``sign(w) * max(|w| - lr * lam, 0)`` of
parameters whose ``prox`` flag is set, i.e. conv/linear weights) and then re-applying the fixed
mask (``hooks.FixedMask``). With exactly those standard hooks the update, prox and mask run as
one fused backend op (an optimization: the same arithmetic); other hooks run one by one.

lam is a true l1 strength: the step minimizes loss + lam * ||w||_1. To reproduce a value p of the
paper (its solver's ``proximal_decay``), use lam = ln(p) with lr = 0.001 (threshold 0.001 * ln p).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import ConfigError
from ..parameter import Parameter
from .hooks import FixedMask, L1Prox, UpdateHook
from .schedule import as_schedule


class Optimizer:
    """Base optimizer. ``lam`` is a float or a dict {parameter name: lam} (per-layer l1).

    ``params`` is a list of Parameters or of (name, Parameter) pairs (as from
    ``model.named_parameters()``); names are needed only for per-layer lam.
    """

    def __init__(self, params: Iterable, lr=0.001, lam: float | dict = 0.0,
                 weight_decay: float = 0.0) -> None:
        named = [(None, p) if isinstance(p, Parameter) else tuple(p) for p in params]
        if not named:
            raise ConfigError("optimizer got an empty parameter list")
        self.named_params: list[tuple[str | None, Parameter]] = named
        self.schedule = as_schedule(lr)
        if isinstance(lam, dict):
            unknown = set(lam) - {n for n, _ in named}
            if unknown:
                raise ConfigError(f"per-layer lam names unknown parameters: {sorted(unknown)}")
            if any(v < 0 for v in lam.values()):
                raise ConfigError("lam must be >= 0")
        elif lam < 0:
            raise ConfigError(f"lam must be >= 0, got {lam}")
        if weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lam = lam
        self.weight_decay = float(weight_decay)
        self.step_count = 0
        self.state: dict[int, dict] = {}
        self.hooks: list[UpdateHook] = [L1Prox(), FixedMask()]

    def add_hook(self, hook: UpdateHook) -> UpdateHook:
        """Append a hook (after the existing ones of its timing); returns it."""
        self.hooks.append(hook)
        return hook

    def remove_hook(self, hook: UpdateHook) -> None:
        """Take a hook away (e.g. a penalty once its phase is over)."""
        self.hooks.remove(hook)

    @property
    def params(self) -> list[Parameter]:
        return [p for _, p in self.named_params]

    @property
    def lr(self) -> float:
        """Learning rate of the next step."""
        return self.schedule(self.step_count)

    def lam_for(self, name: str | None, p: Parameter) -> float:
        """The l1 strength for one parameter (0 unless its prox flag is set)."""
        if not p.prox:
            return 0.0
        if isinstance(self.lam, dict):
            return float(self.lam.get(name, 0.0))
        return float(self.lam)

    def _state_for(self, p: Parameter) -> dict:
        """Per-parameter state, re-initialized if the parameter changed representation."""
        st = self.state.get(id(p))
        if st is None or st["_shape"] != tuple(p.values.shape) or st["_backend"] is not p.backend:
            st = {"_shape": tuple(p.values.shape), "_backend": p.backend}
            self._init_state(p, st)
            self.state[id(p)] = st
        return st

    def gather_state(self, p: Parameter, index) -> None:
        """Keep ``p``'s state after it switched to a compact form (dense -> CSR on its support,
        ``Parameter.to_csr_on_mask``): every per-element state array of the old shape is
        gathered at ``index`` (the flat positions kept); counters stay."""
        st = self.state.get(id(p))
        if st is None:
            return
        old = st["_shape"]
        for key, value in list(st.items()):
            if not key.startswith("_") and tuple(getattr(value, "shape", ())) == old:
                st[key] = p.backend.gather(value.reshape((int(np.prod(old)),)), index)
        st["_shape"] = tuple(p.values.shape)

    def step(self) -> None:
        """One update of every parameter that has a gradient, wrapped by the hooks."""
        lr = self.lr
        self.step_count += 1
        for hook in self.hooks:
            if hook.timing == "pre":
                hook.pre(self)
        post = [h for h in self.hooks if h.timing == "post"]
        fused = self._fused_hooks(post)
        for name, p in self.named_params:
            if p.grad is None:
                continue
            wd = self.weight_decay if p.prox else 0.0
            if fused is not None:
                prox, mask = fused
                threshold = prox.threshold(self, name, p, lr) if prox else 0.0
                self._update(p, self._state_for(p), lr, wd, threshold,
                             mask.mask_of(p) if mask else None)
            else:
                self._update(p, self._state_for(p), lr, wd, 0.0, None)
                for hook in post:
                    hook.post(self, name, p, lr)
            p.values_changed()

    @staticmethod
    def _fused_hooks(post: list[UpdateHook]) -> tuple | None:
        """(L1Prox or None, FixedMask or None) when the post hooks are only the standard ones in
        the standard order, so the fused update + prox + mask op computes them; else None."""
        kinds = [type(h) for h in post]
        if kinds not in ([L1Prox, FixedMask], [L1Prox], [FixedMask], []):
            return None
        prox = next((h for h in post if type(h) is L1Prox), None)
        return prox, next((h for h in post if type(h) is FixedMask), None)

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def _init_state(self, p: Parameter, state: dict) -> None:
        raise NotImplementedError

    def _update(self, p: Parameter, state: dict, lr: float, weight_decay: float,
                threshold: float, mask) -> None:
        raise NotImplementedError
