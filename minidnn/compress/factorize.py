"""Replacing a trained layer by its low-rank form (issue 17): which layers, which ranks, the
factorized layer with the decomposition's factors as its weights.

Forms: ``svd`` for ``Linear`` (``LowRankLinear``), ``tucker2`` and ``cp`` for square-kernel,
ungrouped ``Conv2d`` with a kernel larger than 1x1 (``Tucker2Conv2d``, ``CPConv2d``). A method
names the conv form and factorizes linear layers by SVD (Astrid & Lee's hybrid CP-SVD; Kim et
al.'s Tucker-2 with the fully connected layers as matrices); ``svd`` factorizes linear layers
only. A layer whose factorized form at the chosen ranks would not have fewer weights than the
dense one is left as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..layers import Conv2d, Linear
from ..layers.base import Module
from ..layers.lowrank import FACTORIZED, CPConv2d, LowRankLinear, Tucker2Conv2d
from .decompose import cp, truncated_svd, tucker2
from .ranks import cp_rank, svd_rank, tucker2_ranks

METHODS = ("tucker2", "cp", "svd")


@dataclass
class LayerChoice:
    """One layer to factorize: its dotted path, form and ranks (filled by rank selection)."""

    path: str
    form: str
    ranks: dict = field(default_factory=dict)


def form_of(module: Module, method: str) -> str | None:
    """The form ``method`` gives ``module`` ('svd', 'tucker2', 'cp'), or None if it stays."""
    if type(module) is Linear:
        return "svd"
    if type(module) is Conv2d and method != "svd" and module.groups == 1 \
            and module.kh == module.kw > 1:
        return method
    return None


def candidates(model: Module, method: str) -> list[LayerChoice]:
    """The layers ``method`` may factorize, in the model's order (none inside a layer that is
    factorized already)."""
    if method not in METHODS:
        raise ConfigError(f"unknown decomposition method {method!r}: choose from "
                          f"{', '.join(METHODS)}")
    inside = [p for p, m in model.named_modules() if isinstance(m, FACTORIZED)]
    out = []
    for path, m in model.named_modules():
        if any(path.startswith(p + ".") for p in inside):
            continue
        form = form_of(m, method)
        if form is not None:
            out.append(LayerChoice(path, form))
    return out


def module_at(model: Module, path: str) -> Module:
    m = model
    for part in path.split("."):
        m = m._modules[part]
    return m


def replace_module(model: Module, path: str, new: Module) -> None:
    """Put ``new`` where ``path`` is (same position among its siblings)."""
    parent, _, name = path.rpartition(".")
    setattr(module_at(model, parent) if parent else model, name, new)


def max_rank(form: str, m: Module) -> dict:
    """The largest ranks of a form (where the factors would stop saving weights, for CP)."""
    if form == "svd":
        return {"rank": min(m.in_features, m.out_features)}
    if form == "tucker2":
        return {"rank_out": m.out_channels, "rank_in": m.in_channels}
    k = m.kernel_size
    return {"rank": max(1, m.in_channels * m.out_channels * k * k
                        // (m.in_channels + m.out_channels + 2 * k))}


def factorized_weights(form: str, m: Module, ranks: dict) -> int:
    """Weights of ``m`` factorized in ``form`` at ``ranks``."""
    if form == "svd":
        return ranks["rank"] * (m.in_features + m.out_features)
    c, o, k = m.in_channels, m.out_channels, m.kernel_size
    if form == "tucker2":
        r1, r2 = ranks["rank_in"], ranks["rank_out"]
        return c * r1 + r1 * r2 * k * k + r2 * o
    return ranks["rank"] * (c + o + 2 * k)


def dense_weights(m: Module) -> int:
    return m.weight.numel


def select_ranks(m: Module, form: str, rule: str, value: float | None) -> dict:
    """Ranks of one layer by the per-layer rule 'energy' or 'vbmf' (``ranks``)."""
    w = m.weight.host_dense().astype(np.float64)
    if form == "svd":
        return {"rank": svd_rank(w, rule, value)}
    if form == "tucker2":
        r_out, r_in = tucker2_ranks(w, rule, value)
        return {"rank_out": r_out, "rank_in": r_in}
    return {"rank": cp_rank(w, rule, value, max_rank("cp", m)["rank"])}


def saves_weights(m: Module, form: str, ranks: dict) -> bool:
    return factorized_weights(form, m, ranks) < dense_weights(m)


def decompose_weight(m: Module, form: str, ranks: dict, algorithm: str | None = None,
                     seed: int = 0) -> tuple:
    """The factors of ``m``'s weight in ``form`` at ``ranks``: (left, right) for 'svd',
    (core, U_out, U_in) for 'tucker2', (weights, factors) for 'cp'. ``algorithm``:
    'hosvd'/'hooi' (Tucker-2), 'tpm'/'als' (CP); default HOSVD and the tensor power method."""
    w = m.weight.host_dense().astype(np.float64)
    if form == "svd":
        return truncated_svd(w, ranks["rank"])
    if form == "tucker2":
        return tucker2(w, ranks["rank_out"], ranks["rank_in"], algorithm or "hosvd")
    if form == "cp":
        return cp(w, ranks["rank"], algorithm or "tpm", seed=seed)
    raise ConfigError(f"unknown form {form!r}: choose from {', '.join(METHODS)}")


def truncate(m: Module, form: str, full: tuple, ranks: dict) -> tuple:
    """The factors at ``ranks`` from a nested decomposition at the largest rank: (U, s, Vt) of
    the SVD, (U_out, U_in) of the HOSVD, (weights, factors) of the tensor power method."""
    if form == "svd":
        u, s, vt = full
        root = np.sqrt(s[:ranks["rank"]])
        return u[:, :ranks["rank"]] * root, root[:, None] * vt[:ranks["rank"]]
    if form == "tucker2":
        u_out, u_in = full[0][:, :ranks["rank_out"]], full[1][:, :ranks["rank_in"]]
        w = m.weight.host_dense().astype(np.float64)
        return np.einsum("ocij,or,cs->rsij", w, u_out, u_in, optimize=True), u_out, u_in
    weights, factors = full   # a run may have stopped early: at most its terms
    return weights[:ranks["rank"]], [f[:, :ranks["rank"]] for f in factors]


def factorize(m: Module, form: str, ranks: dict, algorithm: str | None = None,
              seed: int = 0) -> Module:
    """The factorized layer for ``m`` (on ``m``'s backend): the decomposition of its weight at
    ``ranks`` as weights, ``m``'s bias as the last piece's."""
    return build_layer(m, form, decompose_weight(m, form, ranks, algorithm, seed))


def factorize_from(m: Module, form: str, ranks: dict, full: tuple) -> Module:
    """``factorize`` from a nested decomposition at the largest rank (``truncate``)."""
    return build_layer(m, form, truncate(m, form, full, ranks))


def build_layer(m: Module, form: str, factors: tuple) -> Module:
    """The factorized layer of ``form`` holding ``factors`` (``decompose_weight``'s layout)."""
    bias = None if m.bias is None else m.bias.host_dense()
    if form == "svd":
        left, right = factors
        new = LowRankLinear(m.in_features, m.out_features, left.shape[1], bias=bias is not None)
        state = {"first.weight": right, "second.weight": left}
    elif form == "tucker2":
        core, u_out, u_in = factors
        new = Tucker2Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                            u_in.shape[1], u_out.shape[1], bias=bias is not None)
        state = {"first.weight": u_in.T[:, :, None, None], "core.weight": core,
                 "last.weight": u_out[:, :, None, None]}
    else:
        new, state = _cp_layer(m, *factors)
    if bias is not None:
        state[f"{'second' if form == 'svd' else 'last'}.bias"] = bias
    new.to(m.backend)
    new.load_state_dict({k: np.asarray(v, np.float32) for k, v in state.items()})
    return new


def _cp_layer(m: Conv2d, weights: np.ndarray, factors: list[np.ndarray]) -> tuple[CPConv2d, dict]:
    """CPConv2d pieces from a CP decomposition: unit-norm columns, each piece scaled by the
    fourth root of |weight| (so the four train at one scale), the sign in the last."""
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    lam = weights * np.prod(norms, axis=0)
    root = np.abs(lam) ** 0.25
    a, b, ky, kx = [f / np.where(n == 0, 1, n) * root for f, n in zip(factors, norms)]
    a = a * np.sign(lam)
    new = CPConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                   len(weights), bias=m.bias is not None)
    return new, {"first.weight": b.T[:, :, None, None], "vertical.weight": ky.T[:, None, :, None],
                 "horizontal.weight": kx.T[:, None, None, :], "last.weight": a[:, :, None, None]}


# ---------------------------------------------------------------------- costs (rank search)
def _out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def layer_macs(form: str | None, m: Module, ranks: dict, hw: tuple | None) -> int:
    """Multiply-adds of one image through ``m`` (dense when ``form`` is None)."""
    if form in (None, "svd") and hw is None:
        return dense_weights(m) if form is None else factorized_weights(form, m, ranks)
    h, w = hw
    k, s, p = m.kernel_size, m.stride, m.padding
    oh, ow = _out(h, k, s, p), _out(w, k, s, p)
    c, o = m.in_channels, m.out_channels
    if form is None:
        return c * o * k * k * oh * ow
    if form == "tucker2":
        r1, r2 = ranks["rank_in"], ranks["rank_out"]
        return h * w * c * r1 + oh * ow * r1 * r2 * k * k + oh * ow * r2 * o
    r = ranks["rank"]
    vh = h + 2 * p - k + 1                    # the strips run at stride 1 (see CPConv2d)
    return h * w * c * r + vh * (w + 2 * p) * r * k + vh * (w + 2 * p - k + 1) * r * k \
        + oh * ow * r * o
