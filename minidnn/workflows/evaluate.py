"""The evaluate workflow: a saved model's test accuracy (after an optional batch-norm
recalibration), optionally saved again with the new figures; what ``minidnn evaluate`` runs."""
from __future__ import annotations

from dataclasses import dataclass

from .. import data as datasets  # looked up at call time (tests substitute load_dataset)
from ..backend import resolve_backend
from ..inference import evaluate, matching_records
from ..io import load
from ..outputs import check_outputs
from ..train import Trainer
from ..models import default_data
from ..train_config import Log
from .common import check_input_shape, save_model_file


@dataclass
class EvaluateSpec:
    """Which file, on which data and backend; None means the model recipe's dataset."""

    path: str
    data: str | None = None
    data_root: str | None = None
    backend: str = "auto"
    device: str | None = None
    batch_size: int = 1000
    bn_batches: int = 0          # first re-estimate BN statistics over this many batches of 128
    out: str | None = None       # save the (recalibrated) model here


def evaluate_file(spec: EvaluateSpec, log: Log = print) -> dict:
    """Test loss and accuracy of the saved model (and of the data it was measured on)."""
    check_outputs({"--out": spec.out})
    backend = resolve_backend(spec.backend, spec.device)
    model = load(spec.path, backend=backend)
    data = spec.data or default_data(model)
    train_ds, test_ds = datasets.load_dataset(data, spec.data_root)
    check_input_shape(model, test_ds)
    trainer = Trainer(model)
    if trainer.recalibrate_batchnorm(train_ds, spec.bn_batches):
        log(f"batch-norm statistics re-estimated over {spec.bn_batches} training batches")
    # the fast path (a prepared inference plan; the regular forward if the model has none)
    result = evaluate(model, test_ds.images, test_ds.labels, spec.batch_size)
    log(f"{spec.path}: {model.arch} on {data} ({len(test_ds)} test images), "
        f"{backend.device_name}: test accuracy {100 * result['accuracy']:.2f}%, "
        f"loss {result['loss']:.4f}")
    if getattr(model, "quantized", None):
        log(f"{len(matching_records(model))} of {len(model.quantized)} quantized layers ran "
            f"through their codebooks (uint8/uint16 codes + float32 codebook on the device)")
    if spec.out:
        metadata = dict(getattr(model, "metadata", None) or {})
        metadata.update(accuracy=result["accuracy"], test_loss=result["loss"])
        size = save_model_file(model, spec.out, metadata)
        log(f"saved {spec.out}: {size / 1024:.1f} KiB on disk")
    return {**result, "data": data}
