"""Option groups shared by the subcommands, and turning parsed options into library settings."""
from __future__ import annotations

import argparse

from ..compress.mm import MMConfig
from ..data import AUGMENTS
from ..compress.mpd import MPDSettings
from ..errors import ConfigError
from ..optim import SCHEDULES
from ..options import fraction, nonneg_float, nonneg_int, positive_float, positive_int
from ..optim.optimizers import OPTIMIZERS
from ..train_config import TrainConfig


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--data, --data-root."""
    p.add_argument("--data", default=None, help="dataset name (default: the model recipe's)")
    p.add_argument("--data-root", default=None,
                   help="folder with the standard dataset files (default: $MINIDNN_DATA or ./data)")


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """--backend, --device."""
    p.add_argument("--backend", default="auto", choices=["auto", "opencl", "numpy"])
    p.add_argument("--device", default=None, help="OpenCL device: gpu, cpu, P:D index or name")


def add_training_args(p: argparse.ArgumentParser, time_budget: bool = False) -> None:
    """Options shared by every command that trains (train, sweep, prune, mm); None defaults
    are the model recipe's. ``time_budget``: also --minutes (train only)."""
    add_data_args(p)
    add_backend_args(p)
    p.add_argument("--optimizer", default=None, choices=sorted(OPTIMIZERS),
                   help="default: the model recipe's (adam)")
    p.add_argument("--lr", type=positive_float, default=None, help="default: the model recipe's (0.001)")
    p.add_argument("--schedule", default=None, choices=SCHEDULES,
                   help="learning-rate schedule over the run (default: the recipe's, constant)")
    p.add_argument("--momentum", type=fraction, default=0.9, help="SGD momentum")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: the recipe's (128)")
    p.add_argument("--epochs", type=positive_float, default=None, help="training length in epochs")
    p.add_argument("--steps", type=positive_int, default=None, help="training length in steps (updates)")
    if time_budget:
        p.add_argument("--minutes", type=positive_float, default=None,
                       help="time budget: stop after this many minutes of training (evaluation "
                            "not counted); --steps/--epochs, else the recipe's steps, cap the "
                            "run and set the schedule's length")
    p.add_argument("--augment", default=None, choices=["none", *sorted(AUGMENTS)],
                   help="training-image augmentation (default: the recipe's: crop_flip for "
                        "resnet32, none otherwise); shift: up to 2 pixels each way, no flip")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--log-every", type=positive_int, default=100)
    p.add_argument("--eval-every", type=nonneg_int, default=0, help="evaluate every N steps (0: at end)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The training options as settings, filled in from the model's recipe."""
    return TrainConfig.for_model(
        args.model, optimizer=args.optimizer, lr=args.lr, schedule=args.schedule,
        momentum=args.momentum, batch_size=args.batch_size, seed=args.seed, augment=args.augment,
        eval_every=args.eval_every, log_every=args.log_every, progress=not args.no_progress)


def add_retrain_args(p: argparse.ArgumentParser, what: str) -> None:
    """--retrain-steps/-lr/-form: debiasing with the zeros held fixed."""
    p.add_argument("--retrain-steps", type=nonneg_int, default=0,
                   help=f"steps of retraining without l1, zeros fixed ({what})")
    p.add_argument("--retrain-lr", type=positive_float, default=None, help="retraining lr (default --lr)")
    p.add_argument("--retrain-form", default="mask", choices=["mask", "csr", "auto"],
                   help="zeros held by a dense mask, or by training only the CSR values; auto: "
                        "CSR for the weights sparse enough to train faster so")


def add_mm_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The LC schedule and L-step optimizer (and, outside sweeps, the penalty)."""
    g = p.add_argument_group("MM (learning-compression)")
    if not sweep:
        g.add_argument("--penalty", default="l0", choices=["l0", "l1"],
                       help="l0: keep the top-kappa weights; l1: alpha * ||theta||_1")
        g.add_argument("--kappa", type=positive_int, default=None, help="l0: nonzeros kept in total")
        g.add_argument("--sparsity", type=fraction, default=None,
                       help="l0: fraction of all weights zeroed (kappa = (1 - s) * weights)")
        g.add_argument("--kappa-per-layer", default=None,
                       help="l0 per-layer budgets, e.g. fc1=10000,conv2=2000 (others unbounded)")
        g.add_argument("--alpha", type=positive_float, default=None, help="l1: penalty strength")
    g.add_argument("--lc-iters", type=positive_int, default=30, help="number of C steps (mu values)")
    g.add_argument("--l-steps", type=positive_int, default=4000, help="L steps (SGD updates) per C step")
    g.add_argument("--mu0", type=positive_float, default=9.76e-5, help="first mu")
    g.add_argument("--mu-growth", type=positive_float, default=1.1, help="mu_k = mu0 * growth^k")
    g.add_argument("--mm-optimizer", default="sgd", choices=sorted(OPTIMIZERS),
                   help="L-step optimizer (the paper's MM: SGD with momentum)")
    g.add_argument("--mm-lr", type=positive_float, default=0.01, help="L-step learning rate")
    g.add_argument("--mm-momentum", type=fraction, default=0.9, help="L-step SGD momentum")
    g.add_argument("--mm-lr-decay", type=positive_float, default=1.0,
                   help="L-step lr multiplied by this after each C step")
    g.add_argument("--no-eval-theta", action="store_true",
                   help="skip the test accuracy of theta after each C step")


def mm_config(args: argparse.Namespace) -> MMConfig:
    """The LC schedule options as an MMConfig (the penalty's budget is set by the caller)."""
    return MMConfig(lc_iters=args.lc_iters, l_steps=args.l_steps, mu0=args.mu0,
                    mu_growth=args.mu_growth, optimizer=args.mm_optimizer, lr=args.mm_lr,
                    momentum=args.mm_momentum, lr_decay=args.mm_lr_decay,
                    eval_theta=not args.no_eval_theta)


def add_reference_args(p: argparse.ArgumentParser) -> None:
    """--from / --save-reference: the dense model a method starts from."""
    p.add_argument("--from", dest="from_file", default=None, metavar="FILE",
                   help="dense reference weights (.h5 from minidnn, or .npz); default: train "
                        "one with the training options (--steps/--epochs, --optimizer, --lr)")
    p.add_argument("--save-reference", default=None, metavar="FILE",
                   help="also save the dense reference trained here (.npz or .h5)")


def add_output_args(p: argparse.ArgumentParser, method: str) -> None:
    """--out / --json of a standalone method command."""
    p.add_argument("--out", default=None,
                   help=f"compressed model file (default runs/<model>-{method}.h5)")
    p.add_argument("--json", default=None,
                   help="result JSON (default: the --out path with .json); a .txt table beside")


def parse_values(spec: str | None) -> list[float]:
    """'0.1,0.2, 0.5' -> [0.1, 0.2, 0.5]."""
    try:
        return [float(v) for v in (spec or "").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"not a comma-separated list of numbers: {spec!r}") from None


def add_mpd_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The block settings of --method mpd (permuted block-diagonal masks, issue 18)."""
    g = p.add_argument_group("mpd: permuted block-diagonal masks")
    if not sweep:
        g.add_argument("--blocks", type=positive_int, default=None, metavar="B",
                       help="B diagonal blocks per conv/linear weight (compression ~ B; "
                            "default 10 with --method mpd; 1 keeps a layer dense)")
    g.add_argument("--blocks-per-layer", default=None, metavar="SPEC",
                   help="per-layer B overriding --blocks, e.g. fc3=1,conv1=2")
    g.add_argument("--conv-blocks", default=None, choices=["matrix", "channels", "none"],
                   help="conv layers: blocks on input channels (whole filters; default; a "
                        "conv with fewer input channels than B uses the matrix), on the "
                        "(out, in*k*k) matrix, or none (conv layers stay dense)")


def mpd_settings(args: argparse.Namespace) -> MPDSettings | None:
    """MPDSettings from the mpd options; None when none of them was given."""
    blocks = getattr(args, "blocks", None)
    if blocks is None and args.blocks_per_layer is None and args.conv_blocks is None \
            and getattr(args, "method", None) != "mpd":
        return None
    conv = args.conv_blocks or "channels"
    return MPDSettings(blocks=10 if blocks is None else blocks,
                       blocks_per_layer=args.blocks_per_layer, convs=conv != "none",
                       conv_form="channels" if conv == "none" else conv)
