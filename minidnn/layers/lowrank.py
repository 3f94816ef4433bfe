"""Factorized (low-rank) layers: a dense layer replaced by a chain of smaller ones (issue 17).

Each is composed of existing ``Linear``/``Conv2d`` children and runs them in order, so every
product, gradient and kernel is one the dense layers already use (and the parity and gradient
tests of those layers cover the pieces); an inference plan expands them like a ``Sequential``
and fuses what follows the last piece (bias, BN, ReLU, pooling). In a model file each is one
layer type with its ranks in the config (``layers.registry``), its pieces' weights under
``<layer>.<piece>.weight``; every piece's weight gets the l1 prox like any conv/linear weight,
so factors can be trained sparse and stored as CSR.

- ``LowRankLinear``: W (out, in) ~ U (out, r) V (r, in), i.e. ``first`` = V, ``second`` = U
  (truncated SVD; Astrid & Lee's fully connected layers).
- ``Tucker2Conv2d``: W (O, C, k, k) ~ core (r_out, r_in, k, k) x_0 U_out x_1 U_in, i.e. a 1x1
  conv C -> r_in, the k x k core conv r_in -> r_out, a 1x1 conv r_out -> O (Kim et al. 2016).
- ``CPConv2d``: W[o, c, i, j] ~ sum_r A[o, r] B[c, r] Ky[i, r] Kx[j, r]: 1x1 C -> R, a k x 1
  depthwise conv, a 1 x k depthwise conv, 1x1 R -> O (Lebedev et al. 2015, Astrid & Lee 2018).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Module, backward_in_order, forward_in_order, runs_children_in_order
from .linear import Conv2d, Linear, _positive


class _Chain(Module):
    """A layer made of pieces run in order; subclasses assign the pieces in ``__init__``."""

    form: str = ""

    @runs_children_in_order
    def forward(self, x):
        return forward_in_order(self, x)

    def backward(self, dy, need_dx=True):
        return backward_in_order(self, dy, need_dx)

    def ranks(self) -> dict[str, int]:
        """The ranks of the factorization by name (reports, ``minidnn info``)."""
        raise NotImplementedError

    def dense_weight_count(self) -> int:
        """Weights of the dense layer this one replaces."""
        raise NotImplementedError


def _conv_args(what: str, in_channels: int, out_channels: int, kernel_size: int, stride: int,
               padding: int) -> tuple[int, int, int, int, int]:
    out = (_positive("in_channels", in_channels, what),
           _positive("out_channels", out_channels, what),
           _positive("kernel_size", kernel_size, what), _positive("stride", stride, what))
    if not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ConfigError(f"{what}: padding must be a non-negative integer, got {padding!r}")
    return out + (int(padding),)


class LowRankLinear(_Chain):
    """``Linear(in, out)`` of rank ``rank``: x -> first (in -> rank) -> second (rank -> out, b)."""

    form = "svd"

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        what = "LowRankLinear"
        self.in_features = _positive("in_features", in_features, what)
        self.out_features = _positive("out_features", out_features, what)
        self.rank = _positive("rank", rank, what)
        self.first = Linear(in_features, rank, bias=False, rng=rng)
        self.second = Linear(rank, out_features, bias=bias, rng=rng)

    def layer_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "rank": self.rank, "bias": self.second.bias is not None}

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, rank={self.rank}"

    def ranks(self) -> dict[str, int]:
        return {"rank": self.rank}

    def dense_weight_count(self) -> int:
        return self.in_features * self.out_features


class Tucker2Conv2d(_Chain):
    """``Conv2d(C, O, k)`` as 1x1 (C -> rank_in), k x k (rank_in -> rank_out; the stride and
    padding), 1x1 (rank_out -> O, bias)."""

    form = "tucker2"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, rank_in: int = 1, rank_out: int = 1, bias: bool = True,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        what = "Tucker2Conv2d"
        c, o, k, s, p = _conv_args(what, in_channels, out_channels, kernel_size, stride, padding)
        self.in_channels, self.out_channels, self.kernel_size = c, o, k
        self.stride, self.padding = s, p
        self.rank_in = _positive("rank_in", rank_in, what)
        self.rank_out = _positive("rank_out", rank_out, what)
        self.first = Conv2d(c, rank_in, 1, bias=False, rng=rng)
        self.core = Conv2d(rank_in, rank_out, k, stride=s, padding=p, bias=False, rng=rng)
        self.last = Conv2d(rank_out, o, 1, bias=bias, rng=rng)

    def layer_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "rank_in": self.rank_in, "rank_out": self.rank_out,
                "bias": self.last.bias is not None}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"ranks=({self.rank_in}, {self.rank_out})")

    def ranks(self) -> dict[str, int]:
        return {"rank_in": self.rank_in, "rank_out": self.rank_out}

    def dense_weight_count(self) -> int:
        return self.in_channels * self.out_channels * self.kernel_size ** 2


class CPConv2d(_Chain):
    """``Conv2d(C, O, k)`` of CP rank R as 1x1 (C -> R), k x 1 depthwise, 1 x k depthwise,
    1x1 (R -> O, bias).

    Only the 1x1 pieces, the k x 1 strip and the 1 x k strip exist, all with one stride and
    padding for both axes, so the zero padding ``p`` is done by the k x 1 strip on both axes
    (its output is 2p columns wider: zeros, it has no bias), the 1 x k strip then runs
    unpadded back to the right width, and the stride is taken by the last 1x1 conv (a strided
    1x1 conv samples the stride-1 result where the strided k x k conv would compute it)."""

    form = "cp"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, rank: int = 1, bias: bool = True,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        what = "CPConv2d"
        c, o, k, s, p = _conv_args(what, in_channels, out_channels, kernel_size, stride, padding)
        self.in_channels, self.out_channels, self.kernel_size = c, o, k
        self.stride, self.padding = s, p
        self.rank = r = _positive("rank", rank, what)
        self.first = Conv2d(c, r, 1, bias=False, rng=rng)
        self.vertical = Conv2d(r, r, (k, 1), padding=p, groups=r, bias=False, rng=rng)
        self.horizontal = Conv2d(r, r, (1, k), groups=r, bias=False, rng=rng)
        self.last = Conv2d(r, o, 1, stride=s, bias=bias, rng=rng)

    def layer_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "rank": self.rank, "bias": self.last.bias is not None}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"rank={self.rank}")

    def ranks(self) -> dict[str, int]:
        return {"rank": self.rank}

    def dense_weight_count(self) -> int:
        return self.in_channels * self.out_channels * self.kernel_size ** 2


FACTORIZED = (LowRankLinear, Tucker2Conv2d, CPConv2d)
