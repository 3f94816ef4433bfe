"""MPDCompress (issue 18): fixed random permuted block-diagonal masks, applied from step 0.

Per conv/linear weight, a seeded random row permutation and column permutation and B balanced
diagonal blocks (``minidnn.blockdiag.BlockLayout``); the weight is switched to the block form
(``Parameter.to_blockdiag``) before the first step, so training, saving and inference all run
on the B dense blocks (about 1/B of the weights) and the entries outside them never exist.

Convolutions: the blocks are taken on the (out, in*kh*kw) matrix (``conv_form='matrix'``, each
output channel sees a random 1/B of the (channel, tap) columns) or on channels
(``conv_form='channels'``, the default: whole kh*kw filters move together, each output channel
sees 1/B of the input channels; a conv with fewer input channels than B falls back to the
matrix). On LeNet-5 at 10.4x, conv2 on channels trained to 98.18% against 97.77% on the matrix
(docs/results.md). Grouped convolutions keep their dense form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..blockdiag import BlockLayout, check_blocks
from ..errors import ConfigError
from ..layers.base import Module
from ..names import layer_labels, parse_layer_spec, resolve_layers, short_name

CONV_FORMS = ("matrix", "channels")


@dataclass
class MPDSettings:
    """``blocks``: B for every conv/linear weight (1 keeps a layer dense); ``blocks_per_layer``:
    overrides ('fc3=1' or {'fc3': 1}); ``convs``: whether conv layers get blocks at all;
    ``conv_form``: 'matrix' or 'channels'; ``seed``: the permutations' seed; ``rescale``:
    re-draw the initial scale for the block's fan-in (He init of the layer as it is)."""

    blocks: int = 10
    blocks_per_layer: str | dict | None = None
    convs: bool = True
    conv_form: str = "channels"
    seed: int = 0
    rescale: bool = True

    def check(self) -> None:
        """ConfigError for settings that cannot work (before any model is built)."""
        check_blocks(1 << 30, 1 << 30, self.blocks)
        if self.conv_form not in CONV_FORMS:
            raise ConfigError(f"conv_form must be one of {CONV_FORMS}, got {self.conv_form!r}")
        for layer, b in self.per_layer_spec().items():
            try:
                check_blocks(1 << 30, 1 << 30, b)
            except ConfigError as e:
                raise ConfigError(f"blocks for layer {layer!r}: {e}") from None

    def per_layer_spec(self) -> dict:
        spec = self.blocks_per_layer
        return dict(spec) if isinstance(spec, dict) else parse_layer_spec(spec, int)


def column_unit(shape: tuple[int, ...], blocks: int, conv_form: str) -> int:
    """Columns that move together: a conv's kh*kw taps with ``conv_form='channels'`` when its
    input channels can be split into ``blocks`` runs, else 1 (blocks on the matrix: a conv
    with fewer input channels than blocks, such as a first layer on 1-3 image channels)."""
    if len(shape) == 4 and conv_form == "channels" and shape[1] >= blocks:
        return int(np.prod(shape[2:]))
    return 1


def layer_layout(shape: tuple[int, ...], blocks: int, conv_form: str,
                 rng: np.random.Generator) -> BlockLayout:
    """The random layout of one weight of ``shape`` ((out, in) or (out, in, kh, kw))."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    return BlockLayout.random(rows, cols, blocks, rng, column_unit(shape, blocks, conv_form))


def plan_blocks(model: Module, settings: MPDSettings) -> dict[str, int]:
    """{prox parameter name: B} for the weights that get blocks (B >= 2), validated."""
    settings.check()
    named = resolve_layers(model, settings.per_layer_spec())
    plan = {}
    for name, p in model.prox_parameters():
        b = named.get(name, settings.blocks)
        conv = len(p.shape) == 4
        if b < 2 or p.groups != 1 or (conv and not settings.convs and name not in named):
            continue
        unit = column_unit(p.shape, b, settings.conv_form)
        rows, cols = p.matrix_shape
        try:
            check_blocks(rows, cols, b, unit)
        except ConfigError as e:
            raise ConfigError(f"layer {short_name(name)}: {e} (set it with --blocks-per-layer "
                              f"{short_name(name)}=N, or leave conv layers out)") from None
        plan[name] = b
    return plan


def apply_mpd(model: Module, settings: MPDSettings,
              log: Callable[[str], None] | None = None) -> dict[str, BlockLayout]:
    """Mask every planned weight of ``model`` (on its backend) with its permuted block-diagonal
    layout and switch it to the block form; returns {parameter name: layout}. Reproducible:
    layer i's permutations come from ``default_rng([seed, i])``."""
    plan = plan_blocks(model, settings)
    layouts = {}
    for i, (name, p) in enumerate(model.prox_parameters()):
        if name not in plan:
            continue
        layout = layer_layout(p.shape, plan[name], settings.conv_form,
                              np.random.default_rng([settings.seed, i]))
        if settings.rescale:
            rows, cols = p.matrix_shape
            p.data = p.backend.from_host(p.host_dense() * np.float32(
                np.sqrt(rows * cols / layout.nnz)))
        p.to_blockdiag(layout)
        layouts[name] = layout
    if log is not None:
        log("mpd: " + "  ".join(f"{label} {lay.blocks} blocks of {lay.block_shape[0]}x"
                                f"{lay.block_shape[1]}"
                                for label, lay in zip(layer_labels(layouts), layouts.values())))
    return layouts


def blocks_value(value: float | int) -> int:
    """A swept or given B as an int (sweep values arrive as floats); ConfigError unless whole."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or value != int(value) or value < 1:
        raise ConfigError(f"blocks must be a whole number >= 1, got {value!r}")
    return int(value)
