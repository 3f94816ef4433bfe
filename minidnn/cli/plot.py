"""``minidnn plot``: draw (and merge) sweep results; labels and colours from the registry."""
from __future__ import annotations

from ..compress.results import format_summary, load_results, merge_records, plot_results
from ..errors import ConfigError
from ..options import finite_float, unit_interval


def register(sub) -> None:
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
    p.set_defaults(func=run)


def merged(sources: list[str]) -> tuple[list[dict], dict | None]:
    """The records of several results folders/files, and the first one's reference."""
    records: list[dict] = []
    reference = None
    for src in sources:
        data = load_results(src)
        records = merge_records(records, data["records"])
        if reference is None:
            reference = data["reference"]
        elif data["reference"] and data["reference"]["accuracy"] != reference["accuracy"]:
            print(f"note: {src} has another reference ({100 * data['reference']['accuracy']:.2f}%"
                  f"); drawing the first ({100 * reference['accuracy']:.2f}%)")
    return records, reference


def run(args) -> int:
    records, reference = merged(args.results)
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
