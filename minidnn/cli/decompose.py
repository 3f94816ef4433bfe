"""``minidnn decompose``: parse, then ``minidnn.workflows.decompose_file``."""
from __future__ import annotations

import argparse

from ..compress.lowrank import ALGORITHMS, DecomposeSettings
from ..compress.rank_search import GASettings
from ..compress.ranks import parse_rank_rule
from ..errors import ConfigError
from ..options import nonneg_float, nonneg_int, open_fraction, positive_float, positive_int
from ..workflows.decompose import DecomposeSpec, decompose_file
from .options import add_backend_args, add_data_args


def rank_rule(text: str) -> str:
    """argparse type of --ranks: energy:E (0 < E < 1), vbmf or ga."""
    try:
        parse_rank_rule(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--ranks ")) from None
    return text


def register(sub) -> None:
    p = sub.add_parser("decompose", help="low-rank compression of a saved model: Tucker-2 or CP "
                                         "convolutions, SVD linear layers, with fine-tuning")
    p.add_argument("path", help="the trained model file (IN.h5)")
    p.add_argument("--method", required=True, choices=list(ALGORITHMS),
                   help="tucker2 / cp: convolutions in that form, linear layers by SVD; "
                        "svd: linear layers only")
    p.add_argument("--ranks", type=rank_rule, default="energy:0.9",
                   help="energy:E (keep a fraction E of each layer's energy), vbmf, or ga "
                        "(genetic search on a held-out split; default energy:0.9)")
    p.add_argument("--algorithm", default=None,
                   choices=sorted({a for v in ALGORITHMS.values() for a in v}),
                   help="tucker2: hosvd (default) or hooi; cp: tpm (tensor power method, "
                        "default) or als (hooi and als need TensorLy: pip install "
                        "'minidnn[lowrank]')")
    p.add_argument("--finetune-steps", type=nonneg_int, default=0,
                   help="fine-tuning steps after each layer is decomposed (0: none)")
    p.add_argument("--finetune-lr", type=positive_float, default=None,
                   help="fine-tuning Adam lr (default 1e-4)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="fine-tuning batch")
    p.add_argument("--l1", type=nonneg_float, default=0.0,
                   help="l1 prox strength while fine-tuning: sparse factors, stored as CSR "
                        "where at most half dense (needs --finetune-steps)")
    p.add_argument("--eval-images", type=positive_int, default=None,
                   help="measure accuracy on the first N test images (default: all)")
    g = p.add_argument_group("--ranks ga")
    g.add_argument("--heldout", type=positive_int, default=5000,
                   help="training images held out to measure accuracy (not trained on)")
    g.add_argument("--ga-population", type=positive_int, default=8)
    g.add_argument("--ga-generations", type=positive_int, default=12)
    g.add_argument("--ga-seconds", type=positive_float, default=120.0, help="time budget")
    g.add_argument("--ga-max-drop", type=open_fraction, default=0.05,
                   help="held-out accuracy the unfine-tuned model may lose unpenalized")
    p.add_argument("--seed", type=nonneg_int, default=0)
    add_data_args(p)
    add_backend_args(p)
    p.add_argument("--out", required=True, help="where to save the decomposed model (OUT.h5)")
    p.set_defaults(func=run)


def run(args) -> int:
    ga = GASettings(population=max(2, args.ga_population), generations=args.ga_generations,
                    seconds=args.ga_seconds, max_drop=args.ga_max_drop, seed=args.seed)
    settings = DecomposeSettings(method=args.method, ranks=args.ranks, algorithm=args.algorithm,
                                 finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr,
                                 heldout=args.heldout, l1=args.l1, ga=ga, seed=args.seed)
    decompose_file(DecomposeSpec(path=args.path, out=args.out, settings=settings, data=args.data,
                                 data_root=args.data_root, backend=args.backend,
                                 device=args.device, batch_size=args.batch_size,
                                 eval_images=args.eval_images))
    return 0
