"""``minidnn prune-channels``: parse, then ``minidnn.workflows.prune_channels_file``."""
from __future__ import annotations

import argparse

from ..compress.channel_prune import ChannelPruneSettings
from ..compress.channels import SCORES
from ..names import parse_layer_spec
from ..options import fraction, nonneg_int, positive_float, positive_int
from ..workflows.channels import ChannelPruneSpec, prune_channels_file
from .options import add_backend_args, add_data_args


def register(sub) -> None:
    p = sub.add_parser("prune-channels",
                       help="remove whole channels/units of a saved model (smaller dense "
                            "layers), optionally fine-tune; FLOPs, weights, accuracy before/after")
    p.add_argument("path", help="the model file to prune (.h5)")
    p.add_argument("--ratio", type=fraction, default=None,
                   help="fraction of the channels removed in every prunable layer, in [0, 1)")
    p.add_argument("--per-layer", default=None, metavar="SPEC",
                   help="per-layer ratios overriding --ratio, e.g. conv2=0.6,fc1=0.7")
    p.add_argument("--score", default="nb", choices=SCORES,
                   help="nb: improved naive-Bayes importance (Dai et al. 2021); l1: filter "
                        "l1 norm (magnitude baseline)")
    p.add_argument("--calib-samples", type=positive_int, default=1024,
                   help="training images the nb score is computed on")
    p.add_argument("--bn-batches", type=nonneg_int, default=20,
                   help="training batches to re-estimate batch norm after pruning (0: none)")
    p.add_argument("--finetune-steps", type=nonneg_int, default=0,
                   help="steps of training after pruning (0: none)")
    p.add_argument("--finetune-minutes", type=positive_float, default=None,
                   help="time budget of fine-tuning: stop after this many minutes of training "
                        "(--finetune-steps caps the run)")
    p.add_argument("--finetune-lr", type=positive_float, default=None,
                   help="fine-tuning lr (default: the model recipe's, e.g. 0.001)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--eval-images", type=positive_int, default=None,
                   help="measure accuracy on the first N test images (default: all)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    add_data_args(p)
    add_backend_args(p)
    p.add_argument("--out", default=None, help="pruned model file (default: IN-ch<score>.h5)")
    p.add_argument("--json", default=None, help="also write the result record here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    per_layer = parse_layer_spec(args.per_layer)
    settings = ChannelPruneSettings(ratio=args.ratio, per_layer=per_layer, score=args.score,
                                    samples=args.calib_samples, bn_batches=args.bn_batches,
                                    seed=args.seed)
    prune_channels_file(ChannelPruneSpec(
        path=args.path, settings=settings, finetune_steps=args.finetune_steps,
        finetune_lr=args.finetune_lr, finetune_minutes=args.finetune_minutes, data=args.data,
        data_root=args.data_root,
        backend=args.backend, device=args.device, batch_size=args.batch_size,
        eval_images=args.eval_images, out=args.out,
        json=args.json))
    return 0
