"""SGD, RMSProp, Adam and their proximal forms (paper Algorithms 1-2): one fused kernel each."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Optimizer


class SGD(Optimizer):
    """SGD with optional momentum / Nesterov (PyTorch convention)."""

    def __init__(self, params, lr=0.01, momentum: float = 0.0, nesterov: bool = False,
                 lam=0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, lam, weight_decay)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ConfigError("SGD: nesterov needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _init_state(self, p, state):
        state["velocity"] = p.backend.zeros(p.values.shape) if self.momentum else None

    def _update(self, p, state, lr, weight_decay, threshold, mask):
        p.backend.sgd_update(p.values, p.grad, state["velocity"], lr, self.momentum,
                             self.nesterov, weight_decay, threshold, mask)


class RMSProp(Optimizer):
    """RMSProp: w -= lr * g / (sqrt(E[g^2]) + eps)."""

    def __init__(self, params, lr=0.001, alpha: float = 0.99, eps: float = 1e-8, lam=0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, lam, weight_decay)
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"RMSProp: alpha must be in [0, 1), got {alpha}")
        self.alpha, self.eps = float(alpha), float(eps)

    def _init_state(self, p, state):
        state["square_avg"] = p.backend.zeros(p.values.shape)

    def _update(self, p, state, lr, weight_decay, threshold, mask):
        p.backend.rmsprop_update(p.values, p.grad, state["square_avg"], lr, self.alpha,
                                 self.eps, weight_decay, threshold, mask)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba), the paper's default optimizer."""

    def __init__(self, params, lr=0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, lam=0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, lam, weight_decay)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"Adam: betas must be in [0, 1), got {betas}")
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)

    def _init_state(self, p, state):
        state["m"] = p.backend.zeros(p.values.shape)
        state["v"] = p.backend.zeros(p.values.shape)
        state["step"] = 0

    def _update(self, p, state, lr, weight_decay, threshold, mask):
        state["step"] += 1
        p.backend.adam_update(p.values, p.grad, state["m"], state["v"], lr, self.beta1,
                              self.beta2, self.eps, state["step"], weight_decay, threshold, mask)


def _require_lam(cls_name: str, lam) -> None:
    values = lam.values() if isinstance(lam, dict) else [lam]
    if not any(v > 0 for v in values):
        raise ConfigError(f"{cls_name} needs lam > 0 (use the plain optimizer for lam = 0)")


class ProxSGD(SGD):
    """SGD followed by l1 soft-thresholding every step (Algorithm 1)."""

    def __init__(self, params, lr=0.01, lam=1e-4, **kw) -> None:
        _require_lam("ProxSGD", lam)
        super().__init__(params, lr, lam=lam, **kw)


class ProxRMSProp(RMSProp):
    """RMSProp followed by l1 soft-thresholding every step."""

    def __init__(self, params, lr=0.001, lam=1e-4, **kw) -> None:
        _require_lam("ProxRMSProp", lam)
        super().__init__(params, lr, lam=lam, **kw)


class ProxAdam(Adam):
    """Adam followed by l1 soft-thresholding every step (Algorithm 2, the paper's default)."""

    def __init__(self, params, lr=0.001, lam=1e-4, **kw) -> None:
        _require_lam("ProxAdam", lam)
        super().__init__(params, lr, lam=lam, **kw)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSProp, "adam": Adam}


def make_optimizer(name: str, params, lr, lam=0.0, **kw) -> Optimizer:
    """Optimizer by name ('sgd', 'rmsprop', 'adam'); with lam > 0 it is the proximal form."""
    key = name.lower().removeprefix("prox-").removeprefix("prox")
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}: choose from {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[key](params, lr=lr, lam=lam, **kw)
