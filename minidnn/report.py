"""Per-layer compression figures: NNZ/total, zeros, compression x, device bytes (Table A1 style)."""
from __future__ import annotations

from dataclasses import dataclass

from .layers.base import Module


@dataclass
class LayerStats:
    name: str
    nnz: int
    total: int
    device_bytes: int
    dense_bytes: int
    sparse: bool

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
                       p.is_sparse) for name, p in model.prox_parameters()]


def total_stats(rows: list[LayerStats]) -> LayerStats:
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


def format_table(rows: list[LayerStats]) -> str:
    """The paper's Table A1 layout: layer, NNZ/total, zeros %, compression x, device KiB."""
    lines = [f"{'layer':<28} {'nnz/total':>22} {'zeros':>8} {'x':>8} {'form':>6} {'device KiB':>11}"]
    for r in rows + [total_stats(rows)]:
        form = "CSR" if r.sparse else "dense"
        if r.name == "total":
            form = ""
            lines.append("-" * len(lines[0]))
        lines.append(f"{r.name:<28} {f'{r.nnz:,}/{r.total:,}':>22} {100 * r.zeros:>7.2f}% "
                     f"{r.compression:>7.1f}x {form:>6} {r.device_bytes / 1024:>11.1f}")
    return "\n".join(lines)
