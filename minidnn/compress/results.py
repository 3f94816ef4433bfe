"""Sweep results: records to CSV/JSON, Table A1/Table 1 text, and the accuracy-vs-compression plot.

A record is a flat JSON-friendly dict: method, param ('lam', 'sparsity', 'quality', 'alpha'),
value, accuracy, zeros (the paper's compression rate), compression (x), nnz, weights, layers
(a list of {name, nnz, total, zeros, compression}), plus run details.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Iterable

from ..errors import DTypeError, MinidnnError
from ..report import Column, counts_cell, format_columns
from .methods import color_of, label_of, rank_of

CSV_FIELDS = ["run", "method", "param", "value", "paper_p", "accuracy", "zeros", "compression",
              "nnz", "weights", "loss", "steps", "retrain_steps", "seconds", "seed", "backend",
              "file_bytes"]  # file_bytes: quantized runs (spc+retrain+q)


def record_key(r: dict) -> tuple:
    return r["method"], r.get("param"), r.get("value")


def sort_records(records: Iterable[dict]) -> list[dict]:
    """By method (paper order), then by value."""
    return sorted(records, key=lambda r: (rank_of(r["method"]), r.get("value") or 0.0))


# ---------------------------------------------------------------------- files
def load_results(path: str | Path) -> dict:
    """A results.json (or a folder holding one) as {'reference': ..., 'records': [...]}."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MinidnnError(f"cannot read sweep results {path}: {exc}") from None
    data.setdefault("records", [])
    data.setdefault("reference", None)
    return data


def merge_records(old: Iterable[dict], new: Iterable[dict]) -> list[dict]:
    """Old records not redone by ``new`` (same method, param, value), then the new ones."""
    new = list(new)
    redone = {record_key(r) for r in new}
    return sort_records([r for r in old if record_key(r) not in redone] + new)


def write_results(out: str | Path, records: list[dict], reference: dict | None,
                  config: dict | None = None) -> None:
    """Write ``out``/results.json (everything) and ``out``/results.csv (one row per record)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = sort_records(records)
    payload = {"reference": reference, "config": config or {}, "records": records}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default))
    tmp.replace(out / "results.json")
    write_csv(out / "results.csv", records, reference)


def write_csv(path: str | Path, records: list[dict], reference: dict | None = None) -> None:
    """Flat CSV: the CSV_FIELDS, then one 'zeros:<layer>' column per layer (the reference first)."""
    rows = ([{**reference, "method": "dense", "run": "reference"}] if reference else []) + records
    layers: list[str] = []
    for r in rows:
        for layer in r.get("layers", []):
            if f"zeros:{layer['name']}" not in layers:
                layers.append(f"zeros:{layer['name']}")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS + layers, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            row = {k: r.get(k, "") for k in CSV_FIELDS}
            row.update({f"zeros:{x['name']}": f"{x['zeros']:.6f}" for x in r.get("layers", [])})
            w.writerow(row)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    raise DTypeError(f"not JSON serializable: {type(o).__name__}")


# ---------------------------------------------------------------------- tables
def _rate(zeros: float, compression: float) -> str:
    x = "inf" if math.isinf(compression) else f"{compression:.0f}"
    return f"{100 * zeros:.2f}% ({x}x)"


RECORD_COLUMNS = (
    Column("layer", 12, lambda x: x["name"], "<"),
    Column("NNZ/Total Weights", 22, lambda x: counts_cell(x["nnz"], x["total"])),
    Column("Compression Rate", 18, lambda x: _rate(x["zeros"], x["compression"])))


def format_layers(record: dict) -> str:
    """One result as the paper's Table A1 column: layer, NNZ/total, compression rate (x)."""
    total = {"name": "Total", "nnz": record["nnz"], "total": record["weights"],
             "zeros": record["zeros"], "compression": record["compression"]}
    table = format_columns(RECORD_COLUMNS, record.get("layers", []), total, rule=False)
    v = record.get("value")
    v = f"{v:g}" if isinstance(v, (int, float)) else v
    value = f" @ {record['param']} = {v}" if record.get("param") and v is not None else ""
    label = label_of(record["method"])
    return table + f"\ntest accuracy {record['accuracy']:.4f}{value}  ({label})"


def best_records(records: list[dict], reference_accuracy: float | None,
                 fraction: float = 0.99) -> dict[str, dict]:
    """Per method, the most compressed record with accuracy >= fraction * reference (the
    paper's choice for Tables 1 and A1); without a reference, the most accurate one."""
    best: dict[str, dict] = {}
    for r in sort_records(records):
        if reference_accuracy is not None:
            if r["accuracy"] < fraction * reference_accuracy:
                continue
            better = lambda a, b: (a["zeros"], a["accuracy"]) > (b["zeros"], b["accuracy"])
        else:
            better = lambda a, b: a["accuracy"] > b["accuracy"]
        if r["method"] not in best or better(r, best[r["method"]]):
            best[r["method"]] = r
    return best


def format_summary(records: list[dict], reference: dict | None, fraction: float = 0.99) -> str:
    """Table 1 rows (accuracy, compression rate (x)) and a Table A1 block per method."""
    ref_acc = reference["accuracy"] if reference else None
    best = best_records(records, ref_acc, fraction)
    head = (f"reference (dense): accuracy {ref_acc:.4f}" if reference else "no reference run") + \
        (f"; chosen per method: most compressed run with accuracy >= {fraction:g} x reference"
         if reference else "; chosen per method: most accurate run")
    lines = [head, "", f"{'method':<16} {'accuracy':>9} {'compression rate':>18} {'run':>24}"]
    for method in sorted(best, key=rank_of):
        r = best[method]
        lines.append(f"{label_of(method):<16} {100 * r['accuracy']:>8.2f}% "
                     f"{r['zeros']:>11.4f} ({r['compression']:.0f}x) {r.get('run', ''):>24}")
    missing = sorted({r["method"] for r in records} - set(best), key=rank_of)
    for method in missing:
        lines.append(f"{label_of(method):<16} no run reached the accuracy bar")
    for method in sorted(best, key=rank_of):
        lines += ["", f"== {label_of(method)} ==", format_layers(best[method])]
    return "\n".join(lines)


# ---------------------------------------------------------------------- plot
def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MinidnnError("plotting needs matplotlib: pip install 'minidnn[plot]' "
                           "(results.csv and results.json were written anyway)") from None
    return plt


def plot_results(records: list[dict], reference: dict | None, path: str | Path,
                 title: str | None = None, fraction: float = 0.99,
                 annotate: bool = True, xmin: float | None = None,
                 ymin: float | None = None) -> Path:
    """Accuracy vs compression rate, one line per method (Figures 6-7), dense accuracy dashed,
    and per method a vertical line at its most compressed run within ``fraction`` of it.
    ``xmin``/``ymin`` zoom in (points outside are dropped, as the paper's figures do)."""
    records = [r for r in records if (xmin is None or r["zeros"] >= xmin)
               and (ymin is None or r["accuracy"] >= ymin)]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    methods = sorted({r["method"] for r in records}, key=rank_of)
    ref_acc = reference["accuracy"] if reference else None
    best = best_records(records, ref_acc, fraction) if ref_acc is not None else {}
    for method in methods:
        pts = sorted((r for r in records if r["method"] == method), key=lambda r: r["zeros"])
        retrained = method.endswith("+retrain")
        line, = ax.plot([r["zeros"] for r in pts], [r["accuracy"] for r in pts],
                        marker="s" if retrained else "o", markersize=4,
                        linestyle=":" if retrained else "-", label=label_of(method),
                        color=color_of(method))
        if annotate:
            for r in pts:
                label = r.get("paper_p", r.get("value"))
                if isinstance(label, (int, float)):
                    ax.annotate(f"{label:g}", (r["zeros"], r["accuracy"]), fontsize=6,
                                textcoords="offset points", xytext=(2, 3),
                                color=line.get_color())
        if method in best:
            ax.axvline(best[method]["zeros"], color=line.get_color(), linewidth=0.8,
                       linestyle=":" if retrained else "-", alpha=0.6)
    if ref_acc is not None:
        ax.axhline(ref_acc, color="gray", linestyle="--", linewidth=1,
                   label=f"reference {100 * ref_acc:.2f}%")
    if ymin is not None:
        ax.set_ylim(bottom=ymin)
    ax.set_xlabel("compression rate (fraction of weights equal to zero)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _finish_plot(plt, fig, ax, title or "Accuracy vs compression rate", path)


def _finish_plot(plt, fig, ax, title: str, path: str | Path) -> Path:
    """Label the accuracy axis, title the figure and write it to ``path`` (folders made)."""
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


# Deep Compression (Han et al., ICLR 2016, Table 1/3): LeNet-5 in 44 KB at 99.26%
PUBLISHED_BYTES = (("Deep Compression (Han et al. 2016)", 44_000, 0.9926),)


def plot_bytes(records: list[dict], path: str | Path, title: str | None = None,
               goal: tuple[float, float] | None = (10_000, 0.99),
               published: tuple = PUBLISHED_BYTES) -> Path:
    """Accuracy vs model-file bytes (log x): one line per method over the records that have
    ``file_bytes``, the ``published`` points drawn in, and the ``goal`` (bytes, accuracy) as
    a dotted box. Each point is labelled with its record's ``label`` when it has one."""
    records = [r for r in records if r.get("file_bytes")]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for method in sorted({r["method"] for r in records}, key=rank_of):
        pts = sorted((r for r in records if r["method"] == method), key=lambda r: r["file_bytes"])
        line, = ax.plot([r["file_bytes"] for r in pts], [r["accuracy"] for r in pts],
                        marker="o", markersize=4, label=label_of(method), color=color_of(method))
        for r in pts:
            if r.get("label"):
                ax.annotate(r["label"], (r["file_bytes"], r["accuracy"]), fontsize=6,
                            textcoords="offset points", xytext=(3, 3), color=line.get_color())
    for name, size, acc in published:
        ax.plot([size], [acc], marker="*", markersize=11, linestyle="none", color="black",
                label=f"{name}: {size / 1000:g} KB, {100 * acc:.2f}%")
    if goal is not None:
        ax.axvline(goal[0], color="gray", linestyle=":", linewidth=1)
        ax.axhline(goal[1], color="gray", linestyle=":", linewidth=1,
                   label=f"goal: <= {goal[0] / 1000:g} KB at >= {100 * goal[1]:.1f}%")
    ax.set_xscale("log")
    ax.set_xlabel("model file size (bytes, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _finish_plot(plt, fig, ax, title or "Accuracy vs model file bytes", path)


# Published sparse networks trained on MNIST, (method and source, compression = weights /
# nonzeros, test accuracy): Han et al. 2015 (Learning both weights and connections, NIPS),
# Guo et al. 2016 (Dynamic Network Surgery, NIPS), Ullrich et al. 2017 (Soft weight sharing,
# ICLR), Molchanov et al. 2017 (Variational dropout sparsifies DNNs, ICML).
PUBLISHED_SPARSITY = {
    "lenet5": (("Han et al. 2015, prune + retrain", 12.0, 0.9923),
               ("Dynamic Network Surgery 2016", 108.0, 0.9909),
               ("Soft weight sharing 2017", 200.0, 0.9903),
               ("Sparse VD 2017", 280.0, 0.9925)),
    "lenet300": (("Han et al. 2015, prune + retrain", 12.0, 0.9841),
                 ("Dynamic Network Surgery 2016", 56.0, 0.9801),
                 ("Sparse VD 2017", 68.0, 0.9808)),
}


def plot_anchored(records: list[dict], path: str | Path, anchors: tuple,
                  title: str | None = None, goal: tuple[float, float] | None = None,
                  annotate: bool = True, ymin: float | None = None) -> Path:
    """Accuracy vs compression (weights / nonzeros, log x): one line per method, the
    published ``anchors`` ((name, compression, accuracy), ...) drawn in as black markers, the
    ``goal`` (compression, accuracy) as a dotted corner. A record's ``label`` is written beside
    it; ``ymin`` zooms in (records below it dropped)."""
    records = [r for r in records if ymin is None or r["accuracy"] >= ymin]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    rate = lambda r: 1.0 / max(1.0 - r["zeros"], 1e-9)   # noqa: E731
    markers = "*^vDP"
    for method in sorted({r["method"] for r in records}, key=rank_of):
        pts = sorted((r for r in records if r["method"] == method), key=rate)
        retrained = method.endswith("+retrain")
        line, = ax.plot([rate(r) for r in pts], [r["accuracy"] for r in pts],
                        marker="s" if retrained else "o", markersize=4,
                        linestyle=":" if retrained else "-", label=label_of(method),
                        color=color_of(method))
        for r in pts:
            if annotate and r.get("label"):
                ax.annotate(r["label"], (rate(r), r["accuracy"]), fontsize=6,
                            textcoords="offset points", xytext=(3, 3), color=line.get_color())
    for i, (name, compression, acc) in enumerate(anchors):
        ax.plot([compression], [acc], marker=markers[i % len(markers)], markersize=9,
                linestyle="none", color="black", markerfacecolor="none" if i % 2 else "black",
                label=f"{name}: {compression:g}x, {100 * acc:.2f}%")
    if goal is not None:
        ax.axvline(goal[0], color="gray", linestyle=":", linewidth=1)
        ax.axhline(goal[1], color="gray", linestyle=":", linewidth=1,
                   label=f"goal: >= {goal[0]:g}x at >= {100 * goal[1]:.1f}%")
    if ymin is not None:
        ax.set_ylim(bottom=ymin)
    ax.set_xscale("log")
    ax.set_xlabel("compression (weights / nonzero weights, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower left")
    return _finish_plot(plt, fig, ax, title or "Accuracy vs compression, with published points",
                        path)
