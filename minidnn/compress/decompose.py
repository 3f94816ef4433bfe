"""Tensor decompositions of layer weights (issue 17): truncated SVD, Tucker-2 (HOSVD; HOOI via
TensorLy), CP (the tensor power method of Astrid & Lee; ALS via TensorLy).

All work on host float64 arrays and return float64 factors. The standard algorithms that
TensorLy implements well (HOOI as ``partial_tucker``, CP-ALS as ``parafac``) come from it when it
is installed (``pip install minidnn[lowrank]``, NumPy backend); what it lacks is written here:
the tensor power method (greedy rank-1 deflation, each term found by the higher-order power
method), and HOSVD, which is two SVDs and keeps the package usable without TensorLy. Asking
for a TensorLy algorithm without TensorLy is a ConfigError that names the extra.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import ConfigError, ShapeError

TUCKER_ALGORITHMS = ("hosvd", "hooi")
CP_ALGORITHMS = ("tpm", "als")
NEEDS_TENSORLY = {"hooi": "Tucker-2 HOOI", "als": "CP-ALS"}


def have_tensorly() -> bool:
    """Whether TensorLy can be imported (the optional ``lowrank`` extra)."""
    return importlib.util.find_spec("tensorly") is not None


def _tensorly(algorithm: str):
    """The tensorly module on its NumPy backend; ConfigError naming the extra without it."""
    if not have_tensorly():
        raise ConfigError(f"{NEEDS_TENSORLY[algorithm]} ({algorithm!r}) needs TensorLy: pip "
                          f"install 'minidnn[lowrank]', or use the algorithm minidnn has itself "
                          f"({'hosvd' if algorithm == 'hooi' else 'tpm'})")
    import tensorly
    tensorly.set_backend("numpy")
    return tensorly


def _check_rank(rank: int, limit: int, what: str) -> int:
    if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= limit:
        raise ConfigError(f"{what} must be an integer in [1, {limit}], got {rank!r}")
    return int(rank)


def unfold(w: np.ndarray, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding: (w.shape[mode], rest)."""
    return np.moveaxis(w, mode, 0).reshape(w.shape[mode], -1)


# ---------------------------------------------------------------------- SVD
def truncated_svd(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(left (m, r), right (r, n)) with left @ right the best rank-r approximation of w (m, n);
    the singular values are split evenly (sqrt into each) so both factors train alike."""
    w = np.asarray(w, np.float64)
    if w.ndim != 2:
        raise ShapeError(f"truncated_svd needs a matrix, got shape {w.shape}")
    r = _check_rank(rank, min(w.shape), "SVD rank")
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    root = np.sqrt(s[:r])
    return u[:, :r] * root, root[:, None] * vt[:r]


# ---------------------------------------------------------------------- Tucker-2
def tucker2(w: np.ndarray, rank_out: int, rank_in: int, algorithm: str = "hosvd",
            n_iter: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(core (r_out, r_in, kh, kw), U_out (O, r_out), U_in (C, r_in)) with
    w ~ core x_0 U_out x_1 U_in, for a conv weight (O, C, kh, kw); the spatial modes are kept.

    'hosvd': the leading left singular vectors of the two unfoldings (one pass, no iteration);
    'hooi': TensorLy's ``partial_tucker`` (alternating refinement from the HOSVD)."""
    w = np.asarray(w, np.float64)
    if w.ndim != 4:
        raise ShapeError(f"tucker2 needs a conv weight (O, C, kh, kw), got shape {w.shape}")
    r_out = _check_rank(rank_out, w.shape[0], "Tucker-2 rank_out")
    r_in = _check_rank(rank_in, w.shape[1], "Tucker-2 rank_in")
    if algorithm == "hosvd":
        u_out = np.linalg.svd(unfold(w, 0), full_matrices=False)[0][:, :r_out]
        u_in = np.linalg.svd(unfold(w, 1), full_matrices=False)[0][:, :r_in]
    elif algorithm == "hooi":
        from tensorly.decomposition import partial_tucker
        _tensorly(algorithm)
        (_, factors), _ = partial_tucker(w, rank=[r_out, r_in], modes=[0, 1], n_iter_max=n_iter,
                                         init="svd", tol=1e-7)
        u_out, u_in = (np.asarray(f, np.float64) for f in factors)
    else:
        raise ConfigError(f"unknown Tucker-2 algorithm {algorithm!r}: choose from "
                          f"{', '.join(TUCKER_ALGORITHMS)}")
    core = np.einsum("ocij,or,cs->rsij", w, u_out, u_in, optimize=True)
    return core, u_out, u_in


def tucker2_compose(core: np.ndarray, u_out: np.ndarray, u_in: np.ndarray) -> np.ndarray:
    """The weight a Tucker-2 decomposition stands for."""
    return np.einsum("rsij,or,cs->ocij", core, u_out, u_in, optimize=True)


# ---------------------------------------------------------------------- CP
def cp(w: np.ndarray, rank: int, algorithm: str = "tpm", n_iter: int = 100,
       seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(weights (R,), factors [(dim_m, R) per mode]) with w ~ sum_r weights[r] * outer of the
    factors' r-th columns (unit-norm columns for 'tpm').

    'tpm': the tensor power method (``cp_power``); 'als': TensorLy's ``parafac`` (alternating
    least squares from an SVD start)."""
    w = np.asarray(w, np.float64)
    r = _check_rank(rank, 1 << 20, "CP rank")
    if algorithm == "tpm":
        return cp_power(w, r, n_iter=n_iter, seed=seed)
    if algorithm == "als":
        from tensorly.decomposition import parafac
        _tensorly(algorithm)
        init = "svd" if r <= min(w.shape) else "random"
        out = parafac(w, r, n_iter_max=n_iter, init=init, tol=1e-8, random_state=seed,
                      normalize_factors=True)
        return (np.asarray(out.weights, np.float64),
                [np.asarray(f, np.float64) for f in out.factors])
    raise ConfigError(f"unknown CP algorithm {algorithm!r}: choose from {', '.join(CP_ALGORITHMS)}")


def _contract_except(t: np.ndarray, vecs: list[np.ndarray], mode: int) -> np.ndarray:
    """t contracted with every vector but ``mode``'s (highest axis first, so lower axes keep
    their index)."""
    out = t
    for m in range(t.ndim - 1, -1, -1):
        if m != mode:
            out = np.tensordot(out, vecs[m], axes=([m], [0]))
    return out


def _leading_vector(m: np.ndarray, rng: np.random.Generator, n_iter: int = 30) -> np.ndarray:
    """The leading left singular vector of m, by power iteration on m m^T (cheap: the
    unfoldings of large conv weights are too wide for an SVD per rank-1 term)."""
    u = m @ rng.standard_normal(m.shape[1])
    for _ in range(n_iter):
        norm = float(np.linalg.norm(u))
        if norm == 0.0:
            break
        u = m @ (m.T @ (u / norm))
    norm = float(np.linalg.norm(u))
    return u / norm if norm else np.eye(m.shape[0])[0]


def _rank_one(t: np.ndarray, rng: np.random.Generator, n_iter: int,
              tol: float) -> tuple[float, list[np.ndarray]]:
    """The higher-order power method: (lambda, unit vectors) of a dominant rank-1 term of t,
    started from the leading singular vectors of the unfoldings (De Lathauwer et al. 2000),
    then each mode in turn set to t contracted with the others until lambda settles."""
    vecs = [_leading_vector(unfold(t, m), rng) for m in range(t.ndim)]
    lam = 0.0
    for _ in range(n_iter):
        for mode in range(t.ndim):
            v = _contract_except(t, vecs, mode)
            norm = float(np.linalg.norm(v))
            if norm == 0.0:
                return 0.0, vecs
            vecs[mode] = v / norm
        if abs(norm - lam) <= tol * norm:
            lam = norm
            break
        lam = norm
    return lam, vecs


def cp_power(w: np.ndarray, rank: int, n_iter: int = 100, tol: float = 1e-7, seed: int = 0,
             energy: float | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """CP by the tensor power method with deflation (Astrid & Lee 2017): ``rank`` times, find
    a dominant rank-1 term of the residual with the higher-order power method and subtract it.

    Greedy, so the first R terms of a run are the rank-R result (rank searches reuse one run).
    ``energy``: stop early once the terms hold that fraction of ||w||^2 (the residual's share
    is at most 1 - energy)."""
    residual = np.array(w, np.float64)
    total = float(np.sum(residual ** 2))
    rng = np.random.default_rng(seed)
    weights, factors = [], [[] for _ in range(residual.ndim)]
    for _ in range(rank):
        lam, vecs = _rank_one(residual, rng, n_iter, tol)
        if lam == 0.0:
            break
        term = lam * _outer(vecs)
        residual -= term
        weights.append(lam)
        for m, v in enumerate(vecs):
            factors[m].append(v)
        if energy is not None and float(np.sum(residual ** 2)) <= (1.0 - energy) * total:
            break
    if not weights:  # w is zero: one zero term keeps the shapes valid
        weights = [0.0]
        factors = [[np.eye(n)[0]] for n in residual.shape]
    return np.array(weights), [np.stack(f, axis=1) for f in factors]


def _outer(vecs: list[np.ndarray]) -> np.ndarray:
    out = vecs[0]
    for v in vecs[1:]:
        out = np.multiply.outer(out, v)
    return out


def cp_compose(weights: np.ndarray, factors: list[np.ndarray]) -> np.ndarray:
    """The tensor a CP decomposition stands for."""
    letters = "abcdefgh"[:len(factors)]
    spec = ",".join(f"{c}r" for c in letters) + ",r->" + letters
    return np.einsum(spec, *factors, weights, optimize=True)


def relative_error(w: np.ndarray, approx: np.ndarray) -> float:
    """||w - approx|| / ||w|| (0 for a zero w approximated by zero)."""
    norm = float(np.linalg.norm(w))
    diff = float(np.linalg.norm(np.asarray(w, np.float64) - approx))
    return diff / norm if norm else diff
