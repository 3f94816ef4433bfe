"""How a run trains: the settings (``TrainConfig``), their defaults from the model's recipe, and
the run's length in steps. The one place for the lr schedule and the step count."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from .data import ArrayDataset
from .errors import ConfigError
from .layers.base import Module
from .models import augment_by_name, training_augment, training_recipe
from .optim import make_optimizer, make_schedule
from .optim.base import Optimizer
from .train import History, Trainer

Log = Callable[[str], None]
DEFAULT_EPOCHS = 2.0          # training length when neither steps nor epochs are given
DEFAULT_RECIPE_STEPS = 60_000  # the paper's run length, for recipes that do not name one


@dataclass
class TrainConfig:
    """How a method trains: optimizer, lr and schedule, minibatches, seed, logging."""

    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    momentum: float = 0.9
    batch_size: int = 128
    seed: int = 0
    eval_every: int = 0
    log_every: int = 100
    progress: bool = False
    augment: Callable | None = None   # Trainer.fit's augmentation (a zoo recipe's, e.g. crop+flip)

    @classmethod
    def for_model(cls, model: str, augment: str | None = None, **given) -> "TrainConfig":
        """Settings for a zoo model: ``given`` values (None: not given), else the model's recipe
        (optimizer, lr, schedule, batch size, augmentation), else the defaults above.
        ``augment``: an augmentation by name ("none" turns the recipe's off)."""
        recipe = training_recipe(model)
        keys = ("optimizer", "lr", "schedule", "batch_size")
        values = {k: recipe[k] for k in keys if recipe.get(k) is not None}
        values.update({k: v for k, v in given.items() if v is not None})
        values["augment"] = training_augment(model) if augment is None else augment_by_name(augment)
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-friendly settings (the augmentation by name)."""
        d = asdict(self)
        d["augment"] = getattr(self.augment, "__name__", None if self.augment is None else
                               repr(self.augment))
        return d

    def schedule_for(self, steps: int, lr: float | None = None):
        """The lr schedule of a run of ``steps`` steps (``lr`` overrides the configured one)."""
        return make_schedule(self.schedule, self.lr if lr is None else lr, steps)

    def make_optimizer(self, model: Module, steps: int, lam: float | dict = 0.0,
                       lr: float | None = None, schedule=None) -> Optimizer:
        """The configured optimizer over all of ``model``'s parameters (proximal if lam > 0)."""
        kw = {"momentum": self.momentum} if self.optimizer == "sgd" else {}
        return make_optimizer(self.optimizer, model.named_parameters(),
                              schedule if schedule is not None else self.schedule_for(steps, lr),
                              lam=lam, **kw)

    def fit(self, trainer: Trainer, train_ds: ArrayDataset, test_ds: ArrayDataset | None,
            steps: int, seed_offset: int = 0, log: Log = print, **extra) -> History:
        """``trainer.fit`` with these settings (eval/log lines at the configured intervals);
        ``extra``: ``on_step``, ``max_seconds``."""
        return trainer.fit(train_ds, test_ds, steps, self.batch_size, seed=self.seed + seed_offset,
                           eval_every=self.eval_every, log_every=max(1, min(self.log_every, steps)),
                           augment=self.augment, progress=self.progress, log=log, **extra)


def recipe_value(model: str, key: str, given=None):
    """``given`` if not None, else the model recipe's ``key`` (ConfigError when it has none)."""
    if given is not None:
        return given
    value = training_recipe(model).get(key)
    if value is None:
        raise ConfigError(f"model {model!r} has no recipe value for {key!r}: give it explicitly")
    return value


def training_steps(model: str, train_size: int, batch_size: int, steps: int | None = None,
                   epochs: float | None = None, minutes: float | None = None) -> int:
    """A run's length in steps: ``steps``; else with a time budget (``minutes``) and no
    ``epochs``, the recipe's steps (the budget then ends the run); else ``epochs`` (default 2)
    worth of minibatches."""
    if steps is not None:
        return int(steps)
    if minutes is not None and epochs is None:
        return int(training_recipe(model).get("steps") or DEFAULT_RECIPE_STEPS)
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    return max(1, int(round(epochs * (train_size // batch_size))))
