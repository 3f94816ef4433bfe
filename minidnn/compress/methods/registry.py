"""The one interface of a compression method and the one registry of them.

A method has a name ('spc'), a label and colour for tables and plots, the parameters a sweep
may vary ('lam'), whether it starts from the dense reference weights, and ``run``: one run at
one parameter value, returning its result records. A method that can be debiased afterwards
also has a '+retrain' variant ('spc+retrain'). The sweep, the results (tables, plots) and the
command line all read this registry: adding a method is one module and one ``register`` call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ...data import ArrayDataset
from ...errors import ConfigError
from ...layers.model import Model
from ...optim.hooks import L1Prox
from ...optim.target import ControlSettings

RETRAIN = "+retrain"
Log = Callable[[str], None]


@dataclass
class MethodRun:
    """What one run of a method is given: the settings (a sweep's ``SweepSpec``: training
    config, retraining and per-method options), the model on its backend, the data, the
    training length, the dense reference file (or None), the swept parameter and value, and
    whether to retrain (debias) afterwards."""

    spec: Any
    model: Model
    train_ds: ArrayDataset
    test_ds: ArrayDataset
    steps: int
    reference: str | None
    log: Log
    param: str | None = None
    value: float | None = None
    retrain: bool = False


class Method:
    """Base of the compression methods (subclass, set the class attributes, write ``run``)."""

    name: str = ""
    label: str = ""
    color: str | None = None           # matplotlib colour of its lines
    params: tuple[str, ...] = ()       # what a sweep may vary; () = not swept
    aliases: dict[str, str] = {}       # sweep option name -> parameter (MM: 'lam' -> 'alpha')
    from_reference: bool = False       # starts from the dense reference weights
    retrainable: bool = True           # has a '+retrain' variant
    l1_family: bool = False            # trains with a prox hook steered by lam: ``prox_hook``
    control: ControlSettings = ControlSettings()   # how --target-sparsity steers its lam

    def prox_hook(self, steps: int) -> L1Prox | None:
        """The l1-family prox this method trains with in a run of ``steps`` steps (``minidnn
        train --method`` and ``--target-sparsity`` use it); None outside the family."""
        return None

    def run(self, run: MethodRun) -> tuple[list[dict], Any]:
        """Compress ``run.model``; returns (records, history). A record is ``{'method':
        variant, **measure(model, test)}`` plus 'steps' and 'retrain_steps'."""
        raise NotImplementedError

    def variants(self) -> list[str]:
        """Its names in sweeps and results: the method, then its '+retrain' form."""
        return [self.name] + ([self.name + RETRAIN] if self.retrainable else [])

    def label_of(self, variant: str) -> str:
        """'SpC' / 'SpC (Retrain)'."""
        return f"{self.label} (Retrain)" if variant.endswith(RETRAIN) else self.label

    def param_for(self, option: str) -> str:
        """The parameter a sweep option ('lam', 'sparsity', ...) sets for this method."""
        return self.aliases.get(option, option)


_METHODS: dict[str, Method] = {}


def register(method: Method | type) -> Method | type:
    """Add a method (an instance, or a class used as a decorator) to the registry."""
    instance = method() if isinstance(method, type) else method
    if not instance.name or not instance.label:
        raise ConfigError(f"{type(instance).__name__}: a method needs a name and a label")
    _METHODS[instance.name] = instance
    return method


def unregister(name: str) -> None:
    """Remove a method (tests add toy methods and take them away again)."""
    _METHODS.pop(name, None)


def all_methods() -> list[Method]:
    """Every registered method, in registration order (the order of tables and plots)."""
    return list(_METHODS.values())


def get_method(name: str) -> Method:
    """The method of a name or variant ('pru+retrain' -> Pru); ConfigError for an unknown one."""
    base = name.removesuffix(RETRAIN)
    method = _METHODS.get(base)
    if method is None or name not in method.variants():
        raise ConfigError(f"unknown method {name!r}: choose from {', '.join(sweep_variants())}")
    return method


def l1_methods() -> list[str]:
    """The names of the l1-family methods (what ``minidnn train --method`` may train)."""
    return [m.name for m in all_methods() if m.l1_family]


def sweep_variants() -> list[str]:
    """The names a sweep runs: every variant of every method with a parameter to vary."""
    return [v for m in all_methods() if m.params for v in m.variants()]


def label_of(variant: str) -> str:
    """The label of a variant in tables and legends (the name itself when unknown)."""
    method = _METHODS.get(variant.removesuffix(RETRAIN))
    return method.label_of(variant) if method else variant


def color_of(variant: str) -> str | None:
    """The plot colour of a variant's method (None: matplotlib's next)."""
    method = _METHODS.get(variant.removesuffix(RETRAIN))
    return method.color if method else None


def rank_of(variant: str) -> tuple:
    """Sort key of a variant: registration order, then name (unknown ones last)."""
    order = [v for m in all_methods() for v in m.variants()]
    return (order.index(variant) if variant in order else len(order), variant)
