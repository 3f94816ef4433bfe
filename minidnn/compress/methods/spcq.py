"""SpC + retrain + Q: SpC, debiasing, then weight sharing with fine-tuned codebooks (issue 16);
its records carry the size of the quantized model file, for accuracy-vs-bytes plots."""
from __future__ import annotations

import os
import tempfile

from ...io import save
from ..quantize_stage import QuantizeSettings, quantize_stage
from ..spc import train_spc
from .common import debias, record
from .registry import Method, MethodRun, register


def quantized_file_bytes(run: MethodRun, records, settings: QuantizeSettings) -> int:
    """Bytes of the model saved as a quantized file (format version 3)."""
    with tempfile.TemporaryDirectory(prefix="minidnn-q-") as folder:
        path = os.path.join(folder, "model.h5")
        save(run.model, path, quantized=records, bias_dtype=settings.bias_dtype)
        return os.path.getsize(path)


@register
class SpCQ(Method):
    """SpC at ``lam``, ``spec.retrain_steps`` of debiasing, then ``spec.quantize`` (bits,
    k-means or DP, fine-tuning steps); one record, with ``file_bytes``."""

    name = "spc+retrain+q"
    label = "SpC+retrain+Q"
    color = "tab:purple"
    params = ("lam",)
    retrainable = False

    def run(self, run: MethodRun):
        settings = getattr(run.spec, "quantize", None) or QuantizeSettings()
        hist = train_spc(run.model, run.train_ds, run.test_ds, run.steps, run.value,
                         run.spec.train, lam_per_layer=run.spec.lam_per_layer or None,
                         log=run.log)
        history = {"spc": hist.evals}
        if run.spec.retrain_steps:
            _, history["retrain"] = debias(run, "spc", run.steps)
        records, figures = quantize_stage(run.model, settings, run.train_ds, run.test_ds,
                                          run.log)
        rec = record(self.name, run, run.steps, run.spec.retrain_steps)
        rec.update(file_bytes=quantized_file_bytes(run, records, settings),
                   quantize_bits=settings.bits, quantize_method=settings.method,
                   finetune_steps=settings.finetune_steps,
                   accuracy_before_quantize=figures.get("accuracy_float"))
        return [rec], history
