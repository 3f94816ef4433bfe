"""The decompose workflow: a saved model's layers replaced by low-rank factorizations (Tucker-2,
CP or SVD; ranks by energy, VBMF or a genetic search), each followed by fine-tuning, then
measured and saved; what ``minidnn decompose`` runs."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import data as datasets  # looked up at call time (tests substitute load_dataset)
from ..backend import resolve_backend
from ..compress.flops import layer_costs, total_cost
from ..compress.lowrank import DecomposeSettings, decompose_model
from ..data import ArrayDataset
from ..inference import evaluate
from ..io import load
from ..models import default_data
from ..outputs import check_outputs
from ..report import Column, format_columns
from ..train_config import Log, TrainConfig
from .common import check_input_shape, save_model_file


@dataclass
class DecomposeSpec:
    """Which file, how to decompose it, on which data and backend, where to save."""

    path: str
    out: str
    settings: DecomposeSettings = field(default_factory=DecomposeSettings)
    data: str | None = None
    data_root: str | None = None
    backend: str = "auto"
    device: str | None = None
    batch_size: int = 128        # fine-tuning minibatch
    eval_images: int | None = None   # measure accuracy on the first N test images (None: all)


def _figures(model, test_ds) -> dict:
    """Test accuracy (the inference fast path), weights and FLOPs per sample."""
    result = evaluate(model, test_ds.images, test_ds.labels, 1000)
    cost = total_cost(layer_costs(model, test_ds.shape))
    return {"accuracy": result["accuracy"], "loss": result["loss"], "weights": cost.weights,
            "nnz": cost.nnz, "flops": cost.flops, "nnz_flops": cost.nnz_flops}


LAYER_COLUMNS = (
    Column("layer", 24, lambda r: r["layer"], "<"),
    Column("form", 8, lambda r: r["form"], "<"),
    Column("ranks", 16, lambda r: ",".join(f"{v}" for v in r["ranks"].values())),
    Column("dense", 10, lambda r: f"{r['dense_weights']:,}"),
    Column("weights", 10, lambda r: f"{r['weights']:,}"),
    Column("x", 7, lambda r: f"{r['dense_weights'] / r['weights']:.1f}x"))


def decompose_file(spec: DecomposeSpec, log: Log = print) -> dict:
    """Decompose the model in ``spec.path``, save it to ``spec.out``; returns the figures
    before and after (accuracy, weights, FLOPs) and the per-layer records."""
    check_outputs({"--out": spec.out})
    spec.settings.check()
    backend = resolve_backend(spec.backend, spec.device)
    model = load(spec.path, backend=backend)
    data = spec.data or default_data(model)
    train_ds, test_ds = datasets.load_dataset(data, spec.data_root)
    check_input_shape(model, test_ds)
    if spec.eval_images is not None and spec.eval_images < len(test_ds):
        test_ds = ArrayDataset(test_ds.images[:spec.eval_images],
                               test_ds.labels[:spec.eval_images], test_ds.name, test_ds.classes,
                               test_ds.mean, test_ds.std, test_ds.source)
    before = _figures(model, test_ds)
    log(f"{spec.path}: {model.arch} on {data} ({len(test_ds)} test images), "
        f"{backend.device_name}: test accuracy "
        f"{100 * before['accuracy']:.2f}%, {before['weights']:,} weights, "
        f"{before['flops'] / 1e6:.2f} MFLOPs per sample")
    config = TrainConfig(batch_size=spec.batch_size, seed=spec.settings.seed, log_every=10 ** 9)
    new, layers = decompose_model(model, spec.settings, train_ds, config, log)
    after = _figures(new, test_ds)
    log(format_columns(LAYER_COLUMNS, layers))
    log(f"{spec.settings.method} ({spec.settings.ranks}, {spec.settings.finetune_steps} "
        f"fine-tuning steps per layer): test accuracy {100 * after['accuracy']:.2f}% "
        f"({100 * (after['accuracy'] - before['accuracy']):+.2f}), weights "
        f"{before['weights'] / after['weights']:.2f}x fewer, FLOPs "
        f"{before['flops'] / after['flops']:.2f}x fewer"
        + (f"; nonzero weights {before['nnz'] / after['nnz']:.2f}x fewer, nonzero FLOPs "
           f"{before['nnz_flops'] / after['nnz_flops']:.2f}x fewer" if spec.settings.l1 else ""))
    metadata = dict(source=str(spec.path), decompose_method=spec.settings.method,
                    ranks_rule=spec.settings.ranks, algorithm=spec.settings.algorithm,
                    finetune_steps=spec.settings.finetune_steps, l1=spec.settings.l1, data=data,
                    accuracy=after["accuracy"], test_loss=after["loss"],
                    test_images=len(test_ds),
                    dense_accuracy=before["accuracy"],
                    layers=[{k: r[k] for k in ("layer", "form", "ranks")} for r in layers])
    size = save_model_file(new, spec.out, metadata)
    log(f"saved {spec.out}: {size:,} bytes")
    return {"before": before, "after": after, "layers": layers, "file_bytes": size,
            "data": data}
