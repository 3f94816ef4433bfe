"""``minidnn prune``: parse, then ``minidnn.workflows.prune_model``."""
from __future__ import annotations

from ..errors import ConfigError
from ..names import parse_layer_spec
from ..options import nonneg_float, positive_int, unit_interval
from ..workflows import prune_model
from .compress import compress_spec
from .options import add_output_args, add_reference_args, add_retrain_args, add_training_args


def register(sub) -> None:
    p = sub.add_parser("prune", help="Pru: magnitude pruning of a dense model, then retraining")
    p.add_argument("model", help="zoo model name, e.g. lenet5")
    add_training_args(p)
    add_reference_args(p)
    p.add_argument("--sparsity", type=unit_interval, default=None,
                   help="zero exactly this fraction of each layer (smallest |w|)")
    p.add_argument("--quality", type=nonneg_float, default=None,
                   help="zero |w| < quality x std of the layer's weights (Han et al.)")
    p.add_argument("--sparsity-per-layer", default=None,
                   help="per-layer sparsity, e.g. conv1=0.6,fc1=0.98 (others: --sparsity)")
    p.add_argument("--quality-per-layer", default=None, help="per-layer quality")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="iterative pruning: prune->retrain rounds ramping up to the target")
    add_retrain_args(p, "per round")
    add_output_args(p, "pru")
    p.set_defaults(func=run)


def run(args) -> int:
    kind = "quality" if args.quality is not None or args.quality_per_layer else "sparsity"
    if args.quality is not None and (args.sparsity is not None or args.sparsity_per_layer):
        raise ConfigError("prune: give --sparsity[-per-layer] or --quality[-per-layer], not both")
    prune_model(compress_spec(args), kind, getattr(args, kind),
                parse_layer_spec(getattr(args, f"{kind}_per_layer")), rounds=args.rounds)
    return 0
