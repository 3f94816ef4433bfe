"""The settings the standalone method commands (prune, mm) share."""
from __future__ import annotations

from ..workflows import CompressSpec
from .options import train_config


def compress_spec(args) -> CompressSpec:
    """Model, data, training, reference, retraining and output options as a CompressSpec."""
    return CompressSpec(
        model=args.model, data=args.data, data_root=args.data_root, backend=args.backend,
        device=args.device, config=train_config(args), steps=args.steps, epochs=args.epochs,
        from_file=args.from_file, save_reference=args.save_reference,
        retrain_steps=args.retrain_steps, retrain_lr=args.retrain_lr,
        retrain_form=args.retrain_form, out=args.out, json=args.json)
