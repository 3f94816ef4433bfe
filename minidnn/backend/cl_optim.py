"""OpenCL optimizer steps, the ``OptimOps`` group of OpenCLBackend: the fused SGD, RMSProp and
Adam updates (each with the l1 prox and the fixed mask folded in, ``cl_kernels/optim.cl``), and
the soft-threshold and mask on their own (``elementwise.cl``) for the unfused hook path.
"""
from __future__ import annotations

import numpy as np

from .base import Array
from .cl_nn import launch_floats8
from .cl_runtime import CLRuntime

_f32, _i32, _u32 = np.float32, np.int32, np.uint32


class OptimOps:
    """Optimizer updates and the prox/mask primitives on a ``CLRuntime``."""

    provides = ("sgd_update", "rmsprop_update", "adam_update", "soft_threshold", "apply_mask")

    def __init__(self, runtime: CLRuntime) -> None:
        self.rt = runtime

    def _opt(self, name: str, w: Array, *args) -> None:
        """Launch a fused optimizer kernel of optim.cl over w (n appended)."""
        launch_floats8(self.rt, "optim", name, int(w.size), *args, _u32(w.size))

    def _mask_args(self, mask: Array | None, threshold: float) -> tuple:
        """(threshold, has_mask) kernel arguments; the prox runs only for threshold > 0."""
        return (_f32(max(threshold, 0.0)), _i32(mask is not None))

    def sgd_update(self, w: Array, g: Array, velocity: Array | None, lr: float, momentum: float,
                   nesterov: bool, weight_decay: float, threshold: float,
                   mask: Array | None) -> None:
        """One fused SGD step (+ prox, + mask)."""
        use_v = velocity is not None and momentum != 0
        self._opt("sgd_update", w, w, g, velocity if use_v else self.rt.dummy,
                  self.rt.dummy if mask is None else mask, _f32(lr), _f32(momentum),
                  _i32(use_v), _i32(bool(nesterov)), _f32(weight_decay),
                  *self._mask_args(mask, threshold))

    def rmsprop_update(self, w: Array, g: Array, square_avg: Array, lr: float, alpha: float,
                       eps: float, weight_decay: float, threshold: float,
                       mask: Array | None) -> None:
        """One fused RMSProp step (+ prox, + mask)."""
        self._opt("rmsprop_update", w, w, g, square_avg, self.rt.dummy if mask is None else mask,
                  _f32(lr), _f32(alpha), _f32(1 - alpha), _f32(eps), _f32(weight_decay),
                  *self._mask_args(mask, threshold))

    def adam_update(self, w: Array, g: Array, m: Array, v: Array, lr: float, beta1: float,
                    beta2: float, eps: float, step: int, weight_decay: float, threshold: float,
                    mask: Array | None) -> None:
        """One fused Adam step with bias correction (+ prox, + mask)."""
        self._opt("adam_update", w, w, g, m, v, self.rt.dummy if mask is None else mask,
                  _f32(lr), _f32(beta1), _f32(1 - beta1), _f32(beta2), _f32(1 - beta2),
                  _f32(1 - beta1 ** step), _f32(1 - beta2 ** step), _f32(eps),
                  _f32(weight_decay), *self._mask_args(mask, threshold))

    def soft_threshold(self, w: Array, threshold: float, out: Array | None = None) -> Array:
        """sign(w) * max(|w| - threshold, 0); in place when out is w."""
        out = self.rt.empty(w.shape, np.float32) if out is None else out
        launch_floats8(self.rt, "elementwise", "soft_threshold", w.size, w, out, _f32(threshold),
                       _u32(w.size))
        return out

    def apply_mask(self, w: Array, mask: Array) -> None:
        """In place w *= mask."""
        launch_floats8(self.rt, "elementwise", "mul", w.size, w, mask, w, _u32(w.size))
