"""MM: learning-compression by the method of multipliers (Carreira-Perpinan & Idelbayev 2018).

From a pretrained model, alternate
- L step: ``l_steps`` optimizer steps on loss(w) + mu/2 ||w - theta - lam/mu||^2, i.e. the loss
  gradient plus mu (w - theta) - lam, added on the device with ``axpy`` before every update;
- C step: theta = argmin_theta Psi(theta) + mu/2 ||w - lam/mu - theta||^2: the soft-threshold of
  w - lam/mu at alpha/mu for the l1 penalty alpha ||theta||_1, or its top-kappa magnitudes for
  the l0 constraint ||theta||_0 <= kappa (the selection is made on the host, as in pruning);
- multipliers: lam <- lam - mu (w - theta); then mu <- mu * growth.
The result is theta: the model's weights are set to it at the end and its zeros frozen.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..backend.base import Array
from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.base import Module
from ..optim import StepDecay
from ..optim.hooks import UpdateHook
from ..train import Trainer
from .sparsify import freeze_zeros
from ..names import resolve_layers
from ..train_config import Log, TrainConfig
from .measure import evaluate


@dataclass
class MMConfig:
    """The LC schedule: mu_k = mu0 * growth**k, a C step after every ``l_steps`` L steps."""

    penalty: str = "l0"            # 'l0': keep top-kappa; 'l1': alpha * ||theta||_1
    alpha: float | None = None     # l1 strength
    kappa: int | dict | None = None  # l0 budget: total int, or {layer: int} (others unconstrained)
    lc_iters: int = 30
    l_steps: int = 4000
    mu0: float = 9.76e-5
    mu_growth: float = 1.1
    optimizer: str = "sgd"         # L-step optimizer (the paper's MM used SGD with momentum)
    lr: float = 0.01
    momentum: float = 0.9
    lr_decay: float = 1.0          # lr multiplied by this after every LC iteration
    eval_theta: bool = True        # test accuracy of theta after every C step (needs test data)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.penalty == "l1":
            if self.alpha is None or self.alpha < 0:
                raise ConfigError("MM with the l1 penalty needs alpha >= 0")
        elif self.penalty == "l0":
            if self.kappa is None:
                raise ConfigError("MM with the l0 constraint needs a budget kappa")
        else:
            raise ConfigError(f"MM penalty must be 'l0' or 'l1', got {self.penalty!r}")
        if self.lc_iters < 1 or self.l_steps < 1 or self.mu0 <= 0 or self.mu_growth < 1:
            raise ConfigError("MM needs lc_iters >= 1, l_steps >= 1, mu0 > 0, mu_growth >= 1")


def kappa_for_sparsity(model: Module, sparsity: float) -> int:
    """Total l0 budget keeping a fraction 1 - sparsity of all conv/linear weights."""
    return int(round((1.0 - sparsity) * sum(p.numel for _, p in model.prox_parameters())))


def top_kappa_masks(values: dict[str, np.ndarray], kappa: int | dict) -> dict[str, np.ndarray]:
    """0/1 masks keeping the ``kappa`` largest |values| (ties: lower index first): an int is one
    budget over all arrays together, a dict {name: int} one per array (others keep everything)."""
    if isinstance(kappa, dict):
        masks = {}
        for name, v in values.items():
            k = kappa.get(name)
            masks[name] = np.ones(v.shape, np.float32) if k is None else \
                top_kappa_masks({name: v}, int(k))[name]
        return masks
    flat = np.concatenate([np.abs(v.astype(np.float64)).ravel() for v in values.values()])
    if not 0 <= kappa <= flat.size:
        raise ConfigError(f"kappa must be in [0, {flat.size}], got {kappa}")
    keep = np.zeros(flat.size, np.float32)
    keep[np.argsort(-flat, kind="stable")[:kappa]] = 1.0
    masks, start = {}, 0
    for name, v in values.items():
        masks[name] = keep[start:start + v.size].reshape(v.shape)
        start += v.size
    return masks


class LCState:
    """theta and the multipliers lam for every conv/linear weight of a model, on its device."""

    def __init__(self, model: Module) -> None:
        self.model = model
        self.entries: list[tuple[str, object, Array, Array]] = []
        for name, p in model.prox_parameters():
            if p.is_sparse:
                p.to_dense()
            p.set_mask(None)
            b = p.backend
            self.entries.append((name, p, b.copy(p.data), b.zeros(p.shape)))

    def add_penalty_gradient(self, mu: float) -> None:
        """grad += mu (w - theta) - lam, the gradient of mu/2 ||w - theta - lam/mu||^2."""
        for _, p, theta, lam in self.entries:
            if p.grad is None:
                continue
            b = p.backend
            b.axpy(mu, p.data, p.grad)
            b.axpy(-mu, theta, p.grad)
            b.axpy(-1.0, lam, p.grad)

    def shifted(self, mu: float) -> dict[str, Array]:
        """{name: w - lam/mu} (new device arrays): what the C step compresses."""
        out = {}
        for name, p, _, lam in self.entries:
            v = p.backend.copy(p.data)
            p.backend.axpy(-1.0 / mu, lam, v)
            out[name] = v
        return out

    def c_step(self, mu: float, penalty: str, alpha: float | None = None,
               kappa: int | dict | None = None) -> None:
        """theta <- prox/projection of w - lam/mu (l1: soft-threshold alpha/mu; l0: top kappa)."""
        shifted = self.shifted(mu)
        if penalty == "l1":
            for name, p, theta, _ in self.entries:
                p.backend.soft_threshold(shifted[name], alpha / mu, out=theta)
            return
        host = {name: p.backend.to_host(shifted[name]) for name, p, _, _ in self.entries}
        masks = top_kappa_masks(host, kappa)
        for name, p, theta, _ in self.entries:
            b = p.backend
            b.copy_into(theta, shifted[name])
            b.apply_mask(theta, b.from_host(masks[name]))

    def multiplier_step(self, mu: float) -> None:
        """lam <- lam - mu (w - theta)."""
        for _, p, theta, lam in self.entries:
            p.backend.axpy(-mu, p.data, lam)
            p.backend.axpy(mu, theta, lam)

    def theta_nnz(self) -> tuple[int, int]:
        """(nonzeros of theta, total weights): one scalar back per layer."""
        nnz = total = 0
        for _, p, theta, _ in self.entries:
            b = p.backend
            nnz += p.numel - int(b.to_host(b.count_zeros(theta))[0])
            total += p.numel
        return nnz, total

    @contextmanager
    def theta_in_model(self):
        """Temporarily run the model with w = theta (e.g. to evaluate theta)."""
        saved = [p.backend.copy(p.data) for _, p, _, _ in self.entries]
        for _, p, theta, _ in self.entries:
            p.backend.copy_into(p.data, theta)
        try:
            yield self.model
        finally:
            for (_, p, _, _), w in zip(self.entries, saved):
                p.backend.copy_into(p.data, w)

    def commit(self) -> None:
        """Set every weight to its theta."""
        for _, p, theta, _ in self.entries:
            p.backend.copy_into(p.data, theta)
            p.values_changed()


class LCPenalty(UpdateHook):
    """Optimizer hook of the L step: before every update, add the LC penalty's gradient at the
    current ``mu`` (set it as the schedule advances)."""

    timing = "pre"

    def __init__(self, state: LCState, mu: float) -> None:
        self.state, self.mu = state, mu

    def pre(self, optimizer) -> None:
        self.state.add_penalty_gradient(self.mu)


def _resolve_kappa(model: Module, kappa: int | dict | None):
    if isinstance(kappa, dict):
        return {name: int(k) for name, k in resolve_layers(model, kappa).items()}
    return None if kappa is None else int(kappa)


def mm_compress(model: Module, train_ds: ArrayDataset, test_ds: ArrayDataset | None,
                mm: MMConfig, config: TrainConfig | None = None, form: str = "mask",
                log: Log = print) -> list[dict]:
    """Run the LC algorithm on a pretrained ``model`` and leave w = theta, zeros frozen; returns
    per LC iteration mu, theta's nonzeros and accuracy (``config``: batches, seed, logging)."""
    mm.validate()
    config = config or TrainConfig()
    kappa = _resolve_kappa(model, mm.kappa)
    state = LCState(model)
    state.c_step(mm.mu0, mm.penalty, mm.alpha, kappa)  # direct compression: theta = C(w)
    l_config = replace(config, optimizer=mm.optimizer, lr=mm.lr, momentum=mm.momentum)
    inner = l_config.make_optimizer(model, mm.l_steps * mm.lc_iters,
                                    schedule=StepDecay(mm.lr, mm.l_steps, mm.lr_decay))
    penalty = inner.add_hook(LCPenalty(state, mm.mu0))
    trainer = Trainer(model, inner)
    history = []
    for k in range(mm.lc_iters):
        mu = mm.mu0 * mm.mu_growth ** k
        penalty.mu = mu
        hist = l_config.fit(trainer, train_ds, None, mm.l_steps, log=log)
        state.c_step(mu, mm.penalty, mm.alpha, kappa)
        state.multiplier_step(mu)
        nnz, total = state.theta_nnz()
        info = {"iter": k + 1, "step": inner.step_count, "mu": mu, "theta_nnz": nnz,
                "theta_zeros": 1.0 - nnz / total,
                "loss": hist.losses[-1] if hist.losses else float("nan")}
        if test_ds is not None and mm.eval_theta:
            with state.theta_in_model():
                info["theta_accuracy"] = evaluate(model, test_ds)["accuracy"]
        history.append(info)
        log(f"LC {k + 1}/{mm.lc_iters}  step {inner.step_count}  mu {mu:.3g}  theta zeros "
            f"{100 * info['theta_zeros']:.2f}% ({nnz:,} nonzero)"
            + (f"  theta acc {100 * info['theta_accuracy']:.2f}%" if "theta_accuracy" in info
               else ""))
    state.commit()
    freeze_zeros(model, form)
    return history


