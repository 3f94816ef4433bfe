"""The quantize stage shared by ``minidnn quantize``, ``minidnn train --quantize-bits`` and the
sweep method ``spc+retrain+q``: share the nonzero weights of every layer (k-means or DP),
optionally fine-tune the shared values, and report the accuracies."""
from __future__ import annotations

from dataclasses import dataclass

from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.model import Model
from ..names import parse_layer_spec, short_name
from ..train_config import Log
from .bit_allocation import choose_bits
from .measure import evaluate
from .unused import zero_unused_biases
from .quantize import (METHODS, QuantizedLayer, finetune_codebooks, layer_bits,
                       nonzero_values, quantize_model, retrain_assignments, round_codebooks)


@dataclass
class QuantizeSettings:
    """How to quantize: bits (per layer overrides), quantizer, centroid fine-tuning."""

    bits: int = 5
    per_layer: str | dict | None = None   # 'conv1=8,fc2=6' or {'conv1': 8}
    method: str = "kmeans"                 # 'kmeans' or 'dp'
    finetune_steps: int = 0
    finetune_lr: float = 1e-4
    retrain_steps: int = 0                 # quantization-aware retraining before fine-tuning
    retrain_lr: float = 1e-4
    batch_size: int = 128
    seed: int = 0
    bias_dtype: str = "float16"            # biases and other unquantized parameters
    zero_unused: bool = True               # biases no later weight reads -> 0 (exact)
    codebook_dtype: str = "float16"        # codebooks rounded to float16 (stored in 2 bytes)
    max_bytes: int | None = None           # bits per layer chosen for a file of at most this
    max_drop: float | None = None          # ... or for at most this test-accuracy drop

    def check(self, model: Model | None = None) -> None:
        """ConfigError for an unknown method or bits outside 1..16 (per layer too, by name
        when ``model`` is given), before any work."""
        if self.method not in METHODS:
            raise ConfigError(f"unknown quantization method {self.method!r}: choose from "
                              f"{METHODS}")
        per = self.per_layer if isinstance(self.per_layer, dict) \
            else parse_layer_spec(self.per_layer, int)
        if model is not None:
            layer_bits(model, self.bits, per)
        if self.max_bytes is not None and self.max_drop is not None:
            raise ConfigError("give a byte budget or an accuracy drop for the bit allocation, "
                              "not both")
        if self.max_bytes is not None and not (isinstance(self.max_bytes, int)
                                               and self.max_bytes > 0):
            raise ConfigError(f"the byte budget must be a positive integer, got "
                              f"{self.max_bytes!r}")
        if self.max_drop is not None and not 0 <= self.max_drop < 1:
            raise ConfigError(f"the accuracy drop must be a fraction in [0, 1), got "
                              f"{self.max_drop!r}")
        for what, dt in (("bias", self.bias_dtype), ("codebook", self.codebook_dtype)):
            if dt not in ("float16", "float32"):
                raise ConfigError(f"{what} dtype must be float16 or float32, got {dt!r}")


def quantize_stage(model: Model, q: QuantizeSettings, train_ds: ArrayDataset | None,
                   test_ds: ArrayDataset | None, log: Log = print, metadata: dict | None = None
                   ) -> tuple[list[QuantizedLayer], dict]:
    """Quantize ``model`` in place and fine-tune its codebooks (needs ``train_ds`` when
    ``q.finetune_steps`` or a bit allocation); returns the records and the figures
    (accuracies when ``test_ds``). ``metadata``: what the file will carry (for a byte budget)."""
    q.check(model)
    per = q.per_layer if isinstance(q.per_layer, dict) else parse_layer_spec(q.per_layer, int)
    figures: dict = {"quantize_bits": q.bits, "quantize_per_layer": q.per_layer or None,
                     "quantize_method": q.method, "finetune_steps": q.finetune_steps}
    if (q.finetune_steps or q.retrain_steps or q.max_bytes or q.max_drop is not None) \
            and train_ds is None:
        raise ConfigError("fine-tuning, retraining or a bit allocation needs training data "
                          "(--data)")
    if q.zero_unused:     # exact (no output changes), and before sizes are measured
        figures["unused_biases_zeroed"] = zero_unused_biases(model)
        log(f"{figures['unused_biases_zeroed']} biases of units no later weight reads set to 0 "
            f"(outputs unchanged)")
    if test_ds is not None:
        figures["accuracy_float"] = evaluate(model, test_ds)["accuracy"]
    if q.max_bytes is not None or q.max_drop is not None:
        per, found = choose_bits(model, q.method, train_ds, test_ds, q.max_bytes, q.max_drop,
                                 q.bias_dtype, metadata, q.codebook_dtype == "float16", log)
        figures.update(found, quantize_per_layer=",".join(f"{short_name(k)}={v}"
                                                          for k, v in per.items()))
    records = quantize_and_tune(model, q, per, train_ds, test_ds, figures, log)
    figures["codebook_sizes"] = {r.label: r.k for r in records}
    return records, figures


def quantize_and_tune(model: Model, q: QuantizeSettings, per: dict, train_ds, test_ds,
                      figures: dict, log: Log) -> list[QuantizedLayer]:
    """Quantize with ``per`` layer bits, then retrain / fine-tune / round as ``q`` says,
    adding the accuracies to ``figures``."""
    floats = nonzero_values(model) if q.retrain_steps else {}
    records = quantize_model(model, q.bits, per, q.method)
    if test_ds is not None:
        figures["accuracy_quantized"] = evaluate(model, test_ds)["accuracy"]
        chosen = f", {figures['quantize_per_layer']}" if per else ""
        log(f"quantized ({q.method}, {q.bits} bits{chosen}): "
            f"test accuracy {100 * figures['accuracy_float']:.2f}% -> "
            f"{100 * figures['accuracy_quantized']:.2f}%")
    if q.retrain_steps:
        figures["retrain_steps"] = q.retrain_steps
        records = retrain_assignments(model, records, floats, train_ds, q.retrain_steps,
                                      q.retrain_lr, q.batch_size, q.seed, log=log)
        if test_ds is not None:
            figures["accuracy_retrained"] = evaluate(model, test_ds)["accuracy"]
            log(f"after {q.retrain_steps} quantization-aware retraining steps: test accuracy "
                f"{100 * figures['accuracy_retrained']:.2f}%")
    if q.finetune_steps:
        records, _ = finetune_codebooks(model, records, train_ds, q.finetune_steps,
                                        q.finetune_lr, q.batch_size, q.seed, log=log,
                                        test_ds=None)
    if q.codebook_dtype == "float16":
        records = round_codebooks(model, records)
    if test_ds is not None:
        figures["accuracy"] = evaluate(model, test_ds)["accuracy"]
        log(f"after {q.finetune_steps} fine-tuning steps: test accuracy "
            f"{100 * figures['accuracy']:.2f}%")
    return records
