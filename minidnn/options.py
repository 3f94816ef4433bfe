"""Validated command-line values: argparse ``type=`` callables and cross-option checks.

Each callable turns the option's text into a value or raises ``argparse.ArgumentTypeError``,
so argparse reports ``argument --lr: ...`` on one line and exits with status 2 before any work.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

from .errors import ConfigError

__all__ = ["positive_int", "nonneg_int", "finite_float", "positive_float", "nonneg_float",
           "fraction", "unit_interval", "open_fraction", "positive_fraction", "bounded_int",
           "check_device_option"]


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _checked(parse: Callable[[str], float], ok: Callable[[float], bool], requirement: str,
             name: str, doc: str) -> Callable[[str], float]:
    """An argparse type: ``parse`` the text, then require ``ok(value)``."""
    def convert(text: str):
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    convert.__name__ = convert.__qualname__ = name
    convert.__doc__ = doc
    return convert


positive_int = _checked(_integer, lambda v: v >= 1, "a positive integer", "positive_int",
                        "An integer >= 1 (steps, batch sizes, intervals).")
nonneg_int = _checked(_integer, lambda v: v >= 0, "a non-negative integer", "nonneg_int",
                      "An integer >= 0 (seeds, optional counts where 0 means 'none').")
finite_float = _checked(_real, lambda v: True, "a finite number", "finite_float",
                        "Any finite number (no NaN, no Inf).")
positive_float = _checked(_real, lambda v: v > 0, "a positive number", "positive_float",
                          "A finite number > 0 (learning rates, epochs, minutes, factors).")
nonneg_float = _checked(_real, lambda v: v >= 0, "a non-negative number", "nonneg_float",
                        "A finite number >= 0 (penalty strengths, thresholds).")
unit_interval = _checked(_real, lambda v: 0.0 <= v <= 1.0, "between 0 and 1", "unit_interval",
                         "A number in [0, 1] (densities, sparsities, fractions).")
fraction = _checked(_real, lambda v: 0.0 <= v < 1.0, "at least 0 and below 1", "fraction",
                    "A number in [0, 1) (momentum-like factors, where 1 never forgets).")

open_fraction = _checked(_real, lambda v: 0.0 < v < 1.0, "strictly between 0 and 1",
                         "open_fraction", "A number in (0, 1) (target zero fractions).")
positive_fraction = _checked(_real, lambda v: 0.0 < v <= 1.0, "above 0 and at most 1",
                             "positive_fraction", "A number in (0, 1] (a point of the run).")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for an integer in [low, high] (bits per weight: 1..16)."""
    return _checked(_integer, lambda v: low <= v <= high, f"an integer from {low} to {high}",
                    f"int_{low}_{high}", f"An integer from {low} to {high}.")


def check_device_option(backend: str, device: str | None) -> None:
    """ConfigError when ``--device`` is given for a backend that has no devices to pick."""
    if device is not None and backend == "numpy":
        raise ConfigError("--device applies only to the OpenCL backend (not --backend numpy)")
