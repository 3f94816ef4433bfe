"""Low-rank compression of a trained model (issue 17): ranks chosen per layer (energy, VBMF) or
for all layers at once (genetic search), then the layers replaced one at a time, each followed
by a short fine-tuning of the whole network (Astrid & Lee 2018's iterative one-shot hybrid
fine-tuning: decompose, fine-tune, next).

The result is a plain ``Model`` holding the same layer objects (a zoo class would rebuild its
dense layers from a file by name), so a file records its factorized layers and their ranks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.lowrank import FACTORIZED
from ..layers.model import Model
from ..train import Trainer
from ..train_config import Log, TrainConfig
from .factorize import (candidates, dense_weights, factorize, factorized_weights, module_at,
                        replace_module, select_ranks)
from .rank_search import GASettings, search_ranks
from .sparsify import to_inference_form
from .ranks import parse_rank_rule

FINETUNE_LR = 1e-4   # Adam, a tenth of the zoo recipes' training lr
ALGORITHMS = {"tucker2": ("hosvd", "hooi"), "cp": ("tpm", "als"), "svd": ()}


@dataclass
class DecomposeSettings:
    """What to factorize and how: the method ('tucker2', 'cp': convs in that form and linear
    layers by SVD; 'svd': linear layers only), the rank rule ('energy:E', 'vbmf', 'ga'), the
    conv algorithm (None: HOSVD / tensor power method), fine-tuning steps after each layer
    (0: none) at ``finetune_lr`` (None: 1e-4, Adam), ``l1``: the l1 prox strength of the
    fine-tuning (> 0: the factors train sparse and are stored as CSR where at most half dense),
    and the GA's held-out images (taken from the end of the training set) and settings."""

    method: str = "tucker2"
    ranks: str = "energy:0.9"
    algorithm: str | None = None
    finetune_steps: int = 0
    finetune_lr: float | None = None
    heldout: int = 5000
    l1: float = 0.0
    ga: GASettings = field(default_factory=GASettings)
    seed: int = 0

    def check(self) -> tuple[str, float | None]:
        """The parsed rank rule; ConfigError for any invalid setting."""
        if self.method not in ALGORITHMS:
            raise ConfigError(f"unknown decomposition method {self.method!r}: choose from "
                              f"{', '.join(ALGORITHMS)}")
        if self.algorithm is not None and self.algorithm not in ALGORITHMS[self.method]:
            allowed = ", ".join(ALGORITHMS[self.method]) or "none (linear layers use SVD)"
            raise ConfigError(f"--algorithm {self.algorithm!r} does not apply to "
                              f"{self.method}: choose from {allowed}")
        if not isinstance(self.finetune_steps, int) or self.finetune_steps < 0:
            raise ConfigError(f"finetune steps must be >= 0, got {self.finetune_steps!r}")
        if self.finetune_lr is not None and not self.finetune_lr > 0:
            raise ConfigError(f"finetune lr must be > 0, got {self.finetune_lr!r}")
        if not self.l1 >= 0 or (self.l1 > 0 and not self.finetune_steps):
            raise ConfigError(f"l1 must be >= 0 and needs fine-tuning steps, got {self.l1!r}")
        if not isinstance(self.heldout, int) or self.heldout < 1:
            raise ConfigError(f"held-out images must be >= 1, got {self.heldout!r}")
        return parse_rank_rule(self.ranks)


def split_heldout(train_ds: ArrayDataset, count: int) -> tuple[ArrayDataset, ArrayDataset]:
    """(training part, held-out part): the last ``count`` training images are held out."""
    if count >= len(train_ds):
        raise ConfigError(f"cannot hold out {count} of {len(train_ds)} training images")
    cut = len(train_ds) - count

    def part(sl: slice) -> ArrayDataset:
        return ArrayDataset(train_ds.images[sl], train_ds.labels[sl], train_ds.name,
                            train_ds.classes, train_ds.mean, train_ds.std, train_ds.source)
    return part(slice(0, cut)), part(slice(cut, None))


def plain_model(model: Model) -> Model:
    """A ``Model`` with ``model``'s children (the same objects), input shape and classes."""
    if type(model) is Model:
        return model
    out = Model()
    for name, child in model._modules.items():
        setattr(out, name, child)
    object.__setattr__(out, "backend", model.backend)
    object.__setattr__(out, "training", model.training)
    for attr in ("input_shape", "num_classes"):
        object.__setattr__(out, attr, getattr(model, attr))
    return out


def decompose_model(model: Model, settings: DecomposeSettings, train_ds: ArrayDataset,
                    config: TrainConfig | None = None, log: Log = print) -> tuple[Model, list]:
    """(the factorized model, one record per candidate layer: path, form, ranks, weights
    dense -> factorized, or why it stayed dense). ``model`` must be on its backend."""
    rule, value = settings.check()
    config = config or TrainConfig()
    arch = model.arch
    model = plain_model(model)
    choices = candidates(model, settings.method)
    if not choices:
        raise ConfigError(f"the model has no layer that {settings.method} factorizes")
    fit_ds, heldout = split_heldout(train_ds, settings.heldout) if rule == "ga" \
        else (train_ds, None)
    searched = search_ranks(model, choices, heldout, settings.ga, log) if rule == "ga" else {}
    records = []
    for i, choice in enumerate(choices):
        m = module_at(model, choice.path)
        ranks = searched.get(choice.path) or select_ranks(m, choice.form, rule, value)
        rec = {"layer": choice.path, "form": choice.form, "ranks": ranks,
               "dense_weights": dense_weights(m),
               "weights": factorized_weights(choice.form, m, ranks)}
        if rec["weights"] >= rec["dense_weights"]:
            log(f"{choice.path}: {choice.form} at {ranks} would not be smaller "
                f"({rec['weights']:,} >= {rec['dense_weights']:,} weights): kept dense")
            records.append({**rec, "form": "dense", "weights": rec["dense_weights"]})
            continue
        replace_module(model, choice.path, factorize(m, choice.form, ranks, settings.algorithm,
                                                     settings.seed))
        log(f"{choice.path}: {choice.form} ranks {ranks}: {rec['dense_weights']:,} -> "
            f"{rec['weights']:,} weights")
        if settings.finetune_steps:
            finetune(model, fit_ds, settings, config, i, log)
        records.append(rec)
    object.__setattr__(model, "arch", f"{arch}-{settings.method}")
    if settings.l1 > 0:
        csr = to_inference_form(model)
        log(f"sparse factors (l1 {settings.l1:g}): {len(csr)} weight(s) stored as CSR")
    return model, records


def finetune(model: Model, train_ds: ArrayDataset, settings: DecomposeSettings,
             config: TrainConfig, index: int, log: Log) -> None:
    """``settings.finetune_steps`` updates of the whole model with a fresh optimizer."""
    steps = settings.finetune_steps
    lr = settings.finetune_lr if settings.finetune_lr is not None else FINETUNE_LR
    opt = config.make_optimizer(model, steps, lam=settings.l1, lr=lr)
    quiet = lambda line: None  # noqa: E731  (per-step loss lines; the summary is logged)
    hist = config.fit(Trainer(model, opt), train_ds, None, steps, seed_offset=100 + index,
                      log=quiet)
    loss = hist.losses[-1] if hist.losses else float("nan")
    log(f"  fine-tuned {steps} steps at lr {lr:g} (last training loss {loss:.4f})")


def model_ranks(model: Model) -> list[dict]:
    """Each factorized layer of ``model``: path, form and ranks (reports)."""
    return [{"layer": p, "form": m.form, "ranks": m.ranks()}
            for p, m in model.named_modules() if isinstance(m, FACTORIZED)]

