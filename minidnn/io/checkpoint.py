"""Training checkpoints: exact weights, buffers, RNG counters and optimizer state."""
from __future__ import annotations

import json
import os

import numpy as np

from ..backend import NumpyBackend
from ..errors import ModelFileError
from ..layers.base import Module
from ..optim.base import Optimizer
from ..parameter import Parameter
from .h5 import atomic_h5, seal, to_json
from .layout import FileContents, has_counter, read_file, write_model, write_state
from .model_file import check_model, install

SCALARS = (bool, int, float, np.generic)


def save_checkpoint(path: str | os.PathLike, model: Module, optimizer: Optimizer,
                    extra: dict | None = None) -> None:
    """Write everything a resumed run needs (float32 bit for bit), atomically."""
    with atomic_h5(path) as f:
        write_model(f, model, "checkpoint", None, np.dtype(np.float32), exact=True,
                    compression="auto")
        write_state(f, model, optimizer, extra, "auto")
        seal(f)


def _same_kind(want, saved) -> bool:
    """A saved JSON scalar can stand for the value a fresh optimizer state holds."""
    if want is None or isinstance(want, (bool, np.bool_)):
        return type(saved) is type(want) if want is None else isinstance(saved, bool)
    if isinstance(want, (int, np.integer)):
        return isinstance(saved, int) and not isinstance(saved, bool)
    return isinstance(saved, (int, float)) and not isinstance(saved, bool)


def _check_state(model: Module, optimizer: Optimizer, c: FileContents) -> None:
    """ModelFileError unless the saved optimizer state and counters fit these objects."""
    params = dict(model.named_parameters())
    updated = {id(p) for p in optimizer.params}
    probe_backend = NumpyBackend()
    for name, st in c.optimizer_state.items():
        if id(params[name]) not in updated:
            raise ModelFileError(f"{c.path}: optimizer state for {name!r}, a parameter this "
                                 f"optimizer does not update")
        probe = Parameter(np.zeros(c.params[name].values_shape, np.float32))
        probe.backend = probe_backend
        want: dict = {}
        optimizer._init_state(probe, want)
        want = {k: v for k, v in want.items() if not k.startswith("_")}
        arrays = {k for k, v in want.items() if v is not None and not isinstance(v, SCALARS)}
        scalars = set(want) - arrays
        if set(st.arrays) != arrays or set(st.scalars) != scalars or any(
                not _same_kind(want[k], st.scalars[k]) for k in scalars):
            raise ModelFileError(f"{c.path}: the state of {name!r} was written by "
                                 f"{c.optimizer} (arrays {sorted(st.arrays)}, scalars "
                                 f"{st.scalars}) and does not fit {type(optimizer).__name__} "
                                 f"(arrays {sorted(arrays)}, scalars {sorted(scalars)})")
    counters = {n for n, m in model.named_modules() if has_counter(m)}
    if set(c.modules) != counters:
        raise ModelFileError(f"{c.path}: RNG counters saved for modules {sorted(c.modules)} but "
                             f"the model has {sorted(counters)}")


def load_checkpoint(path: str | os.PathLike, model: Module, optimizer: Optimizer) -> dict:
    """Restore a checkpoint into existing ``model`` and ``optimizer``; returns its ``extra``.

    Everything is checked before anything is changed (ModelFileError leaves both untouched).
    """
    c = read_file(path)
    if c.kind != "checkpoint":
        raise ModelFileError(f"{c.path}: a model file, not a checkpoint (use minidnn.load)")
    if c.arch != getattr(model, "arch", c.arch):
        raise ModelFileError(f"{c.path}: a checkpoint of {c.arch!r}, not of {model.arch!r}")
    config = json.loads(to_json(getattr(model, "config", c.config), "the model config"))
    if config != c.config:
        raise ModelFileError(f"{c.path}: a checkpoint of {c.arch} with config {c.config}, but "
                             f"the model has {config} (a resumed run needs the same config)")
    check_model(model, c)
    _check_state(model, optimizer, c)
    install(model, c, model.backend if model.backend is not None else NumpyBackend())
    modules = dict(model.named_modules())
    for name, entry in c.modules.items():
        modules[name].counter = entry["counter"]
    params = dict(model.named_parameters())
    optimizer.state.clear()
    for name, st in c.optimizer_state.items():
        p = params[name]
        state = {"_shape": tuple(p.values.shape), "_backend": p.backend}
        state.update({k: p.backend.from_host(a) for k, a in st.arrays.items()})
        state.update(st.scalars)
        optimizer.state[id(p)] = state
    optimizer.step_count = c.step_count
    return dict(c.extra)
