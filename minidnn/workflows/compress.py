"""The standalone compression workflows (``minidnn prune``, ``minidnn mm``): a dense reference
(loaded or trained), one method at one setting, then the Table A1 result and the model saved."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..compress.debias import retrain
from ..compress.flops import flops_report
from ..compress.measure import measure
from ..compress.mm import MMConfig, kappa_for_sparsity, mm_compress
from ..compress.prune import prune_retrain
from ..compress.results import format_layers
from ..compress.sparsify import to_inference_form
from ..compress.storage import load_weights, save_model
from ..errors import ConfigError
from ..names import per_layer
from ..outputs import check_outputs, write_or_rescue
from ..train import Trainer
from ..train_config import Log, TrainConfig, training_steps
from .common import Setup, set_up


@dataclass
class CompressSpec:
    """The model, data and training settings, the dense reference, retraining and outputs."""

    model: str
    data: str | None = None
    data_root: str | None = None
    backend: str = "auto"
    device: str | None = None
    config: TrainConfig | None = None    # default: TrainConfig.for_model(model)
    steps: int | None = None             # dense reference training length
    epochs: float | None = None
    from_file: str | None = None         # dense reference weights (.h5 or .npz) instead
    save_reference: str | None = None    # also save the reference trained here
    retrain_steps: int = 0
    retrain_lr: float | None = None
    retrain_form: str = "mask"
    out: str | None = None               # default runs/<model>-<method>.h5
    json: str | None = None              # default: the out path with .json


OUT_TAGS = {"prune": "pru", "mm": "mm"}  # command -> the default output's suffix


def out_path(spec: CompressSpec, method: str) -> Path:
    """The compressed model's file: ``spec.out``, else runs/<model>-<method>.h5."""
    return Path(spec.out or Path("runs") / f"{spec.model}-{method}.h5")


def start(spec: CompressSpec, command: str, log: Log = print) -> tuple[Setup, TrainConfig, dict]:
    """(setup, training config, reference measurement): the model holds the dense reference.
    The output files are checked first, so a bad path fails before any training."""
    config = spec.config or TrainConfig.for_model(spec.model)
    check_outputs({"--out": out_path(spec, OUT_TAGS.get(command, command)), "--json": spec.json,
                   "--save-reference": spec.save_reference})
    s = set_up(spec.model, spec.data, spec.data_root, spec.backend, spec.device, config.seed)
    log(f"minidnn {command}: {spec.model} on {s.data} ({len(s.train_ds)} train / "
        f"{len(s.test_ds)} test), {s.backend.device_name}")
    return s, config, dense_reference(spec, s, config, log)


def dense_reference(spec: CompressSpec, s: Setup, config: TrainConfig, log: Log = print) -> dict:
    """Load (``spec.from_file``) or train the dense reference into ``s.model``; its figures."""
    if spec.from_file:
        load_weights(s.model, spec.from_file)
        ref = {**measure(s.model, s.test_ds), "file": spec.from_file}
    else:
        steps = training_steps(spec.model, len(s.train_ds), config.batch_size, spec.steps,
                               spec.epochs)
        log(f"training the dense reference: {steps} steps, {config.optimizer} lr {config.lr}")
        opt = config.make_optimizer(s.model, steps, lam=0.0)
        config.fit(Trainer(s.model, opt), s.train_ds, s.test_ds, steps, log=log)
        ref = {**measure(s.model, s.test_ds), "steps": steps}
        if spec.save_reference:
            path = save_model(s.model, spec.save_reference, metadata=ref)
            log(f"saved the dense reference to {path}")
            ref["file"] = str(path)
    log(f"reference (dense): test accuracy {100 * ref['accuracy']:.2f}%")
    return ref


def prune_model(spec: CompressSpec, kind: str = "sparsity", value: float | None = None,
                overrides: dict | None = None, rounds: int = 1, log: Log = print) -> dict:
    """Pru: prune the reference to ``value`` of ``kind`` ('sparsity' or 'quality'; per layer:
    ``overrides``) in ``rounds`` rounds with ``spec.retrain_steps`` of retraining each; saves
    and returns the record."""
    if kind not in ("sparsity", "quality"):
        raise ConfigError(f"prune: kind must be 'sparsity' or 'quality', got {kind!r}")
    if value is None and not overrides:
        raise ConfigError("prune: give --sparsity S or --quality Q (or their -per-layer forms)")
    s, config, ref = start(spec, "prune", log)
    target = per_layer(s.model, value, overrides) if overrides else value
    history = prune_retrain(s.model, s.train_ds, s.test_ds, spec.retrain_steps, **{kind: target},
                            rounds=rounds, config=config, form=spec.retrain_form,
                            lr=spec.retrain_lr, log=log)
    record = {"method": "pru+retrain" if spec.retrain_steps else "pru", "model": spec.model,
              "data": s.data, "param": kind, "value": value, "per_layer": overrides or {},
              **measure(s.model, s.test_ds), "retrain_steps": spec.retrain_steps,
              "rounds": history, "reference": ref}
    finish(spec, s, record, "pru", log)
    return record


def mm_budget(model, penalty: str, alpha: float | None = None, kappa: int | None = None,
              sparsity: float | None = None, kappa_per_layer: dict | None = None) -> tuple:
    """(MMConfig fields, swept parameter, value) for an l1 ``alpha`` or exactly one l0 budget."""
    if penalty == "l1":
        if alpha is None:
            raise ConfigError("mm --penalty l1 needs --alpha")
        return {"penalty": "l1", "alpha": alpha}, "alpha", alpha
    budgets = {"kappa": kappa, "sparsity": sparsity, "kappa_per_layer": kappa_per_layer or None}
    given = [k for k, v in budgets.items() if v is not None]
    if len(given) != 1:
        raise ConfigError("mm --penalty l0 needs exactly one of --kappa, --sparsity, "
                          "--kappa-per-layer")
    name = given[0]
    value = kappa_for_sparsity(model, sparsity) if name == "sparsity" else budgets[name]
    return {"penalty": "l0", "kappa": value}, name, budgets[name]


def mm_model(spec: CompressSpec, mm: MMConfig, penalty: str = "l0", log: Log = print,
             **budget) -> dict:
    """MM from the reference with ``mm``'s LC schedule and the penalty's budget (``mm_budget``),
    then ``spec.retrain_steps`` of debiasing; saves and returns the record."""
    s, config, ref = start(spec, "mm", log)
    fields, param, value = mm_budget(s.model, penalty, **budget)
    mm = MMConfig(**{**mm.to_dict(), **fields})
    history = mm_compress(s.model, s.train_ds, s.test_ds, mm, config, form=spec.retrain_form,
                          log=log)
    record = {"method": "mm", "model": spec.model, "data": s.data, "param": param,
              "value": value, **measure(s.model, s.test_ds), "mm": mm.to_dict(),
              "history": history, "reference": ref}
    if spec.retrain_steps:
        retrain(s.model, s.train_ds, s.test_ds, spec.retrain_steps, config,
                form=spec.retrain_form, lr=spec.retrain_lr, log=log)
        record.update(method="mm+retrain", accuracy_before_retrain=record["accuracy"],
                      **measure(s.model, s.test_ds), retrain_steps=spec.retrain_steps)
    finish(spec, s, record, "mm", log)
    return record


def finish(spec: CompressSpec, s: Setup, record: dict, method: str, log: Log = print) -> Path:
    """Print the Table A1 layout; write the JSON + text result and the model; the model path."""
    text = format_layers(record)
    log(text)
    log(flops_report(s.model))
    to_inference_form(s.model)
    saved = []
    write_or_rescue(lambda p: saved.append(save_model(s.model, p, metadata=record)),
                    out_path(spec, method), "model")
    path = saved[-1]
    log(f"saved {path}")
    js = Path(spec.json) if spec.json else path.with_suffix(".json")
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(record, indent=1, default=str))
    js.with_suffix(".txt").write_text(text + "\n")
    log(f"wrote {js} and {js.with_suffix('.txt')}")
    return path
