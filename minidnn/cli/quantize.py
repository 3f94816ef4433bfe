"""``minidnn quantize``: parse, then ``minidnn.workflows.quantize_file``."""
from __future__ import annotations

import argparse

from ..compress.quantize import MAX_BITS, METHODS, MIN_BITS
from ..options import bounded_int, fraction, nonneg_int, positive_float, positive_int
from ..workflows import QuantizeSettings, QuantizeSpec, quantize_file
from .options import add_backend_args, add_data_args


def add_quantize_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """--bits (or --quantize-bits with ``prefix='quantize-'``), per-layer bits, method, and
    the codebook fine-tuning options."""
    bits = bounded_int(MIN_BITS, MAX_BITS)
    p.add_argument(f"--{prefix}bits", type=bits, default=5 if not prefix else None,
                   help=f"bits per shared weight, {MIN_BITS}-{MAX_BITS} (codebook of up to "
                        f"2^bits values per layer)" + ("; quantize after training" if prefix
                                                       else ""))
    p.add_argument(f"--{prefix}per-layer", default=None, metavar="SPEC",
                   help="per-layer bits overriding the default, e.g. conv1=8,fc2=6")
    p.add_argument(f"--{prefix}max-bytes", type=positive_int, default=None, metavar="BYTES",
                   help="choose the bits of each layer (2-8) for the most accurate file of at "
                        "most this many bytes (loss rises measured on training images; "
                        "needs --data); replaces --bits/--per-layer")
    p.add_argument(f"--{prefix}max-drop", type=fraction, default=None, metavar="F",
                   help="choose the bits of each layer (2-8) for the smallest file whose test "
                        "accuracy is at most F below the float model's (0.001 = 0.1 points; "
                        "picked on the evaluation data --data names)")
    p.add_argument(f"--{prefix}method", default="kmeans", choices=METHODS,
                   help="kmeans: Deep Compression's k-means (linear init); dp: optimal 1-D "
                        "quantization by dynamic programming (DP-Net)")
    p.add_argument(f"--{prefix}finetune-steps", type=nonneg_int, default=0,
                   help="steps of fine-tuning the shared values (Adam, assignments fixed)")
    p.add_argument(f"--{prefix}finetune-lr", type=positive_float, default=1e-4,
                   help="learning rate of the codebook fine-tuning")
    p.add_argument(f"--{prefix}retrain-steps", type=nonneg_int, default=0,
                   help="steps of quantization-aware retraining before the fine-tuning: the "
                        "float weights learn (Adam, straight-through), every weight is "
                        "re-assigned to its nearest centroid after each step")
    p.add_argument(f"--{prefix}retrain-lr", type=positive_float, default=1e-4,
                   help="learning rate of the quantization-aware retraining")
    p.add_argument(f"--{prefix}bias-dtype", default="float16", choices=["float16", "float32"],
                   help="precision of the biases (and other unquantized parameters) in the file")
    p.add_argument(f"--{prefix}codebook-dtype", default="float16",
                   choices=["float16", "float32"],
                   help="round the codebooks to float16 after fine-tuning (2 bytes a value in "
                        "the file, relative change <= 2^-11) or keep float32")
    p.add_argument(f"--{prefix}keep-unused-biases", action="store_true",
                   help="keep the biases of units that no later weight reads (by default "
                        "they are set to 0, which changes no output and compresses)")


def settings(args: argparse.Namespace, prefix: str = "", batch_size: int = 128,
             seed: int = 0) -> QuantizeSettings:
    """The parsed quantize options (``prefix`` as given to ``add_quantize_args``)."""
    get = lambda key: getattr(args, prefix.replace("-", "_") + key)  # noqa: E731
    return QuantizeSettings(bits=get("bits"), per_layer=get("per_layer"), method=get("method"),
                            finetune_steps=get("finetune_steps"), finetune_lr=get("finetune_lr"),
                            retrain_steps=get("retrain_steps"), retrain_lr=get("retrain_lr"),
                            batch_size=batch_size, seed=seed, bias_dtype=get("bias_dtype"),
                            zero_unused=not get("keep_unused_biases"),
                            codebook_dtype=get("codebook_dtype"), max_bytes=get("max_bytes"),
                            max_drop=get("max_drop"))


def register(sub) -> None:
    p = sub.add_parser("quantize", help="share weights (k-means/DP), fine-tune, and save a "
                                        "quantized, entropy-coded model file")
    p.add_argument("input", metavar="IN.h5", help="model file to quantize")
    p.add_argument("--out", required=True, metavar="OUT.h5", help="quantized model file")
    add_quantize_args(p)
    add_data_args(p)
    add_backend_args(p)
    p.add_argument("--batch-size", type=positive_int, default=128,
                   help="fine-tuning batch size")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quantize_file(QuantizeSpec(
        input=args.input, out=args.out, settings=settings(args, "", args.batch_size, args.seed),
        data=args.data, data_root=args.data_root, backend=args.backend, device=args.device,
        json=args.json))
    return 0
