"""The training loop: minibatches in, scalars out; everything else stays on the device."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .data import ArrayDataset, iterate_minibatches
from .errors import ConfigError, TrainingDivergedError
from .layers import BatchNorm1d, BatchNorm2d, SoftmaxCrossEntropy
from .layers.model import Model
from .optim.base import Optimizer
from .report import layer_stats, model_device_bytes, total_stats, zeros_line

DIVERGENCE_FACTOR = 100.0   # a mean loss this many times chance level (ln classes): diverged


@dataclass
class History:
    """What a run measured, step by step and per evaluation."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@dataclass
class _Run:
    """The state of one ``Trainer.fit`` call."""

    hist: History
    start: int                  # the optimizer's step count when the run began
    steps: int                  # steps to run (shortened when a time budget runs out)
    log: Callable[[str], None]
    bar: object                 # the tqdm progress bar
    step: int = 0
    t0: float = field(default_factory=time.perf_counter)


def check_fit_args(train: ArrayDataset, batch_size: int, log_every: int,
                   eval_every: int) -> None:
    """ConfigError for settings that would make ``fit`` loop forever or divide by zero."""
    for name, value, least in (("batch_size", batch_size, 1), ("log_every", log_every, 1),
                               ("eval_every", eval_every, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    if len(train) < batch_size:
        raise ConfigError(f"the training set ({train.name}) has {len(train)} images, fewer than "
                          f"one batch of {batch_size}: use a smaller batch size")


class Trainer:
    """Runs training steps of ``model`` with ``optimizer`` on the model's backend."""

    def __init__(self, model: Model, optimizer: Optimizer | None = None,
                 max_loss: float | None = None) -> None:
        """``optimizer`` may be None for evaluation and batch-norm recalibration only.

        ``max_loss``: a logged mean training loss above it (or NaN/Inf) stops ``fit`` with
        TrainingDivergedError; default DIVERGENCE_FACTOR x the loss of chance, ln(classes).
        """
        self.model = model
        self.optimizer = optimizer
        self.backend = model.backend
        self.loss = SoftmaxCrossEntropy(self.backend)
        self.max_loss = max_loss
        self._loss_sum = self.backend.zeros((1,))
        self._loss_count = 0

    def train_step(self, images: np.ndarray, labels: np.ndarray):
        """One forward/backward/update on a host minibatch; returns the loss as a device array.

        Host->device: the images and labels. Device->host: nothing (the loss is summed on the
        device and fetched by ``running_loss``).
        """
        b = self.backend
        x = b.from_host(images)
        y = b.from_host(labels, np.int32)
        self.model.train()
        logits = self.model.forward(x)
        if self.max_loss is None:
            self.max_loss = DIVERGENCE_FACTOR * max(1.0, math.log(logits.shape[-1]))
        loss = self.loss.forward(logits, y)
        self.model.zero_grad()
        self.model.backward(self.loss.backward())
        self.optimizer.step()
        b.axpy(1.0, loss, self._loss_sum)
        self._loss_count += 1
        return loss

    def check_loss(self, loss: float, step: int) -> None:
        """TrainingDivergedError when a mean training loss is NaN/Inf or above ``max_loss``:
        the weights are garbage and training on would only waste the remaining steps."""
        if not math.isfinite(loss):
            raise TrainingDivergedError(f"training diverged at step {step}: the loss is {loss} "
                                        f"(lower the learning rate)")
        if self.max_loss is not None and loss > self.max_loss:
            raise TrainingDivergedError(f"training diverged at step {step}: the loss is "
                                        f"{loss:.3g}, above {self.max_loss:.3g} (lower the "
                                        f"learning rate)")

    def running_loss(self) -> float:
        """Mean training loss since the last call (one scalar comes back)."""
        if not self._loss_count:
            return float("nan")
        value = float(self.backend.to_host(self._loss_sum)[0]) / self._loss_count
        self.backend.fill(self._loss_sum, 0.0)
        self._loss_count = 0
        return value

    def recalibrate_batchnorm(self, dataset: ArrayDataset, batches: int = 50,
                              batch_size: int = 128, seed: int = 0) -> int:
        """Re-estimate every batch norm's running statistics for the current weights: their
        plain average over ``batches`` training minibatches (forward passes only, no update).

        The running averages kept during training lag behind weights that change fast; under
        a strong l1 prox (weights shrinking every step) the lag can halve test accuracy.
        Returns the number of batch-norm layers updated (0: nothing to do)."""
        norms = [m for _, m in self.model.named_modules()
                 if isinstance(m, (BatchNorm1d, BatchNorm2d))]
        if not norms or batches < 1:
            return 0
        saved = [bn.momentum for bn in norms]
        self.model.train()
        try:
            minibatches = iterate_minibatches(dataset, batch_size, shuffle=True, seed=seed,
                                              epoch=0, drop_last=True)
            for k, (images, _) in enumerate(minibatches):
                if k == batches:
                    break
                for bn in norms:  # running = (1 - 1/(k+1)) running + batch/(k+1): the mean
                    bn.momentum = 1.0 / (k + 1)
                self.model.forward(self.backend.from_host(images))
        finally:
            for bn, momentum in zip(norms, saved):
                bn.momentum = momentum
        return len(norms)

    def evaluate(self, dataset: ArrayDataset, batch_size: int = 1000) -> dict:
        """Test loss and accuracy in eval mode (one or two scalars back per batch)."""
        b = self.backend
        if not len(dataset):
            raise ConfigError(f"cannot evaluate on {dataset.name}: it holds no images")
        self.model.eval()
        correct = 0
        loss_sum = b.zeros((1,))
        for images, labels in iterate_minibatches(dataset, batch_size, shuffle=False):
            x, y = b.from_host(images), b.from_host(labels, np.int32)
            logits = self.model.forward(x)
            loss = self.loss.forward(logits, y)
            b.axpy(float(len(labels)), loss, loss_sum)
            correct += int(b.to_host(b.count_correct(logits, y))[0])
        self.model.train()
        n = len(dataset)
        return {"loss": float(b.to_host(loss_sum)[0]) / n, "accuracy": correct / n}

    def fit(self, train: ArrayDataset, test: ArrayDataset | None, steps: int,
            batch_size: int = 128, seed: int = 0, eval_every: int = 0, log_every: int = 100,
            augment=None, progress: bool = True,
            log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None,
            max_seconds: float | None = None) -> History:
        """Train for ``steps`` minibatches (epochs are cycled with a fresh shuffle each), or
        until ``max_seconds`` of training time (evaluations not counted) have passed."""
        from tqdm.auto import tqdm

        check_fit_args(train, batch_size, log_every, eval_every)
        run = _Run(History(), self.optimizer.step_count, steps, log,
                   tqdm(total=steps, disable=not progress, unit="step", dynamic_ncols=True,
                        leave=False))
        per_epoch = max(1, len(train) // batch_size)
        epoch = run.start // per_epoch
        while run.step < run.steps:
            skip = (run.start + run.step) % per_epoch
            batches = iterate_minibatches(train, batch_size, shuffle=True, seed=seed, epoch=epoch,
                                          drop_last=True, augment=augment)
            for i, (images, labels) in enumerate(batches):
                if i < skip:
                    continue
                if run.step >= run.steps or self._out_of_time(run, max_seconds):
                    break
                self.train_step(images, labels)
                run.step += 1
                run.hist.images += len(labels)
                run.bar.update(1)
                if on_step is not None:
                    on_step(run.start + run.step)
                if run.step % log_every == 0 or run.step == run.steps:
                    self._log_loss(run, progress)
                if test is not None and eval_every and (run.step % eval_every == 0
                                                        or run.step == run.steps):
                    self._evaluate_during(run, test)
            epoch += 1
        if self._loss_count:  # stopped by the time budget between two log lines
            self.check_loss(self.running_loss(), run.start + run.step)
        self.backend.synchronize()
        run.hist.seconds += time.perf_counter() - run.t0
        run.bar.close()
        return run.hist

    def _out_of_time(self, run: "_Run", max_seconds: float | None) -> bool:
        """True (and the run shortened to here, with a log line) once the budget is spent;
        checked every 10 steps, confirmed after the device has caught up."""
        if max_seconds is None or not run.step or run.step % 10:
            return False
        for sync in (False, True):
            if sync:
                self.backend.synchronize()
            if run.hist.seconds + time.perf_counter() - run.t0 < max_seconds:
                return False
        run.log(f"time budget of {max_seconds / 60:.1f} min reached at step "
                f"{run.start + run.step}")
        run.steps = run.step
        return True

    def _log_loss(self, run: "_Run", progress: bool) -> None:
        """Record the running loss; without a progress bar, also a log line."""
        loss = self.running_loss()
        self.check_loss(loss, run.start + run.step)
        hist = run.hist
        hist.steps.append(run.start + run.step)
        hist.losses.append(loss)
        run.bar.set_postfix(loss=f"{loss:.4f}")
        if not progress:  # no bar (e.g. a log file): one line per log interval
            seconds = hist.seconds + time.perf_counter() - run.t0
            run.log(f"step {run.start + run.step}/{run.start + run.steps}  loss {loss:.4f}  "
                    f"zeros {100 * self.zero_fraction():.2f}%  "
                    f"{hist.images / seconds if seconds else 0.0:.0f} img/s")

    def _evaluate_during(self, run: "_Run", test: ArrayDataset) -> None:
        """A test evaluation inside a run (its time not counted as training time)."""
        run.hist.seconds += time.perf_counter() - run.t0
        result = self.evaluate(test)
        result.update(step=run.start + run.step, zeros=self.zero_fraction(),
                      layers={r.name: r.zeros for r in layer_stats(self.model)})
        run.hist.evals.append(result)
        run.log(self._eval_line(run.start + run.step, run.hist, result))
        run.t0 = time.perf_counter()

    def _eval_line(self, step: int, hist, result: dict) -> str:
        """One log line: loss, accuracy, zeros (per layer when there are few), device memory."""
        loss = f"loss {hist.losses[-1]:.4f}  " if hist.losses else ""
        held, dense = model_device_bytes(self.model)
        layers = result["layers"]
        per_layer = "" if len(layers) > 8 else "  " + zeros_line(layers)
        return (f"step {step:>6}  {loss}test acc {100 * result['accuracy']:.2f}%  "
                f"zeros {100 * result['zeros']:.2f}%{per_layer}  "
                f"weights on device {held / 1024:.0f} KiB (dense {dense / 1024:.0f} KiB)")

    def zero_fraction(self) -> float:
        """Fraction of conv/linear weights exactly zero (one scalar per layer comes back)."""
        return total_stats(layer_stats(self.model)).zeros
