"""``minidnn plot``: draw (and merge) sweep results; labels and colours from the registry."""
from __future__ import annotations

import os

from ..compress.methods import label_of
from ..compress.results import (PUBLISHED_SPARSITY, format_summary, load_results,
                                merge_records, plot_anchored, plot_bytes, plot_results)
from ..errors import ConfigError
from ..options import finite_float, unit_interval


def register(sub) -> None:
    p = sub.add_parser("plot", help="draw (and merge) sweep results: accuracy vs compression "
                                    "(or vs file bytes, --bytes)")
    p.add_argument("results", nargs="*", help="sweep folders or results.json files")
    p.add_argument("--bytes", action="store_true",
                   help="accuracy vs model-file bytes (log x) instead, from the records with "
                        "file_bytes (spc+retrain+q) and the --files; Deep Compression drawn in")
    p.add_argument("--files", nargs="+", default=[], metavar="FILE.h5",
                   help="--bytes / --anchors: also these model files (size on disk, "
                        "accuracy, zeros and method from their metadata)")
    p.add_argument("--anchors", default=None, choices=sorted(PUBLISHED_SPARSITY),
                   help="accuracy vs compression (log x) with the published points for this "
                        "network drawn in (Han 2015, DNS 2016, soft weight sharing, Sparse VD), "
                        "from the sweeps' records and the --files")
    p.add_argument("--goal", default=None, metavar="X,ACC",
                   help="--anchors: draw the goal corner, e.g. 111,0.991")
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


def file_records(paths: list[str]) -> list[dict]:
    """One record per model file: its size, the accuracy in its metadata, and a label; files
    are grouped into lines by how their weights were made (e.g. "SpC (Retrain) + Q")."""
    from ..io import file_report
    out = []
    for path in paths:
        r = file_report(path)
        meta = r["metadata"]
        if not isinstance(meta.get("accuracy"), (int, float)):
            raise ConfigError(f"plot: {path} has no accuracy in its metadata")
        q = meta.get("quantize_bits")
        out.append({"method": f"{_made_by(meta)} + Q" if q else f"{_made_by(meta)}, float",
                    "accuracy": float(meta["accuracy"]), "file_bytes": os.path.getsize(path),
                    "label": f"{meta.get('quantize_method', '')} {q} bits" if q else
                    f"{r['layers'][0]['dtype']}"})
    return out


def _made_by(meta: dict) -> str:
    """The sparsifying method of a file's weights as legends name it ('Pru (Retrain)')."""
    method = meta.get("method")
    if not isinstance(method, str):
        return "model"
    retrained = meta.get("retrain_steps") and not method.endswith("+retrain")
    return label_of(method + ("+retrain" if retrained else ""))


def anchored_records(args) -> list[dict]:
    """The records for --anchors: the sweeps' (filtered by --methods) and one per --files
    file (method from its metadata, labelled with the file's name)."""
    records = merged(args.results)[0] if args.results else []
    if args.methods:
        keep = {m.strip() for m in args.methods.split(",")}
        records = [r for r in records if r["method"] in keep]
    from ..io import file_report
    for path, rec in zip(args.files, file_records(args.files)):
        r = file_report(path)
        method = r["metadata"].get("method") or "file"
        retrained = bool(r["metadata"].get("retrain_steps"))
        records.append({"method": method + ("+retrain" if retrained and method != "file"
                                            else ""),
                        "accuracy": rec["accuracy"], "zeros": r["weights"]["zeros"],
                        "label": os.path.splitext(os.path.basename(path))[0]})
    if not records:
        raise ConfigError("plot --anchors: no records (give sweep folders or --files)")
    return records


def _goal(text: str | None) -> tuple[float, float] | None:
    """'111,0.991' -> (111.0, 0.991); ConfigError for anything else."""
    if text is None:
        return None
    try:
        x, acc = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"plot --goal: expected X,ACC like 111,0.991, got {text!r}") from None
    if not (x >= 1 and 0 < acc <= 1):
        raise ConfigError(f"plot --goal: need X >= 1 and 0 < ACC <= 1, got {text!r}")
    return x, acc


def run(args) -> int:
    if args.anchors:
        path = plot_anchored(anchored_records(args), args.out, PUBLISHED_SPARSITY[args.anchors],
                             title=args.title, goal=_goal(args.goal),
                             annotate=not args.no_annotate, ymin=args.ymin)
        print(f"plot: {path}")
        return 0
    if args.bytes:
        records = merged(args.results)[0] if args.results else []
        records += file_records(args.files)
        if not any(r.get("file_bytes") for r in records):
            raise ConfigError("plot --bytes: no records with file_bytes and no --files")
        print(f"plot: {plot_bytes(records, args.out, title=args.title)}")
        return 0
    if not args.results:
        raise ConfigError("plot: give sweep folders or results.json files (or --bytes --files)")
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
