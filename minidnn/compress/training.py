"""Shared pieces of the compression methods: training settings, layer-name specs, measurements."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.base import Module
from ..optim import Constant, Cosine, StepDecay, make_optimizer
from ..optim.base import Optimizer
from ..report import layer_stats, total_stats
from ..train import History, Trainer

Log = Callable[[str], None]


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
    def from_args(cls, args) -> "TrainConfig":
        """Settings from the options of ``cli.add_training_args`` (+ the model's augmentation)."""
        from ..models import training_augment
        return cls(optimizer=args.optimizer, lr=args.lr, schedule=args.schedule,
                   momentum=args.momentum, batch_size=args.batch_size, seed=args.seed,
                   eval_every=args.eval_every, log_every=args.log_every,
                   progress=not args.no_progress, augment=training_augment(args.model))

    def to_dict(self) -> dict:
        """JSON-friendly settings (the augmentation by name)."""
        d = asdict(self)
        d["augment"] = getattr(self.augment, "__name__", None if self.augment is None else
                               repr(self.augment))
        return d

    def schedule_for(self, steps: int, lr: float | None = None):
        """The lr schedule of a run of ``steps`` steps (``lr`` overrides the configured one)."""
        lr = self.lr if lr is None else lr
        if self.schedule == "cosine":
            return Cosine(lr, steps)
        if self.schedule == "step":
            return StepDecay(lr, max(1, steps // 3), 0.1)
        if self.schedule != "constant":
            raise ConfigError(f"unknown schedule {self.schedule!r}: constant, cosine or step")
        return Constant(lr)

    def make_optimizer(self, model: Module, steps: int, lam: float | dict = 0.0,
                       lr: float | None = None, schedule=None) -> Optimizer:
        """The configured optimizer over all of ``model``'s parameters (proximal if lam > 0)."""
        kw = {"momentum": self.momentum} if self.optimizer == "sgd" else {}
        return make_optimizer(self.optimizer, model.named_parameters(),
                              schedule if schedule is not None else self.schedule_for(steps, lr),
                              lam=lam, **kw)

    def fit(self, trainer: Trainer, train_ds: ArrayDataset, test_ds: ArrayDataset | None,
            steps: int, seed_offset: int = 0, log: Log = print) -> History:
        """``trainer.fit`` with these settings (eval/log lines at the configured intervals)."""
        return trainer.fit(train_ds, test_ds, steps, self.batch_size, seed=self.seed + seed_offset,
                           eval_every=self.eval_every, log_every=max(1, min(self.log_every, steps)),
                           augment=self.augment, progress=self.progress, log=log)


# ---------------------------------------------------------------------- layer names
def short_name(param_name: str) -> str:
    """'classifier.fc1.weight' -> 'fc1' (the name used in specs, tables and CSV columns)."""
    parts = param_name.split(".")
    return parts[-2] if len(parts) > 1 and parts[-1] == "weight" else param_name


def parse_layer_spec(spec: str | None, kind=float) -> dict:
    """'fc1=0.5,conv1=0.1' -> {'fc1': 0.5, 'conv1': 0.1}; None or '' -> {}."""
    out: dict = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"per-layer spec item {item!r} is not LAYER=VALUE")
        try:
            out[key.strip()] = kind(value)
        except ValueError:
            raise ConfigError(f"per-layer spec item {item!r}: {value!r} is not a "
                              f"{kind.__name__}") from None
    return out


def parse_values(spec: str | None) -> list[float]:
    """'0.1,0.2, 0.5' -> [0.1, 0.2, 0.5]."""
    try:
        return [float(v) for v in (spec or "").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"not a comma-separated list of numbers: {spec!r}") from None


def resolve_layers(model: Module, spec: dict) -> dict:
    """Map spec keys (full name, name without '.weight', or short name) to prox parameter names."""
    names = [n for n, _ in model.prox_parameters()]
    out = {}
    for key, value in spec.items():
        hits = [n for n in names if key in (n, n.removesuffix(".weight"), short_name(n))]
        if len(hits) != 1:
            what = "matches no" if not hits else f"is ambiguous ({hits}) among the"
            raise ConfigError(f"layer {key!r} {what} compressible layers: "
                              f"{', '.join(short_name(n) for n in names)}")
        out[hits[0]] = value
    return out


def per_layer(model: Module, default, overrides: dict | None) -> dict:
    """{prox parameter name: value}: ``default`` everywhere, except the named layers."""
    resolved = resolve_layers(model, overrides or {})
    return {n: resolved.get(n, default) for n, _ in model.prox_parameters()}


# ---------------------------------------------------------------------- measurements
def evaluate(model: Module, test_ds: ArrayDataset) -> dict:
    """Test loss and accuracy of ``model`` (eval mode)."""
    return Trainer(model, None).evaluate(test_ds)


def compression_figures(model: Module) -> dict:
    """Total and per-layer NNZ, zeros and compression (x) over the conv/linear weights."""
    rows = layer_stats(model)
    total = total_stats(rows)
    return {"nnz": total.nnz, "weights": total.total, "zeros": total.zeros,
            "compression": total.compression,
            "layers": [{"name": short_name(r.name), "param": r.name, "nnz": r.nnz,
                        "total": r.total, "zeros": r.zeros, "compression": r.compression}
                       for r in rows]}


def measure(model: Module, test_ds: ArrayDataset) -> dict:
    """Accuracy, test loss and compression figures of ``model`` as it is now."""
    result = evaluate(model, test_ds)
    return {"accuracy": result["accuracy"], "loss": result["loss"], **compression_figures(model)}


def layer_line(model: Module) -> str:
    """One log line: total and per-layer zeros (%)."""
    fig = compression_figures(model)
    return f"zeros {100 * fig['zeros']:.2f}% ({fig['compression']:.1f}x)  " + "  ".join(
        f"{r['name']} {100 * r['zeros']:.1f}%" for r in fig["layers"])
