"""Rank selection for the low-rank layers (issue 17): an energy threshold and VBMF per layer
(the genetic search over all layers is ``rank_search``).

- ``energy:E``: the smallest rank whose singular values keep a fraction E of ||W||^2 (of the
  matrix for SVD, of each unfolding for Tucker-2; for CP the number of tensor-power-method
  terms that hold E of ||W||^2, since CP has no singular values).
- ``vbmf``: the rank that empirical variational Bayesian matrix factorization (Nakajima et al.
  2013, the analytic global solution) keeps, with the noise variance estimated too; Kim et al.
  2016 use it on the two unfoldings for Tucker-2. For CP the larger of those two ranks.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from ..errors import ConfigError
from .decompose import cp_power, unfold

RANK_RULES = ("energy", "vbmf", "ga")


def parse_rank_rule(text: str) -> tuple[str, float | None]:
    """'energy:0.9' -> ('energy', 0.9); 'vbmf', 'ga' -> (name, None); ConfigError otherwise."""
    name, sep, value = str(text).partition(":")
    if name == "energy":
        try:
            e = float(value) if sep else 0.9
        except ValueError:
            e = float("nan")
        if not 0.0 < e < 1.0 or math.isnan(e):
            raise ConfigError(f"--ranks energy:E needs 0 < E < 1, got {text!r}")
        return name, e
    if name in ("vbmf", "ga") and not sep:
        return name, None
    raise ConfigError(f"--ranks must be energy:E (0 < E < 1), vbmf or ga, got {text!r}")


def energy_rank(singular_values: np.ndarray, energy: float) -> int:
    """The smallest r with sum(s[:r]^2) >= energy * sum(s^2) (at least 1)."""
    sq = np.asarray(singular_values, np.float64) ** 2
    total = float(sq.sum())
    if total == 0.0:
        return 1
    return max(1, int(np.searchsorted(np.cumsum(sq) / total, energy - 1e-12) + 1))


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))


def _evb_objective(sigma2: float, l: int, m: int, s: np.ndarray, residual: float,
                   xubar: float) -> float:
    """The EVBMF free energy as a function of the noise variance (up to constants)."""
    h, alpha = len(s), l / m
    x = s ** 2 / (m * sigma2)
    z1, z2 = x[x > xubar], x[x <= xubar]
    tau1 = _tau(z1, alpha)
    return float(np.sum(z2 - np.log(z2)) + np.sum(z1 - tau1) + np.sum(np.log((tau1 + 1) / z1))
                 + alpha * np.sum(np.log(tau1 / alpha + 1)) + residual / (m * sigma2)
                 + (l - h) * np.log(sigma2))


def vbmf_rank(y: np.ndarray) -> int:
    """The rank EVBMF keeps for the matrix y (at least 1): singular values above the threshold
    sqrt(M sigma2 (1 + tau)(1 + alpha / tau)) with the noise variance sigma2 minimizing the
    free energy (Nakajima et al. 2013, Theorem 2 and eq. 15)."""
    y = np.asarray(y, np.float64)
    if y.shape[0] > y.shape[1]:
        y = y.T
    l, m = y.shape
    s = np.linalg.svd(y, compute_uv=False)
    alpha = l / m
    tauubar = 2.5129 * math.sqrt(alpha)
    xubar = (1 + tauubar) * (1 + alpha / tauubar)
    if not np.any(s > 0):
        return 1
    eh_ub = int(min(math.ceil(l / (1 + alpha)) - 1, l)) - 1
    upper = float(np.sum(s ** 2)) / (l * m)
    tail = s[max(eh_ub + 1, 0):]
    lower = max(float(s[min(eh_ub + 1, l - 1)] ** 2) / (m * xubar),
                float(np.mean(tail ** 2)) / m if tail.size else 0.0)
    lower = max(lower, upper * 1e-12)
    if lower >= upper:
        sigma2 = upper
    else:
        s_pos = np.maximum(s, 1e-300)
        sigma2 = minimize_scalar(_evb_objective, args=(l, m, s_pos, 0.0, xubar),
                                 bounds=(lower, upper), method="bounded").x
    threshold = math.sqrt(m * sigma2 * (1 + tauubar) * (1 + alpha / tauubar))
    return max(1, int(np.sum(s > threshold)))


def svd_rank(w: np.ndarray, rule: str, value: float | None) -> int:
    """The rank of a linear layer's weight (out, in) under ``rule``."""
    if rule == "energy":
        return energy_rank(np.linalg.svd(w, compute_uv=False), value)
    return vbmf_rank(w)


def tucker2_ranks(w: np.ndarray, rule: str, value: float | None) -> tuple[int, int]:
    """(rank_out, rank_in) of a conv weight (O, C, kh, kw) under ``rule``: per unfolding."""
    if rule == "energy":
        return tuple(energy_rank(np.linalg.svd(unfold(w, m), compute_uv=False), value)
                     for m in (0, 1))
    return vbmf_rank(unfold(w, 0)), vbmf_rank(unfold(w, 1))


def cp_rank(w: np.ndarray, rule: str, value: float | None, max_rank: int) -> int:
    """The CP rank of a conv weight under ``rule``, at most ``max_rank``: the number of tensor
    power method terms that hold ``value`` of ||w||^2, or the larger VBMF unfolding rank."""
    if rule == "energy":
        weights, _ = cp_power(w, max_rank, n_iter=30, energy=value)
        return max(1, min(len(weights), max_rank))
    return max(1, min(max(tucker2_ranks(w, rule, value)), max_rank))
