"""Channel pruning that really removes channels: smaller dense layers, downstream shapes adjusted.

Which channels can go is read from the module tree (``prunable_groups``): a *group* is a
producer (a Conv2d with groups=1, or a Linear) whose output reaches exactly one consumer (a
Conv2d with groups=1, or a Linear) through layers that keep channels apart: ReLU, Dropout,
max/average pooling, batch norm (pruned along), Flatten (the consumer is then a Linear whose
inputs come ``spread`` = H*W per channel, channel-major). Containers that apply their children
in order (Sequential, a Model without its own forward) are looked through.

Residual blocks: a block's output channels meet the shortcut in an add, and every block of a
stage adds into the same channels, so removing one would mean removing it from the whole
stage and its projections at once. The rule here is the sound, simple one: **only the inner
layers of a block are pruned** (in a ResNet basic block, conv1's filters together with bn1
and conv2's input channels); the block's output width, the shortcut and everything after the
add keep their width. A layer whose output feeds the model's output, a residual add, a
grouped convolution or a layer minidnn cannot see through is not prunable.

Scores (one per output channel of a producer; the lowest are removed):
- ``l1``: the l1 norm of the channel's filter (Li et al. 2017), the magnitude baseline.
- ``nb``: the improved naive-Bayes importance of Dai et al. 2021, as interpreted here (the
  paper's abstract names "improved naive Bayes inference-based channel pruning"; its details
  are not in our copy). What the consumer reads from channel c on calibration samples
  (after BN/ReLU/pooling; spatial mean per sample) is the evidence. *Naive Bayes*: a Gaussian
  class-conditional model of that single feature (class means, pooled variance) gives each
  sample's posterior of its true class; the channel's information about the label is
  I_c = H(Y) + mean log p(y | a_c) (nats, >= 0 up to noise; 0 for a constant or dead
  channel). *Improved*: channels are scored by the posterior odds of two independent
  (naive) pieces of evidence, their label information and their share of the consumer's
  input, S_c = RMS(a_c) * ||W_consumer[:, c]||_2; score = (I_c / mean I) * (S_c / mean S),
  so a discriminative channel the next layer ignores ranks low and a loud but uninformative
  one too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..layers.base import Module
from ..layers.linear import Conv2d, Linear
from ..layers.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm
from ..layers.residual import Residual
from ..layers.simple import AvgPool2d, Dropout, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU
from ..names import layer_labels, short_name
from ..parameter import Parameter

SCORES = ("nb", "l1")
# exact types only: a subclass may compute something else (e.g. a factorized layer)
KEEPS_CHANNELS = (ReLU, Dropout, MaxPool2d, AvgPool2d, GlobalAvgPool2d)
NORMS = (BatchNorm1d, BatchNorm2d)


def _plain_conv(m: Module) -> bool:
    return type(m) is Conv2d and m.groups == 1


@dataclass
class PruneGroup:
    """A producer, the batch norms after it and the one consumer of its channels."""

    name: str                      # the producer's dotted module name
    producer: Conv2d | Linear
    consumer: Conv2d | Linear
    consumer_name: str
    norms: list = field(default_factory=list)
    spread: int = 1                # consumer inputs per channel (H*W after a Flatten)
    label: str = ""                # its name in specs and logs ('fc1', else the full path)

    @property
    def width(self) -> int:
        p = self.producer
        return p.out_channels if isinstance(p, Conv2d) else p.out_features


# ---------------------------------------------------------------------- the groups
def _in_order(m: Module) -> bool:
    return bool(getattr(type(m).forward, "runs_children_in_order", False))


def _chain(m: Module, name: str) -> list[tuple[str, Module]]:
    """The layers an in-order container applies one after the other, nested ones flattened."""
    if not _in_order(m):
        return [(name, m)]
    out = []
    for child_name, child in m._modules.items():
        out += _chain(child, f"{name}.{child_name}" if name else child_name)
    return out


def _consumer(chain, i: int, width: int) -> tuple[int, list, int] | None:
    """(index of the consumer, norms on the way, spread) for the producer at chain[i]."""
    norms, flat = [], False
    for j in range(i + 1, len(chain)):
        m = chain[j][1]
        if type(m) in NORMS and m.num_features == width:
            norms.append(m)
        elif type(m) is Flatten:
            flat = True
        elif type(m) in KEEPS_CHANNELS:
            continue
        elif _plain_conv(m) and not flat and m.in_channels == width:
            return j, norms, 1
        elif type(m) is Linear and m.in_features % width == 0 and (
                flat or type(chain[i][1]) is Linear):
            return j, norms, m.in_features // width
        else:
            return None
    return None


def _groups_in(chain) -> list[PruneGroup]:
    groups = []
    for i, (name, m) in enumerate(chain):
        if isinstance(m, Residual) and type(m).forward is Residual.forward:
            for part in ("main", "shortcut", "post"):
                child = getattr(m, part)
                if child is not None:
                    groups += _groups_in(_chain(child, f"{name}.{part}"))
            continue
        if not (_plain_conv(m) or type(m) is Linear):
            continue
        width = m.out_channels if isinstance(m, Conv2d) else m.out_features
        found = _consumer(chain, i, width)
        if found is not None:
            j, norms, spread = found
            groups.append(PruneGroup(name, m, chain[j][1], chain[j][0], norms, spread))
    return groups


def prunable_groups(model: Module) -> list[PruneGroup]:
    """Every prunable producer of ``model`` in module order (see the module docstring)."""
    if not _in_order(model):
        raise ConfigError(f"cannot prune the channels of {type(model).__name__}: its forward() "
                          f"is its own, so the layer order is unknown (use a Model without a "
                          f"forward, made of Sequential/Residual)")
    groups = _groups_in(_chain(model, ""))
    for g, label in zip(groups, layer_labels(g.name + ".weight" for g in groups)):
        g.label = label
    return groups


# ---------------------------------------------------------------------- how many to keep
def keep_counts(groups: list[PruneGroup], ratio: float | None,
                per_layer: dict | None = None) -> dict[str, int]:
    """{producer name: channels kept}: ``ratio`` of every group's channels removed (rounded,
    at least one kept), except the layers ``per_layer`` names ({label or name: ratio})."""
    if ratio is None and not per_layer:
        raise ConfigError("prune-channels: give --ratio R or --per-layer SPEC")
    ratios = {g.name: ratio or 0.0 for g in groups}
    labels = ", ".join(g.label for g in groups) or "none"
    for key, r in (per_layer or {}).items():
        hits = [g.name for g in groups
                if key in (g.name, g.label, short_name(g.name + ".weight"))]
        if len(hits) != 1:
            raise ConfigError(f"prune-channels: layer {key!r} is not one of the prunable "
                              f"layers ({labels})" if not hits else
                              f"prune-channels: layer {key!r} is ambiguous: {hits}")
        ratios[hits[0]] = r
    for name, r in ratios.items():
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"prune-channels: ratio for {name} must be in [0, 1), got {r}")
    return {g.name: max(1, int(round((1 - ratios[g.name]) * g.width))) for g in groups}


def keep_indices(scores: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` highest-scoring channels, in increasing index order (ties: lower index)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return np.sort(order[:keep])


# ---------------------------------------------------------------------- the surgery
def _taken(p: Parameter, index: np.ndarray, axis: int) -> Parameter:
    """A new dense Parameter of ``p``'s values at ``index`` along ``axis``, on its backend."""
    host = np.ascontiguousarray(np.take(p.host_dense(), index, axis=axis))
    q = Parameter(host, prox=p.prox, groups=p.groups)
    return q.to(p.backend) if p.backend is not None else q


def _shrink_norm(bn: _BatchNorm, keep: np.ndarray) -> None:
    bn.weight, bn.bias = _taken(bn.weight, keep, 0), _taken(bn.bias, keep, 0)
    for name in ("running_mean", "running_var"):
        value = getattr(bn, name)
        host = value if bn.backend is None else bn.backend.to_host(value)
        host = np.ascontiguousarray(np.asarray(host)[keep])
        setattr(bn, name, host if bn.backend is None else bn.backend.from_host(host))
    bn.num_features = len(keep)


def remove_channels(group: PruneGroup, keep: np.ndarray) -> None:
    """Keep only the channels ``keep`` (sorted indices) of ``group``: the producer's filters
    and biases, its batch norms, and the consumer's inputs (``spread`` columns per channel)."""
    keep = np.asarray(keep, dtype=np.int64)
    if keep.ndim != 1 or not len(keep) or np.any(np.diff(keep) <= 0) or keep[0] < 0 \
            or keep[-1] >= group.width:
        raise ConfigError(f"{group.name}: channels to keep must be sorted distinct indices "
                          f"below {group.width}")
    p, c = group.producer, group.consumer
    p.weight = _taken(p.weight, keep, 0)
    if p.bias is not None:
        p.bias = _taken(p.bias, keep, 0)
    if isinstance(p, Conv2d):
        p.out_channels = len(keep)
    else:
        p.out_features = len(keep)
    for bn in group.norms:
        _shrink_norm(bn, keep)
    if isinstance(c, Conv2d):
        c.weight = _taken(c.weight, keep, 1)
        c.in_channels = len(keep)
    else:
        cols = (keep[:, None] * group.spread + np.arange(group.spread)[None, :]).ravel()
        c.weight = _taken(c.weight, cols, 1)
        c.in_features = len(cols)


def mark_edited(model: Module) -> None:
    """Note that layer widths no longer match the model's class: a file then records the
    module tree (with the new widths) instead of the zoo name (``io.architecture``)."""
    object.__setattr__(model, "architecture_edited", True)


def prune_channels(model: Module, keep: dict[str, np.ndarray],
                   groups: list[PruneGroup] | None = None) -> dict[str, tuple[int, int]]:
    """Remove every channel not in ``keep`` ({producer name: sorted indices}); returns
    {producer name: (channels before, after)}. The groups must be found before any change."""
    groups = prunable_groups(model) if groups is None else groups
    by_name = {g.name: g for g in groups}
    unknown = sorted(set(keep) - set(by_name))
    if unknown:
        raise ConfigError(f"not prunable: {unknown}")
    widths = {}
    for name, index in keep.items():
        before = by_name[name].width
        if len(index) < before:
            remove_channels(by_name[name], index)
        widths[name] = (before, by_name[name].width)
    mark_edited(model)
    return widths
