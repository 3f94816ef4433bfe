"""``minidnn train``: parse, then ``minidnn.workflows.train_model``."""
from __future__ import annotations

import argparse

from ..options import (nonneg_float, nonneg_int, open_fraction, positive_fraction, positive_int,
                       unit_interval)
from ..compress.sparse_train import SPARSE_TRAIN_DENSITY
from ..workflows import TRAIN_METHODS, TrainSpec, train_model
from .options import (add_mpd_args, add_retrain_args, add_training_args, mpd_settings,
                      train_config)
from .quantize import add_quantize_args, settings


def register(sub) -> None:
    t = sub.add_parser("train", help="train a model (dense, or sparse with the l1 prox)")
    t.add_argument("model", help="zoo model name (e.g. lenet5) or your class: "
                                 "path/to/nets.py:TinyNet or package.module:TinyNet")
    add_training_args(t, time_budget=True)
    t.add_argument("--method", default="spc", choices=TRAIN_METHODS,
                   help="spc: proximal l1 training (sparse coding); rwl1: reweighted l1 "
                        "(per-weight lam ~ 1/(|w| + eps), refreshed every 100 steps); "
                        "l0: annealed hard threshold (l0 prox); gl21: group lasso (whole "
                        "filters/neurons to zero); mpd: fixed random permuted "
                        "block-diagonal masks (--blocks; with --lam, l1 inside the blocks); "
                        "dense: no l1")
    t.add_argument("--lam", type=nonneg_float, default=None,
                   help="l1 strength (threshold lr*lam per step; default: the model recipe's); "
                        "paper value p -> ln(p) at lr 1e-3")
    t.add_argument("--lam-per-layer", default=None, metavar="SPEC",
                   help="per-layer lam overriding --lam, e.g. conv1=0.1,fc1=0.4")
    t.add_argument("--target-sparsity", type=open_fraction, default=None, metavar="Z",
                   help="steer lam during training so that this fraction of the conv/linear "
                        "weights ends exactly zero (e.g. 0.99), no lam sweep: --lam is only "
                        "the starting point; the support freezes at --freeze-support")
    t.add_argument("--target-sparsity-per-layer", default=None, metavar="SPEC",
                   help="per-layer targets, e.g. fc1=0.995,conv1=0.5 (the other layers follow "
                        "--target-sparsity together, or keep their lam without it)")
    t.add_argument("--freeze-support", type=positive_fraction, default=None, metavar="AT",
                   help="at this fraction of the run, hold the zeros fixed so none revive as "
                        "the lr decays; with a target, lam is 0 from there (debiasing in the "
                        "run; default 0.85), else the prox goes on shrinking the survivors")
    t.add_argument("--bn-batches", type=nonneg_int, default=50,
                   help="before the final evaluation, re-estimate batch-norm statistics over "
                        "this many training batches (0: keep the running averages)")
    add_mpd_args(t)
    add_retrain_args(t, "debiasing")
    t.add_argument("--csr-density", type=unit_interval, default=0.5,
                   help="save/run layers with at most this density as CSR")
    t.add_argument("--sparse-training-density", type=unit_interval,
                   default=SPARSE_TRAIN_DENSITY, metavar="D",
                   help="sparse training: once a weight's zeros are fixed (the target "
                        "controller's freeze, debiasing), it trains as CSR if at most this "
                        f"dense (default {SPARSE_TRAIN_DENSITY:g}; 0: off, dense with a mask)")
    t.set_defaults(retrain_form="auto")
    t.add_argument("--out", default=None, help="model file to write (.h5); default runs/<model>.h5")
    t.add_argument("--values", default="float32", choices=["float32", "float16"],
                   help="precision of saved weight values")
    t.add_argument("--json", default=None, help="also write the final figures to this JSON file")
    t.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="save model + optimizer state + step + RNG here every "
                        "--checkpoint-every steps of the main training phase; if FILE exists, "
                        "resume from it (the same command continues an interrupted run exactly)")
    t.add_argument("--checkpoint-every", type=positive_int, default=500)
    add_quantize_args(t.add_argument_group("final quantize stage (saves a quantized file)"),
                      "quantize-")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    train_model(TrainSpec(
        model=args.model, data=args.data, data_root=args.data_root, backend=args.backend,
        device=args.device, method=args.method, mpd=mpd_settings(args), lam=args.lam,
        lam_per_layer=args.lam_per_layer,
        target_sparsity=args.target_sparsity,
        target_sparsity_per_layer=args.target_sparsity_per_layer,
        freeze_support=args.freeze_support,
        config=train_config(args), steps=args.steps, epochs=args.epochs, minutes=args.minutes,
        bn_batches=args.bn_batches, retrain_steps=args.retrain_steps, retrain_lr=args.retrain_lr,
        retrain_form=args.retrain_form, csr_density=args.csr_density,
        sparse_density=args.sparse_training_density, out=args.out,
        values=args.values, json=args.json, checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        quantize=None if args.quantize_bits is None
        else settings(args, "quantize-", args.batch_size or 128, args.seed)))
    return 0
