"""``minidnn evaluate``: parse, then ``minidnn.workflows.evaluate_file``."""
from __future__ import annotations

from ..options import nonneg_int, positive_int
from ..workflows import EvaluateSpec, evaluate_file
from .options import add_backend_args, add_data_args


def register(sub) -> None:
    e = sub.add_parser("evaluate", help="test accuracy of a saved model (optionally after "
                                         "re-estimating its batch-norm statistics)")
    e.add_argument("path")
    add_data_args(e)
    add_backend_args(e)
    e.add_argument("--batch-size", type=positive_int, default=1000, help="evaluation batch size")
    e.add_argument("--bn-batches", type=nonneg_int, default=0,
                   help="first re-estimate batch-norm statistics over this many training "
                        "batches of 128")
    e.add_argument("--out", default=None, help="save the (recalibrated) model here")
    e.set_defaults(func=run)


def run(args) -> int:
    evaluate_file(EvaluateSpec(path=args.path, data=args.data, data_root=args.data_root,
                               backend=args.backend, device=args.device,
                               batch_size=args.batch_size, bn_batches=args.bn_batches,
                               out=args.out))
    return 0
