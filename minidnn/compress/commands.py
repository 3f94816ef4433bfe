"""CLI subcommands of the compression methods: sweep, prune, mm and plot.

``register_commands`` is the list of functions ``minidnn.cli`` calls with its subparsers object.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from ..options import (finite_float, fraction, nonneg_float, nonneg_int, positive_float,
                       positive_int, unit_interval)
from .training import TrainConfig, measure, parse_layer_spec, parse_values, per_layer


# ---------------------------------------------------------------------- shared options
def add_retrain_args(p: argparse.ArgumentParser, what: str) -> None:
    """--retrain-steps/-lr/-form: debiasing with the zeros held fixed."""
    p.add_argument("--retrain-steps", type=nonneg_int, default=0,
                   help=f"steps of retraining without l1, zeros fixed ({what})")
    p.add_argument("--retrain-lr", type=positive_float, default=None,
                   help="retraining lr (default --lr)")
    p.add_argument("--retrain-form", default="mask", choices=["mask", "csr"],
                   help="zeros held by a dense mask, or by training only the CSR values")


def add_mm_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The LC schedule and L-step optimizer (and, outside sweeps, the penalty)."""
    g = p.add_argument_group("MM (learning-compression)")
    if not sweep:
        g.add_argument("--penalty", default="l0", choices=["l0", "l1"],
                       help="l0: keep the top-kappa weights; l1: alpha * ||theta||_1")
        g.add_argument("--kappa", type=positive_int, default=None,
                       help="l0: nonzeros kept in total")
        g.add_argument("--sparsity", type=fraction, default=None,
                       help="l0: fraction of all weights zeroed (kappa = (1 - s) * weights)")
        g.add_argument("--kappa-per-layer", default=None,
                       help="l0 per-layer budgets, e.g. fc1=10000,conv2=2000 (others unbounded)")
        g.add_argument("--alpha", type=positive_float, default=None,
                       help="l1: penalty strength")
    g.add_argument("--lc-iters", type=positive_int, default=30,
                   help="number of C steps (mu values)")
    g.add_argument("--l-steps", type=positive_int, default=4000,
                   help="L steps (SGD updates) per C step")
    g.add_argument("--mu0", type=positive_float, default=9.76e-5, help="first mu")
    g.add_argument("--mu-growth", type=positive_float, default=1.1,
                   help="mu_k = mu0 * growth^k")
    g.add_argument("--mm-optimizer", default="sgd", choices=["sgd", "adam", "rmsprop"],
                   help="L-step optimizer (the paper's MM: SGD with momentum)")
    g.add_argument("--mm-lr", type=positive_float, default=0.01, help="L-step learning rate")
    g.add_argument("--mm-momentum", type=fraction, default=0.9, help="L-step SGD momentum")
    g.add_argument("--mm-lr-decay", type=positive_float, default=1.0,
                   help="L-step lr multiplied by this after each C step")
    g.add_argument("--no-eval-theta", action="store_true",
                   help="skip the test accuracy of theta after each C step")


def mm_config(args, **override) -> "MMConfig":
    from .mm import MMConfig
    return MMConfig(lc_iters=args.lc_iters, l_steps=args.l_steps, mu0=args.mu0,
                    mu_growth=args.mu_growth, optimizer=args.mm_optimizer, lr=args.mm_lr,
                    momentum=args.mm_momentum, lr_decay=args.mm_lr_decay,
                    eval_theta=not args.no_eval_theta, **override)


def add_reference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_file", default=None, metavar="FILE",
                   help="dense reference weights (.h5 from minidnn, or .npz); default: train "
                        "one with the training options (--steps/--epochs, --optimizer, --lr)")
    p.add_argument("--save-reference", default=None, metavar="FILE",
                   help="also save the dense reference trained here (.npz or .h5)")


def add_output_args(p: argparse.ArgumentParser, method: str) -> None:
    p.add_argument("--out", default=None,
                   help=f"compressed model file (default runs/<model>-{method}.h5; .npz if "
                        "minidnn.io is unavailable)")
    p.add_argument("--json", default=None,
                   help="result JSON (default: the --out path with .json); a .txt table beside")


# ---------------------------------------------------------------------- prune / mm
def _out_path(args, method: str) -> Path:
    return Path(args.out or Path("runs") / f"{args.model}-{method}.h5")


def _setup(args, method: str):
    """(backend, data name, train, test, TrainConfig, fresh model) from the training options;
    the output files are checked first."""
    from ..cli import DEFAULT_DATA, check_outputs, resolve_backend
    from ..data import load_dataset
    from ..models import build_model
    check_outputs({"--out": _out_path(args, method), "--json": args.json,
                   "--save-reference": args.save_reference})
    backend = resolve_backend(args.backend, args.device)
    data = args.data or DEFAULT_DATA.get(args.model.lower(), "cifar10")
    train_ds, test_ds = load_dataset(data, args.data_root)
    model = build_model(args.model, seed=args.seed).to(backend)
    print(f"minidnn {args.command}: {args.model} on {data} ({len(train_ds)} train / "
          f"{len(test_ds)} test), {backend.device_name}")
    return backend, data, train_ds, test_ds, TrainConfig.from_args(args), model


def _reference(args, model, config: TrainConfig, train_ds, test_ds) -> dict:
    """Load or train the dense reference in ``model``; returns its measurement."""
    from ..cli import training_steps
    from ..train import Trainer
    from .storage import load_weights, save_model
    if args.from_file:
        load_weights(model, args.from_file)
        ref = {**measure(model, test_ds), "file": args.from_file}
    else:
        steps = training_steps(args, len(train_ds))
        print(f"training the dense reference: {steps} steps, {config.optimizer} lr {config.lr}")
        opt = config.make_optimizer(model, steps, lam=0.0)
        config.fit(Trainer(model, opt), train_ds, test_ds, steps)
        ref = {**measure(model, test_ds), "steps": steps}
        if args.save_reference:
            path = save_model(model, args.save_reference, metadata=ref)
            print(f"saved the dense reference to {path}")
            ref["file"] = str(path)
    print(f"reference (dense): test accuracy {100 * ref['accuracy']:.2f}%")
    return ref


def _finish(args, model, record: dict, method: str) -> int:
    """Print the Table A1 layout; write the JSON + text result and the model."""
    from .results import format_layers
    from .sparsify import to_inference_form
    from .storage import save_model
    text = format_layers(record)
    print(text)
    from ..outputs import write_or_rescue
    to_inference_form(model)
    saved = []
    write_or_rescue(lambda p: saved.append(save_model(model, p, metadata=record)),
                    _out_path(args, method), "model")
    path = saved[-1]
    print(f"saved {path}")
    js = Path(args.json) if args.json else path.with_suffix(".json")
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(record, indent=1, default=str))
    js.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {js} and {js.with_suffix('.txt')}")
    return 0


def _one_of(args, names: list[str], what: str):
    given = [n for n in names if getattr(args, n) is not None]
    if len(given) > 1:
        raise ConfigError(f"{what}: give only one of " + ", ".join("--" + n.replace("_", "-")
                                                                  for n in given))
    return given[0] if given else None


def cmd_prune(args) -> int:
    from .prune import prune_retrain
    _, data, train_ds, test_ds, config, model = _setup(args, "pru")
    ref = _reference(args, model, config, train_ds, test_ds)
    kind = "quality" if args.quality is not None or args.quality_per_layer else "sparsity"
    if args.quality is not None and (args.sparsity is not None or args.sparsity_per_layer):
        raise ConfigError("prune: give --sparsity[-per-layer] or --quality[-per-layer], not both")
    default = getattr(args, kind)
    overrides = parse_layer_spec(getattr(args, f"{kind}_per_layer"))
    if default is None and not overrides:
        raise ConfigError("prune: give --sparsity S or --quality Q (or their -per-layer forms)")
    target = per_layer(model, default, overrides) if overrides else default
    rounds = prune_retrain(model, train_ds, test_ds, args.retrain_steps, **{kind: target},
                           rounds=args.rounds, config=config, form=args.retrain_form,
                           lr=args.retrain_lr)
    method = "pru+retrain" if args.retrain_steps else "pru"
    record = {"method": method, "model": args.model, "data": data, "param": kind,
              "value": default, "per_layer": overrides, **measure(model, test_ds),
              "retrain_steps": args.retrain_steps, "rounds": rounds, "reference": ref}
    return _finish(args, model, record, "pru")


def cmd_mm(args) -> int:
    from .debias import retrain
    from .mm import kappa_for_sparsity, mm_compress
    _, data, train_ds, test_ds, config, model = _setup(args, "mm")
    ref = _reference(args, model, config, train_ds, test_ds)
    if args.penalty == "l1":
        if args.alpha is None:
            raise ConfigError("mm --penalty l1 needs --alpha")
        mm = mm_config(args, penalty="l1", alpha=args.alpha)
        param, value = "alpha", args.alpha
    else:
        given = _one_of(args, ["kappa", "sparsity", "kappa_per_layer"], "mm --penalty l0")
        if given is None:
            raise ConfigError("mm --penalty l0 needs --kappa, --sparsity or --kappa-per-layer")
        kappa = {"kappa": lambda: args.kappa,
                 "sparsity": lambda: kappa_for_sparsity(model, args.sparsity),
                 "kappa_per_layer": lambda: parse_layer_spec(args.kappa_per_layer, int)}[given]()
        mm = mm_config(args, penalty="l0", kappa=kappa)
        param, value = given, getattr(args, given)
    history = mm_compress(model, train_ds, test_ds, mm, config, form=args.retrain_form)
    record = {"method": "mm", "model": args.model, "data": data, "param": param, "value": value,
              **measure(model, test_ds), "mm": mm.to_dict(), "history": history,
              "reference": ref}
    if args.retrain_steps:
        retrain(model, train_ds, test_ds, args.retrain_steps, config, form=args.retrain_form,
                lr=args.retrain_lr)
        record.update(method="mm+retrain", accuracy_before_retrain=record["accuracy"],
                      **measure(model, test_ds), retrain_steps=args.retrain_steps)
    return _finish(args, model, record, "mm")


# ---------------------------------------------------------------------- sweep / plot
def cmd_sweep(args) -> int:
    from ..cli import DEFAULT_DATA
    from ..outputs import check_output_folder
    from .sweep import SweepSpec, make_jobs, paper_lams, run_sweep
    base = args.method.split("+")[0]
    lists = {"lam": parse_values(args.lams), "sparsity": parse_values(args.sparsities),
             "quality": parse_values(args.qualities)}
    paper = parse_values(args.paper_lams)
    if paper:
        lists["lam"] = paper_lams(paper, args.lr)
    given = [k for k, v in lists.items() if v]
    if len(given) != 1:
        raise ConfigError("sweep: give exactly one of --lams, --paper-lams, --sparsities, "
                          "--qualities")
    param = given[0]
    if base == "mm" and param == "lam":
        param = "alpha"  # MM's l1 strength
    values = lists[given[0]]
    if args.method.endswith("+retrain") and not args.retrain_steps:
        raise ConfigError(f"sweep --method {args.method} needs --retrain-steps R > 0")
    jobs = make_jobs(args.method, values, param, paper or None)
    check_output_folder(args.out, "--out")
    spec = SweepSpec(
        model=args.model, data=args.data or DEFAULT_DATA.get(args.model.lower(), "cifar10"),
        data_root=args.data_root, backend=args.backend, device=args.device,
        train=TrainConfig.from_args(args), steps=args.steps, epochs=args.epochs,
        retrain_steps=args.retrain_steps, retrain_lr=args.retrain_lr,
        retrain_form=args.retrain_form, lam_per_layer=parse_layer_spec(args.lam_per_layer),
        prune_rounds=args.rounds, prune_per_layer=parse_layer_spec(args.prune_per_layer),
        mm=mm_config(args), out=args.out, save_models=args.save_models)
    print(f"minidnn sweep: {args.model} {args.method} over {param} = "
          f"{', '.join(f'{v:g}' for v in values)}; {args.jobs} process(es); results in {args.out}")
    result = run_sweep(spec, jobs, workers=args.jobs, reference=args.reference,
                       plot=not args.no_plot, title=args.title)
    from .results import format_summary
    print(format_summary(result["records"], result["reference"]))
    if result["failed"]:
        print(f"{len(result['failed'])} run(s) failed: {', '.join(result['failed'])} "
              f"(see {args.out}/runs/*.log)")
        return 1
    return 0


def cmd_plot(args) -> int:
    from .results import format_summary, load_results, merge_records, plot_results
    records: list[dict] = []
    reference = None
    for src in args.results:
        data = load_results(src)
        records = merge_records(records, data["records"])
        if reference is None:
            reference = data["reference"]
        elif data["reference"] and data["reference"]["accuracy"] != reference["accuracy"]:
            print(f"note: {src} has another reference ({100 * data['reference']['accuracy']:.2f}%"
                  f"); drawing the first ({100 * reference['accuracy']:.2f}%)")
    if args.methods:
        keep = {m.strip() for m in args.methods.split(",")}
        records = [r for r in records if r["method"] in keep]
    if not records:
        raise ConfigError("plot: no records to draw")
    path = plot_results(records, reference, args.out, title=args.title, fraction=args.fraction,
                        annotate=not args.no_annotate, xmin=args.xmin, ymin=args.ymin)
    print(format_summary(records, reference, args.fraction))
    print(f"plot: {path}")
    return 0


def register_sweep(sub) -> None:
    from ..cli import add_training_args
    from .sweep import METHODS
    p = sub.add_parser("sweep", help="run a method over several lam/sparsity values; CSV, JSON, "
                                     "summary table and accuracy-vs-compression plot")
    p.add_argument("model", help="zoo model name, e.g. lenet5")
    add_training_args(p)
    p.add_argument("--method", required=True, choices=METHODS,
                   help="spc: l1 prox from scratch; +retrain: then debias; pru: prune a dense "
                        "reference and retrain; mm: learning-compression from the reference")
    p.add_argument("--lams", default=None, help="spc: l1 strengths; mm: l1 alphas (comma list)")
    p.add_argument("--paper-lams", default=None,
                   help="spc: the paper's lambda values p (lam = 0.001 ln p / lr)")
    p.add_argument("--sparsities", default=None,
                   help="pru: per-layer target sparsity; mm: total l0 budget as sparsity")
    p.add_argument("--qualities", default=None, help="pru: thresholds quality x std per layer")
    p.add_argument("--lam-per-layer", default=None,
                   help="spc: per-layer lam overriding the swept value, e.g. fc1=0.5,conv1=0.1")
    p.add_argument("--prune-per-layer", default=None,
                   help="pru: per-layer sparsity/quality overriding the swept value")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="pru: prune->retrain rounds ramping up to the target")
    add_retrain_args(p, "spc+retrain, pru per round, mm+retrain")
    add_mm_args(p, sweep=True)
    p.add_argument("--reference", default=None, metavar="FILE",
                   help="dense reference (.npz/.h5); default OUT/reference.npz, else trained")
    p.add_argument("--jobs", type=positive_int, default=1, help="runs in parallel (processes)")
    p.add_argument("--out", default="runs/sweep", help="results folder (merged with earlier runs)")
    p.add_argument("--save-models", action="store_true", help="save every compressed model")
    p.add_argument("--title", default=None, help="plot title")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.set_defaults(func=cmd_sweep)


def register_prune(sub) -> None:
    from ..cli import add_training_args
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
    p.set_defaults(func=cmd_prune)


def register_mm(sub) -> None:
    from ..cli import add_training_args
    p = sub.add_parser("mm", help="MM: learning-compression (method of multipliers) from a "
                                  "dense model")
    p.add_argument("model", help="zoo model name, e.g. lenet5")
    add_training_args(p)
    add_reference_args(p)
    add_mm_args(p)
    add_retrain_args(p, "optional debiasing after MM")
    add_output_args(p, "mm")
    p.set_defaults(func=cmd_mm)


def register_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw (and merge) sweep results: accuracy vs compression")
    p.add_argument("results", nargs="+", help="sweep folders or results.json files")
    p.add_argument("--out", default="accuracy.png", help="PNG to write")
    p.add_argument("--methods", default=None, help="only these methods, e.g. spc,pru+retrain")
    p.add_argument("--title", default=None)
    p.add_argument("--fraction", type=unit_interval, default=0.99,
                   help="mark the most compressed run within this fraction of the reference")
    p.add_argument("--xmin", type=finite_float, default=None,
                   help="zoom: only runs with at least this compression rate")
    p.add_argument("--ymin", type=finite_float, default=None,
                   help="zoom: only runs with at least this accuracy")
    p.add_argument("--no-annotate", action="store_true", help="no parameter labels on points")
    p.set_defaults(func=cmd_plot)


register_commands = [register_sweep, register_prune, register_mm, register_plot]
