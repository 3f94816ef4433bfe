"""``minidnn mm``: parse, then ``minidnn.workflows.mm_model``."""
from __future__ import annotations

from ..names import parse_layer_spec
from ..workflows import mm_model
from .compress import compress_spec
from .options import (add_mm_args, add_output_args, add_reference_args, add_retrain_args,
                      add_training_args, mm_config)


def register(sub) -> None:
    p = sub.add_parser("mm", help="MM: learning-compression (method of multipliers) from a "
                                  "dense model")
    p.add_argument("model", help="zoo model name, e.g. lenet5")
    add_training_args(p)
    add_reference_args(p)
    add_mm_args(p)
    add_retrain_args(p, "optional debiasing after MM")
    add_output_args(p, "mm")
    p.set_defaults(func=run)


def run(args) -> int:
    mm_model(compress_spec(args), mm_config(args), args.penalty, alpha=args.alpha,
             kappa=args.kappa, sparsity=args.sparsity,
             kappa_per_layer=parse_layer_spec(args.kappa_per_layer, int))
    return 0
