"""Target sparsity instead of lam: a controller that steers the l1 strength during training.

``TargetSparsity`` is a 'pre' optimizer hook. Every ``every`` steps it counts the exact zeros of
the conv/linear weights it controls (one reduction per weight on the device, one integer back
per weight: the same count as the training log's) and moves each group's lam multiplicatively:

    e = clip(log(density) - log(aim(t)), -max_error, max_error)
    I += gain * (lr / peak lr) * e;  log lam = log lam0 + I + proportional * e

i.e. a PI controller on the log-density error (lam is raised while the weights are denser than
wanted, lowered while they are sparser). The integral moves in lr-time (the prox moves weights
by lr per step, so a decaying lr slows the plant and the controller with it). The plant is
lopsided: lam creates zeros within a few hundred steps, but a zero revives only when Adam's
normalised step outgrows lam, slowly. So the controller aims a little denser than the target
(``margin``: aim(t) = target density(t) x (1 + margin)) and approaches it from below. The schedule of the target: nothing moves during the warm-up (the first ``warmup``
fraction of the run, at the starting lam), then the target ramps from the zeros measured at the
end of the warm-up to the final target by ``ramp`` of the run (the cubic ramp of gradual
pruning, Zhu & Gupta 2017), then holds. From ``freeze`` of the run on, at the first
measurement at or below the target (at the latest ``freeze_window`` later), the support is frozen
and lam set to 0: the rest of the run debiases the survivors, so the run ends exactly at the
zero fraction it had when frozen, and nothing revives as the lr decays. A group still short of
its target by then (the zeros lag behind lam) is trimmed to it at the freeze: each of its
layers loses the same share of its survivors, the smallest |w| first, as long as that share is
at most ``trim`` (a larger cut would be magnitude pruning, not a correction: the run then ends
short of its target and says so).

The zeros lag lam: under the l1 prox a weight needs |w| / (lr x lam) steps to reach zero, a few
hundred at lr 1e-3, so in a short run the zeros go on rising long after lam has come down, and a
zero made too many cannot be taken back in time (revival is slow). Hence the overshoot guard:
after the warm-up, the first measurement at which a group's zeros have risen from at most
``target + guard`` to above it freezes that group at the next step (its lam 0, its support
the weights that were zero at both steps: a zero count flickers by tenths of a point from step
to step, weights at the threshold zeroed by one step's prox and moved off zero by the next
update, and a spike would otherwise be locked in; if that leaves it short, it is trimmed).
Whatever the lag, a group then ends at most ``guard`` plus one measurement interval's rise above
its target; a group that never overshoots (the normal case: the aim is denser than the target)
is unaffected.

A group is either one layer with its own target (per-layer targets) or all remaining
controlled layers together (the global target: their total zero fraction is steered, each
layer's lam keeps its ratio to the others, e.g. from ``--lam-per-layer``). Any prox hook that
reads ``optimizer.lam_for`` (``L1Prox``, reweighted l1, hard threshold) is steered the same way.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..names import layer_labels
from .hooks import UpdateHook

Log = Callable[[str], None]
TRAJECTORY_POINTS = 200   # at most this many (step, zeros, lam) points kept in the file metadata


def check_target(value: float, what: str = "target sparsity") -> float:
    """A target zero fraction must lie in (0, 1); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{what} must be a fraction strictly between 0 and 1 "
                          f"(e.g. 0.99 for 99% zeros), got {value!r}")
    return float(value)


@dataclass
class ControlSettings:
    """How the controller moves lam; fractions are of the run's steps."""

    warmup: float = 0.05      # lam held at its start value (dense weights settle first)
    ramp: float = 0.5         # the target reaches its final value here
    freeze: float | None = 0.85   # support frozen and lam set to 0 from here (None: never) ...
    freeze_window: float = 0.05   # ... at the first measurement at or below the target, else here
    every: int = 20           # steps between measurements
    gain: float = 0.1         # integral: log-lam change per unit of log-density error per move
    proportional: float = 0.3  # proportional: log-lam offset per unit of the current error
    max_error: float = 1.0    # the error is clipped to +-this
    margin: float = 0.1       # aim at (1 + margin) x the target density; the trim closes it
    trim: float = 0.5         # at the freeze, cut a group short of its target to it when that
                              # removes at most this share of its survivors (0: never trim)
    guard: float | None = 0.0005  # a group whose zeros rise past target + guard is frozen at
                                  # the next step (the lag would carry it further; None: never)
    min_lam: float = 1e-4     # lam stays within [min_lam, max_lam]
    max_lam: float = 10.0

    def check(self) -> "ControlSettings":
        """ConfigError for settings that cannot steer."""
        if not 0.0 <= self.warmup < 1.0 or not self.warmup <= self.ramp <= 1.0:
            raise ConfigError(f"target control needs 0 <= warmup ({self.warmup}) <= ramp "
                              f"({self.ramp}) <= 1, warmup < 1")
        if self.freeze is not None and not self.ramp <= self.freeze <= 1.0:
            raise ConfigError(f"the support freeze ({self.freeze}) must come after the ramp "
                              f"({self.ramp}) and within the run (<= 1)")
        if not 0.0 <= self.freeze_window <= 1.0:
            raise ConfigError(f"target control: freeze_window must be in [0, 1], "
                              f"got {self.freeze_window}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"target control: every must be an integer >= 1, got {self.every!r}")
        for name in ("gain", "max_error", "min_lam", "max_lam"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"target control: {name} must be > 0")
        if not self.proportional >= 0:
            raise ConfigError("target control: proportional must be >= 0")
        if not 0.0 <= self.trim <= 1.0:
            raise ConfigError(f"target control: trim must be in [0, 1], got {self.trim}")
        if self.guard is not None and not 0.0 <= self.guard < 1.0:
            raise ConfigError(f"target control: guard must be in [0, 1) or None, got {self.guard}")
        if not 0 <= self.margin < 1:
            raise ConfigError(f"target control: margin must be in [0, 1), got {self.margin}")
        if self.min_lam >= self.max_lam:
            raise ConfigError("target control: min_lam must be below max_lam")
        return self


@dataclass
class _Group:
    """Layers steered together towards one target."""

    label: str
    target: float
    names: list[str]
    base: dict[str, float]            # each layer's starting lam
    integral: float = 0.0             # lam = base * exp(integral + proportional * error)
    log_scale: float = 0.0
    start_zeros: float | None = None  # zeros at the end of the warm-up (the ramp's start)
    last_zeros: float = 0.0
    rise: float = 0.0                 # recent rise of the zeros per step (peak held, halving)
    armed: bool = False               # zeros measured at or below target + guard since warm-up
    held: dict | None = None          # the guard fired: {name: host bool zeros} to confirm
    frozen_at: int | None = None      # the step its support was frozen (lam 0 from there)


def ramp_target(start: float, final: float, t: float, t0: float, t1: float) -> float:
    """The scheduled target at run fraction ``t``: ``start`` until ``t0``, the cubic ramp
    final + (start - final)(1 - s)^3, s = (t - t0)/(t1 - t0), then ``final`` from ``t1``."""
    if t <= t0:
        return start
    if t >= t1 or t1 <= t0:
        return final
    s = (t - t0) / (t1 - t0)
    return final + (start - final) * (1.0 - s) ** 3


def density_error(zeros: float, target: float, max_error: float) -> float:
    """log(density) - log(target density), clipped to +-``max_error`` (positive when the
    weights are denser than the target)."""
    error = math.log(max(1.0 - zeros, 1e-9)) - math.log(max(1.0 - target, 1e-9))
    return max(-max_error, min(max_error, error))


class TargetSparsity(UpdateHook):
    """Steer ``optimizer.lam`` so that the controlled weights end at their target zero fraction.

    ``targets``: {parameter name: target} for every steered weight (``layer_targets`` builds it
    from a global target and per-layer ones); ``grouped``: the names whose zeros count together
    (the global target's layers; every other name is its own group). ``steps``: the run's length;
    ``seconds``: its time budget, if it has one (the schedule then follows whichever of steps and
    time is further along, so a run cut short by its budget still freezes and lands; the clock
    starts at the first step and counts evaluations too, so it errs early).
    """

    timing = "pre"

    def __init__(self, targets: dict[str, float], steps: int, settings: ControlSettings | None =
                 None, grouped: set[str] | None = None, log: Log | None = None,
                 log_every: int = 500, seconds: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if not targets:
            raise ConfigError("target control needs at least one layer with a target")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ConfigError(f"target control needs the run's steps (>= 1), got {steps!r}")
        self.settings = (settings or ControlSettings()).check()
        self.targets = {n: check_target(t) for n, t in targets.items()}
        self.steps = int(steps)
        if seconds is not None and not seconds > 0:
            raise ConfigError(f"target control: the time budget must be > 0 s, got {seconds!r}")
        self.seconds, self.clock, self._t0 = seconds, clock, None
        self.grouped = set(grouped or ())
        self.log, self.log_every = log, max(1, int(log_every))
        self.groups: list[_Group] | None = None   # built on the first step (needs the optimizer)
        self.trajectory: list[dict] = []
        self.frozen_at: int | None = None
        self._next_log = 0
        self._peak_lr = 0.0
        self._next = 0                     # the step of the next measurement
        self._last: int | None = None      # the step of the last one

    # ------------------------------------------------------------------ setup
    def _build_groups(self, optimizer) -> list[_Group]:
        params = dict(optimizer.named_params)
        unknown = set(self.targets) - set(params)
        if unknown:
            raise ConfigError(f"target sparsity names unknown parameters: {sorted(unknown)}")
        base = {n: optimizer.lam_for(n, params[n]) for n in self.targets}
        off = sorted(n for n, lam in base.items() if lam <= 0)
        if off:
            raise ConfigError(f"cannot steer weights whose lam is 0 (no l1 prox): {off}; "
                              f"give them a lam > 0 to start from")
        groups = []
        together = [n for n in self.targets if n in self.grouped]
        if together:
            target = self.targets[together[0]]
            if any(self.targets[n] != target for n in together):
                raise ConfigError("the grouped weights must share one target")
            groups.append(_Group("total", target, together, {n: base[n] for n in together}))
        alone = [n for n in self.targets if n not in self.grouped]
        groups += [_Group(label, self.targets[n], [n], {n: base[n]})
                   for n, label in zip(alone, layer_labels(alone))]
        # layers without a target keep their own lam: the optimizer's lam becomes a dict
        optimizer.lam = {n: optimizer.lam_for(n, p) for n, p in optimizer.named_params}
        return groups

    # ------------------------------------------------------------------ the step
    def pre(self, optimizer) -> None:
        if self.groups is None:
            self.groups = self._build_groups(optimizer)
        step = optimizer.step_count        # steps done before this one
        s = self.settings
        if self.frozen_at is not None or step < self._next:
            return
        since = step - self._last if self._last is not None else s.every
        moved = since / s.every
        self._last, self._next = step, step + s.every
        t = self._progress(step)
        params = dict(optimizer.named_params)
        if s.freeze is not None and t >= s.freeze and self._ready(params, t):
            self._freeze(optimizer, step, self._active())
            return
        lr = optimizer.lr
        self._peak_lr = max(self._peak_lr, lr)
        pace = lr / self._peak_lr if self._peak_lr > 0 else 0.0
        for g in self._active():
            before, g.last_zeros = g.last_zeros, zero_fraction([params[n] for n in g.names])
            if t < s.warmup:
                continue
            self._next = min(self._next, self._approach(g, before, step, since))
            if g.held is not None:            # the step after the guard fired: freeze now
                self._freeze(optimizer, step, [g], "overshoot guard: ")
                continue
            if self._overshoots(g):
                g.held = {n: params[n].backend.to_host(params[n].data) == 0 for n in g.names}
                self._next = step + 1
                continue
            aim = 1.0 - (1.0 - g.target) * (1.0 + s.margin)
            if g.start_zeros is None:
                g.start_zeros = min(g.last_zeros, aim)
            target = ramp_target(g.start_zeros, aim, t, s.warmup, s.ramp)
            error = density_error(g.last_zeros, target, s.max_error)
            g.integral = self._clamp(g, g.integral + s.gain * moved * pace * error)
            g.log_scale = self._clamp(g, g.integral + s.proportional * error)
            for n in g.names:
                optimizer.lam[n] = g.base[n] * math.exp(g.log_scale)
        if self.frozen_at is None:
            self._record(step, optimizer)

    def _progress(self, step: int) -> float:
        """The fraction of the run done: of its steps, or of its time budget if further."""
        t = step / self.steps
        if self.seconds is not None:
            now = self.clock()
            if self._t0 is None:
                self._t0 = now
            t = max(t, (now - self._t0) / self.seconds)
        return t

    def _active(self) -> list[_Group]:
        """The groups not frozen yet."""
        return [g for g in self.groups or () if g.frozen_at is None]

    def _approach(self, g: _Group, before: float, step: int, since: int) -> int:
        """The step of the next measurement as far as ``g`` is concerned: sooner than
        ``every`` steps while its zeros rise towards target + guard, at half the time their
        rise (per step: the last one's, or half the one before, whichever is larger) would take
        to get there (at least the next step), so that the guard catches the crossing within
        a step or two however fast the zeros climb."""
        s = self.settings
        g.rise = max(0.5 * g.rise, (g.last_zeros - before) / max(since, 1))
        line = g.target + (s.guard or 0.0)
        if s.guard is None or g.rise <= 0 or g.last_zeros > line:
            return step + s.every
        return step + max(1, min(s.every, int((line - g.last_zeros) / g.rise / 2)))

    def _overshoots(self, g: _Group) -> bool:
        """Has the group just risen past target + guard (from at or below it)? The guard arms
        at a measurement at or below target + guard, so a group that starts too sparse comes
        down first (its lam is lowered) instead of being frozen there."""
        line = g.target + (self.settings.guard if self.settings.guard is not None else 0.0)
        if g.last_zeros <= line:
            g.armed = True
            return False
        return self.settings.guard is not None and g.armed

    def _ready(self, params: dict, t: float) -> bool:
        """Freeze now? Yes once every group is at most at its target (the trim then closes the
        gap exactly; the zero count of weights hovering at the threshold flickers by tenths of
        a point between measurements), or at the end of the freeze window regardless."""
        if t >= self.settings.freeze + self.settings.freeze_window:
            return True
        return all(zero_fraction([params[n] for n in g.names]) <= g.target
                   for g in self._active())

    def _clamp(self, g: _Group, log_scale: float) -> float:
        """``log_scale`` limited so that every lam of the group stays in [min_lam, max_lam]
        (the integral too: no wind-up against a bound)."""
        s = self.settings
        lo = max(math.log(s.min_lam / b) for b in g.base.values())
        hi = min(math.log(s.max_lam / b) for b in g.base.values())
        return min(max(log_scale, lo), hi)

    def _freeze(self, optimizer, step: int, groups: list[_Group], why: str = "") -> None:
        """Freeze the support of ``groups`` and stop their l1 prox (debias the rest); each
        group short of its target is trimmed to it first (at most ``trim`` of its survivors).
        Once every group is frozen, the controller is done (``frozen_at``)."""
        params = dict(optimizer.named_params)
        for g in groups:
            held = None
            if g.held is not None:   # zero at the guard's step and now: transient zeros revive
                held = [g.held[n] & (params[n].backend.to_host(params[n].data) == 0)
                        for n in g.names]
                zeros = sum(int(h.sum()) for h in held) / sum(h.size for h in held)
            else:
                zeros = zero_fraction([params[n] for n in g.names])
            keep = min(1.0, (1.0 - g.target) / max(1.0 - zeros, 1e-12))
            if keep < 1.0 - self.settings.trim:   # far off: a cut that large would be pruning
                keep = 1.0
            freeze_support([params[n] for n in g.names], keep, held)
            for n in g.names:
                optimizer.lam[n] = 0.0
            g.last_zeros = zero_fraction([params[n] for n in g.names])
            g.frozen_at = step
        done = not self._active()
        if done:
            self.frozen_at = step
        self._record(step, optimizer, force=True)
        if self.log is not None:
            which = ", ".join(g.label for g in groups)
            others = ", ".join(g.label for g in self._active())
            rest = "" if done else f" (the others go on: {others})"
            self.log(f"target sparsity: {why}support of {which} frozen at step {step} "
                     f"({self.zeros_text()}); lam 0 from here (debiasing the survivors){rest}")

    def _record(self, step: int, optimizer, force: bool = False) -> None:
        """Keep one trajectory point; log it every ``log_every`` steps."""
        point = {"step": step,
                 "zeros": {g.label: round(g.last_zeros, 6) for g in self.groups},
                 "lam": {g.label: round(optimizer.lam[g.names[0]], 6) for g in self.groups}}
        self.trajectory.append(point)
        if self.log is not None and not force and step >= self._next_log:
            self._next_log = (step // self.log_every + 1) * self.log_every
            lams = ", ".join(f"{k} {v:.4g}" for k, v in point["lam"].items())
            self.log(f"target sparsity: step {step}  {self.zeros_text()}  lam {lams}")

    def zeros_text(self) -> str:
        """'total 98.7% (target 99.0%)' for every group."""
        return ", ".join(f"{g.label} {100 * g.last_zeros:.2f}% (target {100 * g.target:.2f}%)"
                         for g in self.groups or ())

    def summary(self) -> dict:
        """JSON-friendly record of the control for the file's metadata: targets, the frozen
        step, and the trajectory thinned to at most TRAJECTORY_POINTS points (the last kept)."""
        points = self.trajectory
        if len(points) > TRAJECTORY_POINTS:
            stride = math.ceil(len(points) / TRAJECTORY_POINTS)
            points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
        return {"targets": {g.label: g.target for g in self.groups or ()},
                "frozen_at": self.frozen_at,
                "group_frozen_at": {g.label: g.frozen_at for g in self.groups or ()},
                "trajectory": points}


def zero_fraction(params) -> float:
    """Exact zeros over the total size of ``params`` (one reduction per parameter on the device
    and one integer back each, as in the training log)."""
    total = sum(p.numel for p in params)
    nonzero = sum(p.count_nonzero() for p in params)
    return 1.0 - nonzero / total if total else 0.0


def freeze_support(params, keep: float = 1.0, held: list | None = None) -> None:
    """Hold the current zeros of dense ``params`` fixed from now on (a 0/1 mask, re-applied by
    ``FixedMask`` after every update; CSR parameters' zeros are structural already). With
    ``keep`` < 1 each keeps only that share of its nonzeros (round(keep * nnz), the largest
    |w|; ties: lower flat index). ``held`` (one host bool array per parameter) names the zeros
    to hold instead of w == 0: the other current zeros count as survivors of size 0 (the first
    to go when trimming; kept ones revive). A one-off host round trip per parameter, like
    pruning's."""
    if not 0.0 <= keep <= 1.0:
        raise ConfigError(f"keep must be in [0, 1], got {keep}")
    for i, p in enumerate(params):
        if p.is_sparse:
            continue
        w = p.backend.to_host(p.data)
        zero = (w == 0) if held is None else np.asarray(held[i], dtype=bool)
        mask = (~zero).ravel().astype(np.float32)
        alive = np.flatnonzero(mask)
        drop = alive.size - int(round(keep * alive.size))
        if drop > 0:
            order = np.argsort(np.abs(w.ravel()[alive]), kind="stable")
            mask[alive[order[:drop]]] = 0.0
        p.set_mask(mask.reshape(w.shape))


class FreezeSupport(UpdateHook):
    """From step ``at`` on, every zero of the prox-enabled weights stays zero: a 0/1 mask is set
    at ``at`` (ones where w != 0) and, before every later step, the zeros the prox made in the
    step before join it (``Backend.mask_zeros``, one kernel per weight on the device); the
    standard ``FixedMask`` applies it inside the fused update. The zero set only grows from
    there, whatever the lr schedule does, and the prox keeps shrinking the survivors."""

    timing = "pre"

    def __init__(self, at: int, log: Log | None = None) -> None:
        if isinstance(at, bool) or not isinstance(at, (int, np.integer)) or at < 0:
            raise ConfigError(f"the support freeze step must be an integer >= 0, got {at!r}")
        self.at, self.log = int(at), log
        self.frozen_at: int | None = None

    def pre(self, optimizer) -> None:
        if optimizer.step_count < self.at:
            return
        params = [p for _, p in optimizer.named_params if p.prox and not p.is_sparse]
        if self.frozen_at is None:
            for p in params:
                if p.mask is None:
                    ones = p.backend.zeros(p.shape)
                    p.backend.fill(ones, 1.0)
                    p.set_mask(ones)
            self.frozen_at = optimizer.step_count
            if self.log is not None:
                self.log(f"support frozen at step {self.frozen_at}: "
                         f"{100 * zero_fraction(params):.2f}% zeros, and every later zero, "
                         f"held from here")
        for p in params:
            p.backend.mask_zeros(p.values, p.mask)


def layer_targets(model, total: float | None, per_layer: dict | None) -> tuple[dict, set]:
    """({prox parameter name: target}, the names steered together by ``total``): per-layer
    targets for the layers named in ``per_layer`` (short names allowed), ``total`` for the rest
    (None: only the named layers are steered)."""
    from ..names import resolve_layers
    named = resolve_layers(model, per_layer or {})
    targets = {n: check_target(v, f"target sparsity of {n}") for n, v in named.items()}
    grouped = set()
    if total is not None:
        check_target(total)
        for n, _ in model.prox_parameters():
            if n not in targets:
                targets[n] = float(total)
                grouped.add(n)
    if not targets:
        raise ConfigError("no target sparsity given")
    return targets, grouped


__all__ = ["TargetSparsity", "ControlSettings", "FreezeSupport", "freeze_support",
           "zero_fraction", "layer_targets", "ramp_target", "density_error", "check_target"]
