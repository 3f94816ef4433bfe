"""The ``minidnn`` command line: train, devices, info (and the methods' subcommands)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import MinidnnError


def resolve_backend(name: str, device: str | None):
    """'auto' = OpenCL when a device exists (first GPU, else PoCL CPU), else NumPy with a note."""
    from .backend import get_backend
    from .errors import NoOpenCLDeviceError
    if name != "auto":
        return get_backend(name, device)
    try:
        return get_backend("opencl", device)
    except NoOpenCLDeviceError as exc:
        print(f"note: {exc}\nnote: falling back to the NumPy backend", file=sys.stderr)
        return get_backend("numpy")


def add_training_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that trains (train, sweep)."""
    p.add_argument("--data", default=None, help="dataset name (default: the model's: mnist/cifar10)")
    p.add_argument("--data-root", default=None,
                   help="folder with the standard dataset files (default: $MINIDNN_DATA or ./data)")
    p.add_argument("--backend", default="auto", choices=["auto", "opencl", "numpy"])
    p.add_argument("--device", default=None, help="OpenCL device: gpu, cpu, P:D index or name")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd", "rmsprop"])
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine", "step"],
                   help="learning-rate schedule over the run")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=float, default=None, help="training length in epochs")
    p.add_argument("--steps", type=int, default=None, help="training length in steps (updates)")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget: stop after this many minutes of training (evaluation not "
                        "counted); --steps/--epochs, else the recipe's 60k steps, cap the run and "
                        "set the schedule's length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: at end)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minidnn", description="Learn compressed networks from scratch on OpenCL devices.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (dense, or sparse with the l1 prox)")
    t.add_argument("model", help="zoo model name (e.g. lenet5) or your class: "
                                 "path/to/nets.py:TinyNet or package.module:TinyNet")
    add_training_args(t)
    t.add_argument("--method", default="spc", choices=["spc", "dense"],
                   help="spc: proximal l1 training (sparse coding); dense: no l1")
    t.add_argument("--lam", type=float, default=None,
                   help="l1 strength (threshold lr*lam per step); paper value p -> ln(p) at lr 1e-3")
    t.add_argument("--lam-per-layer", default=None, metavar="SPEC",
                   help="per-layer lam overriding --lam, e.g. conv1=0.1,fc1=0.4")
    t.add_argument("--bn-batches", type=int, default=50,
                   help="before the final evaluation, re-estimate batch-norm statistics over "
                        "this many training batches (0: keep the running averages)")
    t.add_argument("--retrain-steps", type=int, default=0,
                   help="debiasing: steps of training without l1, zeros held fixed")
    t.add_argument("--retrain-lr", type=float, default=None, help="lr for debiasing (default --lr)")
    t.add_argument("--retrain-form", default="mask", choices=["mask", "csr"],
                   help="how zeros are held during debiasing: dense+mask or CSR values only")
    t.add_argument("--csr-density", type=float, default=0.5,
                   help="save/run layers with at most this density as CSR")
    t.add_argument("--out", default=None, help="model file to write (.h5); default runs/<model>.h5")
    t.add_argument("--values", default="float32", choices=["float32", "float16"],
                   help="precision of saved weight values")
    t.add_argument("--json", default=None, help="also write the final figures to this JSON file")
    t.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="save model + optimizer state + step + RNG here every "
                        "--checkpoint-every steps of the main training phase; if FILE exists, "
                        "resume from it (the same command continues an interrupted run exactly)")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("devices", help="list the OpenCL devices minidnn can use")
    d.set_defaults(func=cmd_devices)

    i = sub.add_parser("info", help="describe a saved model: architecture, per-layer sparsity, size")
    i.add_argument("path")
    i.set_defaults(func=cmd_info)

    e = sub.add_parser("evaluate", help="test accuracy of a saved model (optionally after "
                                         "re-estimating its batch-norm statistics)")
    e.add_argument("path")
    e.add_argument("--data", default=None, help="dataset name (default: the model's)")
    e.add_argument("--data-root", default=None,
                   help="folder with the standard dataset files (default: $MINIDNN_DATA or ./data)")
    e.add_argument("--backend", default="auto", choices=["auto", "opencl", "numpy"])
    e.add_argument("--device", default=None, help="OpenCL device: gpu, cpu, P:D index or name")
    e.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    e.add_argument("--bn-batches", type=int, default=0,
                   help="first re-estimate batch-norm statistics over this many training "
                        "batches of 128")
    e.add_argument("--out", default=None, help="save the (recalibrated) model here")
    e.set_defaults(func=cmd_evaluate)

    for register in _method_commands():
        register(sub)
    return parser


def _method_commands():
    """Subcommands contributed by minidnn.compress (sweep, prune, mm), if present."""
    try:
        from .compress.commands import register_commands
    except ImportError:
        return []
    return register_commands


# LeNet-5: 0.3 gives ~97.5% zeros in 2 epochs and ~99% accuracy after debiasing in longer runs
# (docs/results.md). CIFAR models: the paper's SpC setting p as lam = ln(p) at lr 1e-3
# (AlexNet 1.03, VGG16 1.02, ResNet-32 1.001; see each model's ``recipe``).
DEFAULT_LAM = {"lenet5": 0.3, "alexnet": 0.0296, "vgg16": 0.0198, "resnet32": 0.001}
DEFAULT_DATA = {"lenet5": "mnist", "alexnet": "cifar10", "vgg16": "cifar10",
                "resnet32": "cifar10"}


def training_steps(args, train_size: int) -> int:
    if args.steps is not None:
        return args.steps
    if getattr(args, "minutes", None) is not None and args.epochs is None:
        from .models import training_recipe
        return int(training_recipe(args.model).get("steps", 60_000))
    epochs = args.epochs if args.epochs is not None else 2.0
    return max(1, int(round(epochs * (train_size // args.batch_size))))


def check_input_shape(model, dataset) -> None:
    """ConfigError when the dataset's images do not fit the model (e.g. LeNet-5 on CIFAR-10)."""
    from .errors import ConfigError
    got = tuple(dataset.images.shape[1:])
    want = tuple(model.input_shape)
    if want and got != want:
        raise ConfigError(f"{model.arch} takes images of shape {want}, but {dataset.name} has "
                          f"{got}: pick the model's dataset (--data) or another model")


def make_schedule(kind: str, lr: float, steps: int):
    from .optim import Constant, Cosine, StepDecay
    if kind == "cosine":
        return Cosine(lr, steps)
    if kind == "step":
        return StepDecay(lr, max(1, steps // 3), 0.1)
    return Constant(lr)


def cmd_train(args) -> int:
    from .compress import freeze_zeros, to_inference_form
    from .compress.spc import layer_lams
    from .compress.training import parse_layer_spec
    from .data import load_dataset
    from .io.architecture import record_architecture
    from .models import build_model, default_data, default_lam, training_augment
    from .optim import make_optimizer
    from .report import format_table, layer_stats, model_device_bytes, total_stats
    from .train import Trainer

    model = build_model(args.model, seed=args.seed)  # an unknown name fails before any work
    record_architecture(model)  # so does a class whose file could not rebuild it
    backend = resolve_backend(args.backend, args.device)
    data = args.data or DEFAULT_DATA.get(args.model.lower()) or default_data(model)
    train_ds, test_ds = load_dataset(data, args.data_root)
    check_input_shape(model, train_ds)
    model.to(backend)
    lam = 0.0 if args.method == "dense" else (
        args.lam if args.lam is not None else DEFAULT_LAM.get(args.model.lower()))
    if lam is None:  # a class of your own: its recipe's lam, else the dataset's default
        lam, why = default_lam(model, data)
        print(f"note: lam {lam:g}: {why}; set it with --lam")
    steps = training_steps(args, len(train_ds))
    augment = training_augment(args.model)  # the model recipe's (resnet32: crop + flip)
    print(f"minidnn: {args.model} on {data} from {train_ds.source} "
          f"({len(train_ds)} train / {len(test_ds)} test), "
          f"{backend.device_name}, {args.optimizer}{' prox' if lam else ''} lr {args.lr} "
          f"lam {lam}{' (per layer ' + args.lam_per_layer + ')' if args.lam_per_layer else ''}, "
          f"{steps} steps of {args.batch_size}"
          + (f" or {args.minutes:g} minutes" if args.minutes is not None else ""))
    opt_lam = layer_lams(model, lam, parse_layer_spec(args.lam_per_layer)) if lam else 0.0
    opt = make_optimizer(args.optimizer, model.named_parameters(),
                         make_schedule(args.schedule, args.lr, steps), lam=opt_lam,
                         **({"momentum": args.momentum} if args.optimizer == "sgd" else {}))
    trainer = Trainer(model, opt)
    on_step = _checkpointing(args, model, opt)
    log_every = min(args.log_every, steps)
    hist = trainer.fit(train_ds, test_ds, steps - opt.step_count, args.batch_size,
                       seed=args.seed, eval_every=args.eval_every, log_every=log_every,
                       augment=augment, progress=not args.no_progress, on_step=on_step,
                       max_seconds=None if args.minutes is None else 60 * args.minutes)
    steps = opt.step_count
    print(f"trained {steps} steps in {hist.seconds:.1f} s ({hist.images_per_second:.0f} images/s)")
    result = {"model": args.model, "data": data, "method": args.method, "lam": lam,
              "lam_per_layer": args.lam_per_layer,
              "optimizer": args.optimizer, "lr": args.lr, "steps": steps, "seed": args.seed,
              "backend": backend.device_name, "train_seconds": round(hist.seconds, 2)}
    if args.retrain_steps:
        before = trainer.evaluate(test_ds)
        result.update(accuracy_before_retrain=before["accuracy"])
        print(f"before debiasing: test accuracy {100 * before['accuracy']:.2f}%")
        freeze_zeros(model, args.retrain_form)
        lr = args.retrain_lr if args.retrain_lr is not None else args.lr
        retrain_opt = make_optimizer(args.optimizer, model.named_parameters(),
                                     make_schedule(args.schedule, lr, args.retrain_steps), lam=0.0)
        trainer = Trainer(model, retrain_opt)
        t0 = time.perf_counter()
        trainer.fit(train_ds, test_ds, args.retrain_steps, args.batch_size, seed=args.seed + 1,
                    eval_every=args.eval_every, log_every=min(args.log_every, args.retrain_steps),
                    augment=augment,
                    progress=not args.no_progress)
        print(f"debiased {args.retrain_steps} steps ({args.retrain_form}) in "
              f"{time.perf_counter() - t0:.1f} s")
        result.update(retrain_steps=args.retrain_steps, retrain_form=args.retrain_form)
    if trainer.recalibrate_batchnorm(train_ds, args.bn_batches, args.batch_size, args.seed):
        print(f"batch-norm statistics re-estimated over {args.bn_batches} training batches")
        result.update(bn_batches=args.bn_batches)
    final = trainer.evaluate(test_ds)
    to_inference_form(model, args.csr_density)
    rows = layer_stats(model)
    total = total_stats(rows)
    held, dense = model_device_bytes(model)
    print(format_table(rows))
    result.update(accuracy=final["accuracy"], test_loss=final["loss"], zeros=total.zeros,
                  nnz=total.nnz, weights=total.total, device_bytes=held, dense_device_bytes=dense)
    out = Path(args.out or Path("runs") / f"{model.arch}.h5")
    size = _save(model, out, result, args.values)
    print(f"test accuracy {100 * final['accuracy']:.2f}%  zeros {100 * total.zeros:.2f}% "
          f"({total.nnz:,} of {total.total:,} weights nonzero, {total.compression:.1f}x)  "
          f"device {held / 1024:.1f} KiB (dense {dense / 1024:.1f} KiB)")
    if size is not None:
        result.update(file=str(out), file_bytes=size)
        print(f"saved {out}: {size / 1024:.1f} KiB on disk")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _checkpointing(args, model, optimizer):
    """With --checkpoint: resume from the file if it exists; return fit's on_step callback."""
    if not args.checkpoint:
        return None
    from .io import load_checkpoint, save_checkpoint
    path = Path(args.checkpoint)
    if path.exists():
        load_checkpoint(path, model, optimizer)
        print(f"resumed from {path} at step {optimizer.step_count}")
    path.parent.mkdir(parents=True, exist_ok=True)

    def on_step(step: int) -> None:
        if step % args.checkpoint_every == 0:
            save_checkpoint(path, model, optimizer)
    return on_step


def _save(model, path: Path, metadata: dict, values: str) -> int | None:
    """Save with minidnn.io; returns the file size in bytes."""
    from .io import save
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, path, metadata=metadata, values_dtype=values)
    return os.path.getsize(path)


def cmd_devices(args) -> int:
    from .backend.opencl_backend import describe_device, list_devices
    for index, device in list_devices():
        print(f"{index}  {describe_device(device)}")
    return 0


def cmd_info(args) -> int:
    from .io import describe
    print(describe(args.path))
    return 0


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .io import load
    from .models import default_data
    from .train import Trainer

    backend = resolve_backend(args.backend, args.device)
    model = load(args.path, backend=backend)
    data = args.data or DEFAULT_DATA.get(model.arch) or default_data(model)
    train_ds, test_ds = load_dataset(data, args.data_root)
    check_input_shape(model, test_ds)
    trainer = Trainer(model)
    if trainer.recalibrate_batchnorm(train_ds, args.bn_batches):
        print(f"batch-norm statistics re-estimated over {args.bn_batches} training batches")
    result = trainer.evaluate(test_ds, args.batch_size)
    print(f"{args.path}: {model.arch} on {data} ({len(test_ds)} test images), "
          f"{backend.device_name}: test accuracy {100 * result['accuracy']:.2f}%, "
          f"loss {result['loss']:.4f}")
    if args.out:
        metadata = dict(getattr(model, "metadata", None) or {})
        metadata.update(accuracy=result["accuracy"], test_loss=result["loss"])
        size = _save(model, Path(args.out), metadata, "float32")
        print(f"saved {args.out}: {size / 1024:.1f} KiB on disk")
    return 0


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # log lines reach a redirected file at once
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MinidnnError as exc:
        print(f"minidnn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
