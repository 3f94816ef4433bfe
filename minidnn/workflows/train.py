"""The train workflow: SpC (or dense) training -> debiasing -> batch-norm recalibration ->
inference form -> save; what ``minidnn train`` runs, callable from Python with the same result."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..compress.debias import retrain
from ..compress.flops import flops_report
from ..compress.methods import get_method, l1_methods
from ..compress.mpd import MPDSettings, apply_mpd
from ..compress.sparse_train import SPARSE_TRAIN_DENSITY, SparseSwitch, check_density
from ..compress.sparsify import to_inference_form
from ..compress.spc import layer_lams
from ..errors import ConfigError
from ..interrupt import StopOnInterrupt
from ..io import load_checkpoint, save_checkpoint
from ..names import parse_layer_spec
from ..optim.base import Optimizer
from ..optim.hooks import replace_prox
from ..optim.target import (ControlSettings, FreezeSupport, TargetSparsity, check_target,
                            layer_targets)
from ..outputs import check_outputs, write_or_rescue
from ..report import format_table, layer_stats, model_device_bytes, total_stats
from ..train import Trainer
from ..models import default_lam
from ..train_config import Log, TrainConfig, training_steps
from .common import Setup, save_model_file, set_up
from ..compress.quantize_stage import QuantizeSettings, quantize_stage
from .quantize import save_quantized

TRAIN_METHODS = (*l1_methods(), "mpd", "dense")   # the l1 family, block-diagonal masks, or none


@dataclass
class TrainSpec:
    """Everything ``train_model`` does; None means the model recipe's value."""

    model: str
    data: str | None = None
    data_root: str | None = None
    backend: str = "auto"
    device: str | None = None
    method: str = "spc"                    # an l1-family method ('spc', 'rwl1'); 'mpd': block-
    #                                        diagonal masks (l1 inside the blocks if lam > 0);
    #                                        'dense': no l1
    mpd: MPDSettings | None = None         # method 'mpd': blocks, per layer, conv layers
    lam: float | None = None
    lam_per_layer: str | dict | None = None   # 'fc1=0.5,conv1=0.1' or {layer: lam}: overrides
    target_sparsity: float | None = None   # steer lam so the weights end this fraction zero
    target_sparsity_per_layer: str | dict | None = None   # 'fc1=0.995' or {layer: target}
    freeze_support: float | None = None    # fraction of the run where the zeros freeze
    control: ControlSettings | None = None  # how lam is steered (default ControlSettings())
    config: TrainConfig | None = None      # default: TrainConfig.for_model(model)
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None           # time budget of the main training phase
    bn_batches: int = 50
    retrain_steps: int = 0
    retrain_lr: float | None = None
    retrain_form: str = "auto"             # 'auto': CSR where sparse training applies
    csr_density: float = 0.5
    sparse_density: float = SPARSE_TRAIN_DENSITY  # frozen weights at most this dense train as
    #                                               CSR (the controller's freeze, debiasing); 0: off
    out: str | None = None                 # default runs/<model>.h5
    values: str = "float32"
    json: str | None = None
    checkpoint: str | None = None
    checkpoint_every: int = 500
    quantize: QuantizeSettings | None = None   # a final quantize stage (saves format 3)


def train_model(spec: TrainSpec, log: Log = print) -> dict:
    """Run the whole pipeline of ``spec``; returns the figures written to the model file."""
    config = spec.config or TrainConfig.for_model(spec.model)
    if spec.method not in TRAIN_METHODS:
        raise ConfigError(f"unknown training method {spec.method!r}: choose from "
                          f"{', '.join(TRAIN_METHODS)}")
    _check_control(spec)
    check_density(spec.sparse_density)
    check_outputs({"--out": _out_path(spec), "--json": spec.json,
                   "--checkpoint": spec.checkpoint})
    if spec.quantize is not None:
        spec.quantize.check()
    s = set_up(spec.model, spec.data, spec.data_root, spec.backend, spec.device, config.seed)
    lam = 0.0 if spec.method == "dense" else spec.lam
    if spec.method == "mpd":   # l1 only when asked for: SpC inside the blocks
        lam = lam or 0.0
        apply_mpd(s.model, replace(spec.mpd or MPDSettings(), seed=config.seed), log)
    if lam is None:  # the recipe's; a class without one gets the tested value for its dataset
        lam, why = default_lam(s.model, s.data)
        if "lam" not in getattr(s.model, "recipe", {}):  # not the model's own setting: say so
            log(f"note: lam {lam:g}: {why}; set it with --lam")
    steps = training_steps(spec.model, len(s.train_ds), config.batch_size, spec.steps,
                           spec.epochs, spec.minutes)
    log(_header(spec, s, config, lam, steps))
    trainer, hist, hooks = _main_phase(spec, s, config, lam, steps, log)
    result = {"model": spec.model, "data": s.data, "method": spec.method, "lam": lam,
              "lam_per_layer": _spec_text(spec.lam_per_layer), "optimizer": config.optimizer,
              "lr": config.lr, "steps": trainer.optimizer.step_count, "seed": config.seed,
              "backend": s.backend.device_name, "train_seconds": round(hist.seconds, 2)}
    result.update(_control_record(hooks))
    if spec.method == "mpd":
        result["mpd"] = _mpd_record(spec.mpd or MPDSettings())
    if spec.retrain_steps:
        result.update(_debias(spec, s, config, trainer, log))
    _finish(spec, s, config, result, log)
    return result


def _out_path(spec: TrainSpec) -> Path:
    """--out, else runs/<name>.h5 (a zoo name, or the class name of 'nets.py:TinyNet')."""
    return Path(spec.out or Path("runs") / f"{spec.model.rsplit(':', 1)[-1]}.h5")


def _spec_text(per_layer: str | dict | None) -> str | None:
    """The per-layer lam as text: as given, or {'fc1': 0.5} -> 'fc1=0.5'; None when empty."""
    if isinstance(per_layer, dict):
        return ",".join(f"{k}={v:g}" for k, v in per_layer.items()) or None
    return per_layer or None


def _header(spec: TrainSpec, s: Setup, config: TrainConfig, lam: float, steps: int) -> str:
    per_layer = _spec_text(spec.lam_per_layer)
    return (f"minidnn: {spec.model} on {s.data} from {s.train_ds.source} "
            f"({len(s.train_ds)} train / {len(s.test_ds)} test), "
            f"{s.backend.device_name}, {config.optimizer}{' prox' if lam else ''} lr {config.lr} "
            f"lam {lam}{' (per layer ' + per_layer + ')' if per_layer else ''}"
            + _target_text(spec) + ", "
            f"{steps} steps of {config.batch_size}"
            + (f" or {spec.minutes:g} minutes" if spec.minutes is not None else ""))


def _target_text(spec: TrainSpec) -> str:
    """' steered to 99% zeros (per layer fc1=0.995)' for the header; '' without a target."""
    per_layer = _spec_text(spec.target_sparsity_per_layer)
    if spec.target_sparsity is None and not per_layer:
        return ""
    total = "" if spec.target_sparsity is None else f" to {100 * spec.target_sparsity:g}% zeros"
    return f" (start), steered{total}" + (f" (per layer {per_layer})" if per_layer else "")


def _main_phase(spec: TrainSpec, s: Setup, config: TrainConfig, lam: float, steps: int,
                log: Log):
    """Train (resuming from the checkpoint when there is one); (trainer, history)."""
    per_layer = spec.lam_per_layer
    if not isinstance(per_layer, dict):
        per_layer = parse_layer_spec(per_layer)
    opt_lam = layer_lams(s.model, lam, per_layer) if lam else 0.0
    opt = config.make_optimizer(s.model, steps, lam=opt_lam)
    if lam:
        replace_prox(opt, get_method(spec.method).prox_hook(steps))
    hooks = [opt.add_hook(h) for h in _control_hooks(spec, s, lam, steps, log)]
    if spec.sparse_density > 0 and spec.checkpoint is None and \
            any(isinstance(h, TargetSparsity) for h in hooks):
        # after the controller: a group it freezes switches to CSR before that step's update
        # (not with --checkpoint: a checkpoint holds dense weights and dense optimizer state)
        hooks.append(opt.add_hook(SparseSwitch(spec.sparse_density, log)))
    trainer = Trainer(s.model, opt)
    with StopOnInterrupt() as interrupt:
        # resumes from the checkpoint first: step_count moves before the steps left are counted
        on_step = checkpointing(spec.checkpoint, spec.checkpoint_every, s.model, opt, log,
                                interrupt)
        hist = config.fit(trainer, s.train_ds, s.test_ds, steps - opt.step_count, log=log,
                          on_step=on_step,
                          max_seconds=None if spec.minutes is None else 60 * spec.minutes)
    log(f"trained {opt.step_count} steps in {hist.seconds:.1f} s "
        f"({hist.images_per_second:.0f} images/s)")
    return trainer, hist, hooks


def _check_control(spec: TrainSpec) -> None:
    """ConfigError for target/freeze settings that cannot work, before any work is done."""
    if spec.target_sparsity is not None:
        check_target(spec.target_sparsity)
    fs = spec.freeze_support
    if fs is not None and (isinstance(fs, bool) or not isinstance(fs, (int, float))
                           or not 0.0 < fs <= 1.0):
        raise ConfigError(f"freeze_support must be a fraction of the run in (0, 1], got {fs!r}")
    if spec.control is not None:
        spec.control.check()
    targeted = spec.target_sparsity is not None or bool(spec.target_sparsity_per_layer)
    if spec.method in ("dense", "mpd") and (targeted or fs is not None):
        raise ConfigError("--target-sparsity and --freeze-support act on the l1 prox: they need "
                          f"an l1 method, not --method {spec.method}")
    if spec.mpd is not None:
        if spec.method != "mpd":
            raise ConfigError("block settings (--blocks, --blocks-per-layer, --conv-blocks) "
                              "need --method mpd")
        spec.mpd.check()


def _control_hooks(spec: TrainSpec, s: Setup, lam: float, steps: int, log: Log) -> list:
    """The hooks of --target-sparsity (the lam controller, which also freezes the support) or
    of --freeze-support alone; [] for a plain run."""
    targeted = spec.target_sparsity is not None or bool(spec.target_sparsity_per_layer)
    if not targeted:
        if spec.freeze_support is None or not lam:
            return []
        return [FreezeSupport(int(round(spec.freeze_support * steps)), log)]
    if not lam:
        raise ConfigError("--target-sparsity steers the l1 strength from a starting lam > 0 "
                          "(--lam 0 gives it nothing to steer)")
    per_layer = spec.target_sparsity_per_layer
    if not isinstance(per_layer, dict):
        per_layer = parse_layer_spec(per_layer)
    targets, grouped = layer_targets(s.model, spec.target_sparsity, per_layer)
    settings = spec.control or get_method(spec.method).control
    if spec.freeze_support is not None:
        settings = replace(settings, freeze=spec.freeze_support,
                           ramp=min(settings.ramp, spec.freeze_support))
    seconds = None if spec.minutes is None else 60.0 * spec.minutes
    return [TargetSparsity(targets, steps, settings, grouped, log, log_every=max(100, steps // 10),
                           seconds=seconds)]


def _mpd_record(settings: MPDSettings) -> dict:
    """The block settings as they go into the result and the model file's metadata."""
    return {"blocks": settings.blocks, "blocks_per_layer": settings.per_layer_spec() or None,
            "conv": settings.conv_form if settings.convs else "none"}


def _control_record(hooks: list) -> dict:
    """What the control hooks add to the result (and the model file's metadata)."""
    out: dict = {}
    for hook in hooks:
        if isinstance(hook, TargetSparsity):
            out["target_sparsity"] = hook.summary()
        elif isinstance(hook, FreezeSupport):
            out["support_frozen_at"] = hook.frozen_at
        elif isinstance(hook, SparseSwitch):
            out["sparse_training"] = {"density": hook.max_density, "switched": hook.switched}
    return out


def checkpointing(path: str | None, every: int, model, optimizer: Optimizer, log: Log = print,
                  interrupt: StopOnInterrupt | None = None):
    """``fit``'s on_step callback. With a checkpoint ``path``: resume from it if it exists and
    save model + optimizer there every ``every`` steps. With ``interrupt``: after Ctrl-C, save
    the checkpoint (if any) at the step boundary and stop with one line (TrainingInterrupted)."""
    path = Path(path) if path else None
    if path is None and interrupt is None:
        return None
    if path is not None and path.exists():
        load_checkpoint(path, model, optimizer)
        log(f"resumed from {path} at step {optimizer.step_count}")

    def save() -> None:
        write_or_rescue(lambda p: save_checkpoint(p, model, optimizer), path, "checkpoint")

    def keep() -> str:
        if path is None:
            return "nothing saved (with --checkpoint FILE a rerun resumes)"
        if optimizer.step_count % every:
            save()
        return f"checkpoint saved to {path}; the same command resumes"

    def on_step(step: int) -> None:
        if path is not None and step % every == 0:
            save()
        if interrupt is not None:
            interrupt.stop_point(step, keep)
    return on_step


def _debias(spec: TrainSpec, s: Setup, config: TrainConfig, trainer: Trainer, log: Log) -> dict:
    """Retrain with the zeros fixed; the figures it adds to the result."""
    before = trainer.evaluate(s.test_ds)
    log(f"before debiasing: test accuracy {100 * before['accuracy']:.2f}%")
    t0 = time.perf_counter()
    hist = retrain(s.model, s.train_ds, s.test_ds, spec.retrain_steps, config,
                   form=spec.retrain_form, lr=spec.retrain_lr, log=log,
                   max_density=spec.sparse_density)
    log(f"debiased {spec.retrain_steps} steps ({spec.retrain_form}) in "
        f"{time.perf_counter() - t0:.1f} s ({hist.images_per_second:.0f} images/s)")
    return {"accuracy_before_retrain": before["accuracy"], "retrain_steps": spec.retrain_steps,
            "retrain_form": spec.retrain_form, "retrain_seconds": round(hist.seconds, 2)}


def _finish(spec: TrainSpec, s: Setup, config: TrainConfig, result: dict, log: Log) -> None:
    """Recalibrate batch norm, evaluate, convert to the inference form, report and save."""
    trainer = Trainer(s.model)
    if trainer.recalibrate_batchnorm(s.train_ds, spec.bn_batches, config.batch_size, config.seed):
        log(f"batch-norm statistics re-estimated over {spec.bn_batches} training batches")
        result.update(bn_batches=spec.bn_batches)
    final = trainer.evaluate(s.test_ds)
    to_inference_form(s.model, spec.csr_density)
    rows = layer_stats(s.model)
    total = total_stats(rows)
    held, dense = model_device_bytes(s.model)
    log(format_table(rows))
    log(flops_report(s.model))
    result.update(accuracy=final["accuracy"], test_loss=final["loss"], zeros=total.zeros,
                  nnz=total.nnz, weights=total.total, device_bytes=held, dense_device_bytes=dense)
    out = _out_path(spec)
    if spec.quantize is None:
        size = save_model_file(s.model, out, result, spec.values)
    else:
        records, figures = quantize_stage(s.model, spec.quantize, s.train_ds, s.test_ds, log,
                                          metadata=result)
        result.update(figures)
        size = save_quantized(s.model, records, out, result, spec.quantize.bias_dtype)
    log(f"test accuracy {100 * result['accuracy']:.2f}%  zeros {100 * total.zeros:.2f}% "
        f"({total.nnz:,} of {total.total:,} weights nonzero, {total.compression:.1f}x)  "
        f"device {held / 1024:.1f} KiB (dense {dense / 1024:.1f} KiB)")
    result.update(file=str(out), file_bytes=size)
    log(f"saved {out}: {size / 1024:.1f} KiB on disk")
    if spec.json:
        Path(spec.json).parent.mkdir(parents=True, exist_ok=True)
        Path(spec.json).write_text(json.dumps(result, indent=2))
