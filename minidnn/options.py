"""Validated command-line values: argparse ``type=`` callables and cross-option checks.

Each callable turns the option's text into a value or raises ``argparse.ArgumentTypeError``,
so argparse reports ``argument --lr: ...`` on one line and exits with status 2 before any work.
"""
from __future__ import annotations

import argparse
import math

from .errors import ConfigError

__all__ = ["positive_int", "nonneg_int", "finite_float", "positive_float", "nonneg_float",
           "fraction", "unit_interval", "check_device_option"]


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


def positive_int(text: str) -> int:
    """An integer >= 1 (steps, batch sizes, intervals)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0 (seeds, optional step counts where 0 means 'none')."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no NaN, no Inf)."""
    return _real(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, epochs, minutes, growth factors)."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (penalty strengths, thresholds)."""
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (densities, sparsities, fractions of a reference)."""
    value = _real(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1) (momentum-like factors, where 1 never forgets)."""
    value = _real(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def check_device_option(backend: str, device: str | None) -> None:
    """ConfigError when ``--device`` is given for a backend that has no devices to pick."""
    if device is not None and backend == "numpy":
        raise ConfigError("--device applies only to the OpenCL backend (not --backend numpy)")
