"""Sparse training (issue 20): a layer whose support is fixed trains in CSR form.

Once the zeros of a weight can no longer change, a dense step spends most of its work on them.
That happens twice in an SpC run: when the ``--target-sparsity`` controller freezes a group's
support (a 0/1 mask, lam 0 from then on: the rest of the main phase debiases the survivors),
and in the debiasing phase (``retrain``), whose zeros are fixed from its start. From then on
a weight at most ``max_density`` dense is switched to CSR on exactly its mask's support: its
forward, input gradient and weight gradient run as sparse products (direct sparse convolutions
for conv layers, dense x CSR for linear ones) and the fused optimizer update touches only the
survivors. Nothing learned changes: a masked weight with lam 0 is updated by the same Adam/SGD
arithmetic on its survivors as the CSR values are, and its masked entries are zero in both
forms; only the order of the sums inside the products differs (float rounding).

During the prox phase the weights stay dense: a zero may revive there whenever its gradient
pushes it past the threshold (docs/results.md, "No revival at the end"), and only a dense
gradient says when. ``FreezeSupport`` alone (sticky zeros, the prox still on) keeps dense
weights too: its zeros keep growing, which a fixed CSR pattern cannot follow.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..optim.base import Optimizer
from ..optim.hooks import UpdateHook
from ..parameter import Parameter
from ..train_config import Log

SPARSE_TRAIN_DENSITY = 0.6   # default: layers at most this dense train as CSR (issue 20's
#                              measurements: LeNet-5's conv1 at 57% is faster as CSR on PoCL)


def check_density(value: float) -> float:
    """A density threshold must lie in [0, 1] (0: sparse training off); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"the sparse-training density must be in [0, 1] (0: off), "
                          f"got {value!r}")
    return float(value)


def mask_density(p: Parameter) -> float:
    """The fraction of ones in ``p``'s mask (one host round trip, once per switch)."""
    mask = np.asarray(p.backend.to_host(p.mask))
    return float(np.count_nonzero(mask)) / mask.size if mask.size else 1.0


def switch_to_csr(p: Parameter, optimizer: Optimizer | None = None) -> None:
    """Hold a masked dense weight as CSR on its mask's support (survivors that happen to be
    0.0 stay in the pattern), carrying its gradient and ``optimizer``'s state over to the
    nnz-long form, so the step goes on exactly where it was."""
    index = p.to_csr_on_mask()
    if optimizer is not None:
        optimizer.gather_state(p, index)


class SparseSwitch(UpdateHook):
    """A 'pre' hook (after the controller's): each weight whose support the controller has
    frozen (a mask, lam 0) switches to CSR if it is at most ``max_density`` dense; decided once
    per weight. Only with the standard prox hooks (the fused update): another prox (reweighted
    l1, l0) may act with lam 0, which a fixed pattern could not follow."""

    timing = "pre"

    def __init__(self, max_density: float = SPARSE_TRAIN_DENSITY, log: Log | None = None) -> None:
        self.max_density = check_density(max_density)
        self.log = log
        self.decided: set[int] = set()
        self.switched: dict[str, int] = {}     # parameter name -> the step it switched at

    def pre(self, optimizer: Optimizer) -> None:
        post = [h for h in optimizer.hooks if h.timing == "post"]
        if self.max_density <= 0 or optimizer._fused_hooks(post) is None:
            return
        for name, p in optimizer.named_params:
            if (id(p) in self.decided or not p.prox or p.mask is None or p.is_sparse
                    or p.is_blockdiag or optimizer.lam_for(name, p) != 0.0):
                continue
            self.decided.add(id(p))
            density = mask_density(p)
            if density > self.max_density:
                continue
            switch_to_csr(p, optimizer)
            self.switched[name] = optimizer.step_count
            if self.log is not None:
                self.log(f"sparse training: {name} ({100 * density:.1f}% dense) runs as CSR "
                         f"from step {optimizer.step_count}")
