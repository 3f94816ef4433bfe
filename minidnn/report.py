"""The one per-layer report: rows of NNZ/total, zeros, compression (x) and bytes per conv/linear
weight, and the one table formatter that the training log, ``minidnn train``, ``minidnn info``
and the sweep results (Table A1 style) print them with."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .layers.base import Module
from .names import layer_labels, short_name


@dataclass
class LayerStats:
    """One weight's figures (``name``: its dotted parameter name)."""

    name: str
    nnz: int
    total: int
    device_bytes: int
    dense_bytes: int
    sparse: bool
    blocks: bool = False     # permuted block-diagonal (issue 18)

    @property
    def zeros(self) -> float:
        """Fraction of weights exactly zero."""
        return 1.0 - self.nnz / self.total if self.total else 0.0

    @property
    def compression(self) -> float:
        """total / nnz (x), inf when everything is zero."""
        return self.total / self.nnz if self.nnz else float("inf")


def layer_stats(model: Module) -> list[LayerStats]:
    """One row per prox-enabled weight (conv/linear), plus nothing for biases/BN (not counted)."""
    return [LayerStats(name, p.count_nonzero(), p.numel, p.device_bytes(), p.dense_bytes(),
                       p.is_sparse, p.is_blockdiag) for name, p in model.prox_parameters()]


def total_stats(rows: list[LayerStats]) -> LayerStats:
    """The rows summed into one named 'total'."""
    return LayerStats("total", sum(r.nnz for r in rows), sum(r.total for r in rows),
                      sum(r.device_bytes for r in rows), sum(r.dense_bytes for r in rows),
                      any(r.sparse for r in rows))


def model_device_bytes(model: Module) -> tuple[int, int]:
    """(bytes held on the device by all parameters and buffers, bytes if all were dense)."""
    held = dense = 0
    for _, p in model.named_parameters():
        held += p.device_bytes()
        dense += p.dense_bytes()
    for _, buf in model.named_buffers():
        n = model.backend.nbytes(buf)
        held += n
        dense += n
    return held, dense


def compression_figures(model: Module) -> dict:
    """Total and per-layer NNZ, zeros and compression (x): the rows as a JSON-friendly record."""
    rows = layer_stats(model)
    total = total_stats(rows)
    return {"nnz": total.nnz, "weights": total.total, "zeros": total.zeros,
            "compression": total.compression,
            "layers": [{"name": short_name(r.name), "param": r.name, "nnz": r.nnz,
                        "total": r.total, "zeros": r.zeros, "compression": r.compression}
                       for r in rows]}


def zeros_line(zeros: dict[str, float]) -> str:
    """'conv1 14.8%  fc1 68.3%': per-layer zeros by short label (``zeros``: {param name: z})."""
    return "  ".join(f"{label} {100 * z:.1f}%"
                     for label, z in zip(layer_labels(zeros), zeros.values()))


def layer_line(model: Module) -> str:
    """One log line: total and per-layer zeros (%)."""
    rows = layer_stats(model)
    total = total_stats(rows)
    return (f"zeros {100 * total.zeros:.2f}% ({total.compression:.1f}x)  "
            + "  ".join(f"{short_name(r.name)} {100 * r.zeros:.1f}%" for r in rows))


# ---------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Column:
    """A table column: title, width, alignment ('<' or '>') and the cell text of a row."""

    title: str
    width: int
    cell: Callable[[object], str]
    align: str = ">"


def format_columns(columns: Sequence[Column], rows: Sequence, total=None, rule: bool = True,
                   total_columns: int | None = None) -> str:
    """Header, one line per row, then (after a rule of dashes when ``rule``) the ``total`` row
    drawn with its first ``total_columns`` columns (all by default)."""
    line = lambda cells: " ".join(f"{c:{col.align}{col.width}}" for col, c in cells).rstrip()
    head = line((col, col.title) for col in columns)
    lines = [head] + [line((col, col.cell(r)) for col in columns) for r in rows]
    if total is not None:
        if rule:
            lines.append("-" * len(head))
        shown = columns[:total_columns] if total_columns else columns
        lines.append(line((col, col.cell(total)) for col in shown))
    return "\n".join(lines)


def counts_cell(nnz: int, total: int) -> str:
    """'139,140/430,500'."""
    return f"{nnz:,}/{total:,}"


def percent_cell(zeros: float) -> str:
    """A fraction as '67.68%'."""
    return f"{100 * zeros:.2f}%"


def times_cell(compression: float) -> str:
    """A compression factor as '3.1x'."""
    return f"{compression:.1f}x"


MODEL_COLUMNS = (
    Column("layer", 28, lambda r: r.name, "<"),
    Column("nnz/total", 22, lambda r: counts_cell(r.nnz, r.total)),
    Column("zeros", 8, lambda r: percent_cell(r.zeros)),
    Column("x", 8, lambda r: times_cell(r.compression)),
    Column("form", 6, lambda r: "" if r.name == "total"
           else ("CSR" if r.sparse else "blocks" if r.blocks else "dense")),
    Column("device KiB", 11, lambda r: f"{r.device_bytes / 1024:.1f}"))


def format_table(rows: list[LayerStats]) -> str:
    """A model's weights: layer, NNZ/total, zeros %, compression x, form, device KiB; total."""
    return format_columns(MODEL_COLUMNS, rows, total_stats(rows))
