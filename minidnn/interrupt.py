"""Ctrl-C during training: stop at the next step boundary, keep what can be kept, say so.

A SIGINT that lands inside an optimizer step would leave some parameters updated and others
not; a checkpoint written then would not resume exactly. ``StopOnInterrupt`` turns the first
Ctrl-C into a request that the training loop honours between steps (``stop_point``); a second
Ctrl-C interrupts at once (KeyboardInterrupt).
"""
from __future__ import annotations

import signal
import threading
from typing import Callable

from .errors import TrainingInterrupted

__all__ = ["StopOnInterrupt"]


class StopOnInterrupt:
    """Context manager deferring Ctrl-C to ``stop_point`` calls (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def stop_point(self, step: int, keep: Callable[[], str]) -> None:
        """Between two steps: after a Ctrl-C, call ``keep`` (which saves what it can and says
        what it kept) and raise TrainingInterrupted with that line."""
        if self.requested:
            raise TrainingInterrupted(f"interrupted (Ctrl-C) at step {step}: {keep()}")
