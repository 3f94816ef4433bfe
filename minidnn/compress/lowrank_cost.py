"""FLOP rules of the factorized layers (``layers.lowrank``) for the per-layer counter
(``compress.flops``): one row per factorized layer whose kind names its form and ranks
('tk2 6,12', 'cp 30', 'svd 40'), its cost the sum of its pieces at their own resolutions."""
from __future__ import annotations

from ..layers.lowrank import CPConv2d, LowRankLinear, Tucker2Conv2d
from .flops import register_cost


def _sum(pieces) -> tuple[int, int, int, int]:
    """(weights, nonzeros, MACs, nonzero MACs) of (piece, output positions) pairs."""
    weights = nnz = macs = nnz_macs = 0
    for piece, positions in pieces:
        w, z = piece.weight.numel, piece.weight.count_nonzero()
        weights, nnz = weights + w, nnz + z
        macs, nnz_macs = macs + w * positions, nnz_macs + z * positions
    return weights, nnz, macs, nnz_macs


def _lowrank_linear_cost(layer: LowRankLinear, in_shape, out_shape):
    return (f"svd {layer.rank}", *_sum([(layer.first, 1), (layer.second, 1)]))


def _tucker2_cost(layer: Tucker2Conv2d, in_shape, out_shape):
    h, w = in_shape[2:]
    out = out_shape[2] * out_shape[3]
    return (f"tk2 {layer.rank_in},{layer.rank_out}",
            *_sum([(layer.first, h * w), (layer.core, out), (layer.last, out)]))


def _cp_cost(layer: CPConv2d, in_shape, out_shape):
    h, w = in_shape[2:]
    k, p = layer.kernel_size, layer.padding
    vh, vw = h + 2 * p - k + 1, w + 2 * p      # the strips run at stride 1 (see CPConv2d)
    return (f"cp {layer.rank}",
            *_sum([(layer.first, h * w), (layer.vertical, vh * vw),
                   (layer.horizontal, vh * (vw - k + 1)),
                   (layer.last, out_shape[2] * out_shape[3])]))


register_cost(LowRankLinear, _lowrank_linear_cost)
register_cost(Tucker2Conv2d, _tucker2_cost)
register_cost(CPConv2d, _cp_cost)
