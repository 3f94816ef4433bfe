"""Reading and writing model weights for the methods: minidnn.io HDF5 files, or plain .npz
(the sweep's dense reference)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ..io import load, save
from ..layers.base import Module

META_KEY = "__metadata__"


def save_state(model: Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the model's state_dict (dense host arrays) and JSON metadata to an .npz file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **model.state_dict(), **{META_KEY: np.array(json.dumps(metadata or {}))})
    return path


def load_state(model: Module, path: str | Path) -> dict:
    """Load an .npz written by ``save_state`` into ``model``; returns its metadata."""
    try:
        with np.load(path) as z:
            state = {k: z[k] for k in z.files if k != META_KEY}
            meta = json.loads(str(z[META_KEY])) if META_KEY in z.files else {}
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable .npz weights file ({exc})") from None
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: weights do not fit this model: {exc}") from None
    return meta


def save_model(model: Module, path: str | Path, metadata: dict | None = None,
               values_dtype: str = "float32") -> Path:
    """Save with ``minidnn.io.save`` (.h5), or as .npz when the path ends in .npz."""
    path = Path(path)
    if path.suffix == ".npz":
        return save_state(model, path, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, path, metadata=metadata or {}, values_dtype=values_dtype)
    return path


def load_weights(model: Module, path: str | Path) -> dict:
    """Copy the weights of a saved model (.npz, or .h5 via ``minidnn.io.load``) into ``model``
    (names and shapes must match); returns the file's metadata when known."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.suffix == ".npz":
        return load_state(model, path)
    loaded = load(path, model.backend)
    try:
        model.load_state_dict(loaded.state_dict())
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: weights do not fit this model: {exc}") from None
    return dict(getattr(loaded, "metadata", {}) or {})
