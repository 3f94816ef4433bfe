"""``minidnn sweep``: parse, then ``minidnn.compress.sweep.run_sweep``. The method choices and
their parameters come from the method registry."""
from __future__ import annotations

from ..compress.methods import get_method, sweep_variants
from ..compress.results import format_summary
from ..compress.sweep import SweepSpec, run_sweep, sweep_jobs
from ..models import default_data, model_class
from ..names import parse_layer_spec
from ..options import nonneg_int, positive_int
from ..outputs import check_output_folder
from ..compress.quantize_stage import QuantizeSettings
from .quantize import add_quantize_args
from .quantize import settings as quantize_settings
from .options import (add_mm_args, add_mpd_args, add_retrain_args, add_training_args,
                      mm_config, mpd_settings, parse_values, train_config)

VALUE_OPTIONS = {"lams": "lam", "sparsities": "sparsity", "qualities": "quality"}


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a method over several lam/sparsity values; CSV, JSON, "
                                     "summary table and accuracy-vs-compression plot")
    p.add_argument("model", help="zoo model name, e.g. lenet5")
    add_training_args(p)
    p.add_argument("--method", required=True, choices=sweep_variants(),
                   help="spc: l1 prox from scratch; +retrain: then debias; pru: prune a dense "
                        "reference and retrain; mm: learning-compression from the reference")
    p.add_argument("--lams", default=None, help="spc: l1 strengths; mm: l1 alphas (comma list)")
    p.add_argument("--paper-lams", default=None,
                   help="spc: the paper's lambda values p (lam = 0.001 ln p / lr)")
    p.add_argument("--sparsities", default=None,
                   help="pru: per-layer target sparsity; mm: total l0 budget as sparsity")
    p.add_argument("--qualities", default=None, help="pru: thresholds quality x std per layer")
    p.add_argument("--values", default=None,
                   help="any method: values of --param (comma list), e.g. mpd: blocks 2,5,10")
    p.add_argument("--param", default=None,
                   help="the parameter --values sets (default: the method's first)")
    p.add_argument("--lam-per-layer", default=None,
                   help="spc: per-layer lam overriding the swept value, e.g. fc1=0.5,conv1=0.1")
    p.add_argument("--prune-per-layer", default=None,
                   help="pru: per-layer sparsity/quality overriding the swept value; "
                        "chnb/chl1: per-layer channel ratios")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="pru: prune->retrain rounds ramping up to the target")
    add_retrain_args(p, "spc+retrain, pru per round, mm+retrain")
    add_mm_args(p, sweep=True)
    add_mpd_args(p, sweep=True)
    add_quantize_args(p.add_argument_group("spc+retrain+q: the quantize stage (default 5 bits)"),
                      "quantize-")
    p.add_argument("--reference", default=None, metavar="FILE",
                   help="dense reference (.npz/.h5); default OUT/reference.npz, else trained")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="runs in parallel: N > 1 starts a local Dask cluster of N worker "
                        "processes on 127.0.0.1 (needs minidnn[distributed]); 1: one after "
                        "the other in this process")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="send the runs to a running Dask cluster (docs/distributed.md)")
    p.add_argument("--scheduler-file", default=None, metavar="FILE",
                   help="the same, with the scheduler file `dask scheduler --scheduler-file` "
                        "wrote")
    p.add_argument("--retries", type=nonneg_int, default=2,
                   help="times a run is retried when its worker dies (default 2)")
    p.add_argument("--resume", action="store_true",
                   help="run only what has no records in --out yet (same settings required)")
    p.add_argument("--out", default="runs/sweep", help="results folder (merged with earlier runs)")
    p.add_argument("--save-models", action="store_true", help="save every compressed model")
    p.add_argument("--title", default=None, help="plot title")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.set_defaults(func=run)


def _values(args) -> dict[str, list[float]]:
    """{sweep option: values} from --lams/--sparsities/--qualities and --values/--param."""
    values = {VALUE_OPTIONS[k]: parse_values(getattr(args, k)) for k in VALUE_OPTIONS}
    if args.values:
        param = args.param or get_method(args.method).params[0]
        values[param] = values.get(param, []) + parse_values(args.values)
    return values


def run(args) -> int:
    config = train_config(args)
    param, jobs = sweep_jobs(args.method, _values(args), parse_values(args.paper_lams),
                             config.lr, args.retrain_steps)
    check_output_folder(args.out, "--out")
    spec = SweepSpec(
        model=args.model, data=args.data or default_data(model_class(args.model)),
        data_root=args.data_root, backend=args.backend, device=args.device, train=config,
        steps=args.steps, epochs=args.epochs, retrain_steps=args.retrain_steps,
        retrain_lr=args.retrain_lr, retrain_form=args.retrain_form,
        lam_per_layer=parse_layer_spec(args.lam_per_layer), prune_rounds=args.rounds,
        prune_per_layer=parse_layer_spec(args.prune_per_layer), mm=mm_config(args),
        out=args.out, save_models=args.save_models,
        mpd=mpd_settings(args) if args.method == "mpd" else None,
        quantize=quantize_settings(args, "quantize-", config.batch_size, config.seed)
        if args.quantize_bits is not None else QuantizeSettings())
    print(f"minidnn sweep: {args.model} {args.method} over {param} = "
          f"{', '.join(f'{j.value:g}' for j in jobs)}; results in {args.out}")
    result = run_sweep(spec, jobs, workers=args.jobs, reference=args.reference,
                       plot=not args.no_plot, title=args.title, scheduler=args.scheduler,
                       scheduler_file=args.scheduler_file, resume=args.resume,
                       retries=args.retries)
    print(format_summary(result["records"], result["reference"]))
    if result["failed"]:
        print(f"{len(result['failed'])} run(s) failed: {', '.join(result['failed'])} "
              f"(see {args.out}/runs/*.log)")
        return 1
    return 0
