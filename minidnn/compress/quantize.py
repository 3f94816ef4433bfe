"""Weight sharing per layer: Deep Compression's k-means and DP-Net's optimal 1-D quantization.

Only the nonzero weights are quantized: zeros stay exactly zero and outside the codebook, so the
sparsity pattern (and with it the CSR structure) is unchanged. A layer quantized to ``bits``
holds a codebook of at most ``2**bits`` float32 values (ascending, none of them 0) and one
assignment (codebook index) per nonzero, in row-major order, the order of the CSR values.

- ``kmeans_1d``: Lloyd's algorithm with Deep Compression's linear initialisation (centroids
  evenly spaced over [min, max], which keeps the rare large weights represented). In 1-D the
  clusters are intervals, so the assignment step is one ``searchsorted`` on centroid midpoints.
- ``dp_quantize_1d``: the exact minimiser of the squared error over partitions of the sorted
  values into at most k contiguous clusters (optimal 1-D k-means, DP-Net). Dynamic programming
  over the unique values with their counts, O(1) cluster costs from prefix sums, and the
  divide-and-conquer optimisation (the optimal split is monotone because the cost satisfies the
  quadrangle inequality): O(k n log n), each recursion level vectorized across all its
  sub-problems.

``quantize_model`` quantizes a whole model in place and returns one ``QuantizedLayer`` per
conv/linear weight; ``CentroidOptimizer`` / ``finetune_codebooks`` then train only the shared
values (the gradient of a centroid is the sum of its members' gradients).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np

from ..data import ArrayDataset
from ..errors import ConfigError, ShapeError
from ..layers.base import Module
from ..optim.optimizers import Adam
from ..parameter import Parameter
from ..train import History, Trainer
from ..names import parse_layer_spec, per_layer, short_name

METHODS = ("kmeans", "dp")
MIN_BITS, MAX_BITS = 1, 16
KMEANS_MAX_ITERS = 300


# ---------------------------------------------------------------------- the per-layer record
@dataclass(frozen=True)
class QuantizedLayer:
    """One quantized weight: codebook, one assignment per nonzero, and where the nonzeros are.

    ``positions`` are flat row-major indices into the dense ``shape`` (ascending), which is also
    the order of the CSR values of the weight viewed as (shape[0], prod(shape[1:])).
    """

    name: str
    shape: tuple[int, ...]
    bits: int
    codebook: np.ndarray      # float32 (k,), ascending, k <= 2**bits, no exact zero
    assignments: np.ndarray   # int32 (nnz,), each < k
    positions: np.ndarray     # int64 (nnz,), ascending, each < prod(shape)

    @property
    def label(self) -> str:
        return short_name(self.name)

    @property
    def nnz(self) -> int:
        return int(self.assignments.size)

    @property
    def k(self) -> int:
        return int(self.codebook.size)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(rows, cols) of the weight as the matrix its CSR form holds."""
        return (self.shape[0], self.numel // self.shape[0]) if self.shape else (1, 1)

    def values(self) -> np.ndarray:
        """The nonzero weights, float32, in position order: codebook[assignments]."""
        return self.codebook[self.assignments]

    def dense(self) -> np.ndarray:
        """The full weight tensor (float32) this record stands for."""
        out = np.zeros(self.numel, np.float32)
        out[self.positions] = self.values()
        return out.reshape(self.shape)

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(row_ptr, col_idx) as int32 for the matrix view."""
        rows, cols = self.matrix_shape
        row = self.positions // cols
        row_ptr = np.zeros(rows + 1, np.int32)
        np.cumsum(np.bincount(row, minlength=rows), out=row_ptr[1:])
        return row_ptr, (self.positions % cols).astype(np.int32)

    def squared_error(self, original: np.ndarray) -> float:
        """Sum of squared differences to the original nonzero values (same order)."""
        d = np.asarray(original, np.float64) - self.values().astype(np.float64)
        return float(d @ d)


# ---------------------------------------------------------------------- 1-D quantizers
def _finalize(codebook: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 codebook (sorted, deduplicated, no exact zero) and nearest-centroid assignments."""
    c = np.unique(np.asarray(codebook, np.float64).astype(np.float32))
    if np.any(c == 0):  # a cluster of +/- values averaging to 0: keep it nonzero (pattern holds)
        c[c == 0] = np.finfo(np.float32).tiny
        c = np.unique(c)
    mids = (c[1:].astype(np.float64) + c[:-1]) / 2
    return c, np.searchsorted(mids, x).astype(np.int32)


def kmeans_1d(values: np.ndarray, k: int, max_iters: int = KMEANS_MAX_ITERS
              ) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means of 1-D ``values`` into at most ``k`` clusters, linear initialisation.

    Returns (codebook float32 ascending, assignments int32). Clusters that end up empty are
    dropped, so the codebook may have fewer than k entries.
    """
    x = np.asarray(values, np.float64).ravel()
    if k < 1:
        raise ConfigError(f"k-means needs k >= 1, got {k}")
    if x.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int32)
    lo, hi = float(x.min()), float(x.max())
    c = np.linspace(lo, hi, k) if k > 1 and hi > lo else np.array([x.mean()])
    a = np.zeros(x.size, np.int64)
    for _ in range(max_iters):
        a = np.searchsorted((c[1:] + c[:-1]) / 2, x)     # clusters are intervals in 1-D
        counts = np.bincount(a, minlength=c.size)
        sums = np.bincount(a, weights=x, minlength=c.size)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if np.array_equal(new, c):
            break
        c = new
    used = np.bincount(a, minlength=c.size) > 0
    return _finalize(c[used], x)


def _dp_row(prev: np.ndarray, cost: Callable, m: int, n: int, cur: np.ndarray,
            opt: np.ndarray) -> None:
    """cur[j] = min_{m-1 <= i < j} prev[i] + cost(i, j) for j in [m, n], and its argmin, by
    divide and conquer on the monotone argmin, one vectorized pass per recursion level."""
    jl, jh = np.array([m]), np.array([n])
    il, ih = np.array([m - 1]), np.array([n - 1])
    while jl.size:
        mid = (jl + jh) // 2
        top = np.minimum(mid - 1, ih)
        cnt = top - il + 1
        starts = np.cumsum(cnt) - cnt
        seg = np.repeat(np.arange(mid.size), cnt)
        i = il[seg] + np.arange(int(cnt.sum())) - starts[seg]
        val = prev[i] + cost(i, mid[seg])
        best = np.minimum.reduceat(val, starts)
        arg = np.minimum.reduceat(np.where(val <= best[seg], i, n), starts)
        cur[mid], opt[mid] = best, arg
        left, right = mid > jl, mid < jh
        jl, jh, il, ih = (np.concatenate([jl[left], mid[right] + 1]),
                          np.concatenate([mid[left] - 1, jh[right]]),
                          np.concatenate([il[left], arg[right]]),
                          np.concatenate([arg[left], ih[right]]))


def dp_quantize_1d(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Optimal 1-D quantization (least squared error) of ``values`` into at most ``k`` levels.

    The optimal clusters are contiguous runs of the sorted values; the dynamic program runs
    over the n unique values weighted by their counts. Returns (codebook float32 ascending,
    assignments int32).
    """
    x = np.asarray(values, np.float64).ravel()
    if k < 1:
        raise ConfigError(f"dp quantization needs k >= 1, got {k}")
    if x.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int32)
    u, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    n = u.size
    if n <= k:
        return _finalize(u, x)
    w = counts.astype(np.float64)
    xs = u - np.average(u, weights=w)  # centred: the prefix sums lose less to cancellation
    s0 = np.concatenate([[0.0], np.cumsum(w)])
    s1 = np.concatenate([[0.0], np.cumsum(w * xs)])
    s2 = np.concatenate([[0.0], np.cumsum(w * xs * xs)])

    def cost(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Squared error of one cluster holding unique values i..j-1."""
        d1 = s1[j] - s1[i]
        return np.maximum((s2[j] - s2[i]) - d1 * d1 / (s0[j] - s0[i]), 0.0)

    prev = np.full(n + 1, np.inf)
    prev[1:] = cost(np.zeros(n, np.int64), np.arange(1, n + 1))
    opts = np.zeros((k + 1, n + 1), np.int64)
    for m in range(2, k + 1):
        cur = np.full(n + 1, np.inf)
        _dp_row(prev, cost, m, n, cur, opts[m])
        prev = cur
    bounds = [n]
    for m in range(k, 1, -1):
        bounds.append(int(opts[m, bounds[-1]]))
    bounds = np.array(bounds[::-1])                     # ends of clusters 1..k
    starts = np.concatenate([[0], bounds[:-1]])
    centroids = np.add.reduceat(w * u, starts) / np.add.reduceat(w, starts)
    cluster = np.searchsorted(bounds, np.arange(n), side="right")
    codebook = centroids.astype(np.float32)
    if np.any(codebook == 0) or np.unique(codebook).size != codebook.size:
        return _finalize(codebook, x)  # degenerate (a zero centroid): nearest assignment
    return codebook, cluster[inverse].astype(np.int32)


QUANTIZERS: dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]] = {
    "kmeans": kmeans_1d, "dp": dp_quantize_1d}


def quantize_values(values: np.ndarray, bits: int, method: str = "kmeans"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Codebook and assignments of nonzero ``values`` at ``bits`` bits with ``method``."""
    check_bits(bits)
    if method not in QUANTIZERS:
        raise ConfigError(f"unknown quantization method {method!r}: choose from {METHODS}")
    return QUANTIZERS[method](values, 1 << bits)


# ---------------------------------------------------------------------- bits per layer
def check_bits(bits, what: str = "bits") -> int:
    """``bits`` as an int in 1..16, else ConfigError."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) \
            or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{what} must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    return int(bits)


def layer_bits(model: Module, bits: int, overrides: dict | str | None = None) -> dict[str, int]:
    """{conv/linear weight name: bits}: ``bits`` everywhere except the layers named in
    ``overrides`` ({'conv1': 8} or the CLI form 'conv1=8,fc2=6'). ConfigError for bits outside
    1..16 or a layer name that matches no compressible layer."""
    check_bits(bits)
    if isinstance(overrides, str) or overrides is None:
        overrides = parse_layer_spec(overrides, int)
    for key, value in overrides.items():
        check_bits(value, f"bits of layer {key!r}")
    return per_layer(model, int(bits), overrides)


# ---------------------------------------------------------------------- whole models
def nonzero_entries(p: Parameter) -> tuple[np.ndarray, np.ndarray]:
    """(flat row-major positions, values) of a parameter's nonzero entries, on the host.
    A CSR parameter holding explicit zeros in its values is re-compacted first; a
    block-diagonal one becomes CSR (the shared values have no block structure)."""
    if p.is_blockdiag:
        p.to_csr()
    if p.is_sparse:
        row_ptr, col_idx, values = p.csr.to_host()
        if np.any(values == 0):
            p.to_dense()
            p.to_csr()
            row_ptr, col_idx, values = p.csr.to_host()
        cols = p.matrix_shape[1]
        rows = np.repeat(np.arange(row_ptr.size - 1, dtype=np.int64), np.diff(row_ptr))
        return rows * cols + col_idx, values
    flat = p.host_dense().ravel()
    positions = np.flatnonzero(flat)
    return positions.astype(np.int64), flat[positions]


def write_nonzeros(p: Parameter, name: str, positions: np.ndarray, values: np.ndarray) -> None:
    """Set the parameter's weights to ``values`` at the flat row-major ``positions`` (zero
    elsewhere), keeping its form: a CSR weight's pattern must be exactly those positions."""
    b = p.backend
    if p.is_sparse:
        if values.size != p.csr.nnz:
            raise ShapeError(f"{name}: {values.size} quantized values for a CSR weight "
                             f"with {p.csr.nnz} nonzeros")
        if values.size:
            b.copy_into(p.csr.values, b.from_host(np.asarray(values, np.float32)))
        p.values_changed()
    else:
        dense = np.zeros(int(np.prod(p.shape)), np.float32)
        dense[positions] = values
        b.copy_into(p.data, b.from_host(dense.reshape(p.shape)))


def write_values(p: Parameter, record: QuantizedLayer) -> None:
    """Set the parameter's weights to the record's (shared) values, keeping its form."""
    write_nonzeros(p, record.name, record.positions, record.values())


def quantize_parameter(name: str, p: Parameter, bits: int, method: str = "kmeans"
                       ) -> QuantizedLayer:
    """Quantize one weight in place (its nonzeros only); returns its record."""
    positions, values = nonzero_entries(p)
    codebook, assignments = quantize_values(values, bits, method)
    record = QuantizedLayer(name, p.shape, check_bits(bits), codebook, assignments, positions)
    write_values(p, record)
    return record


def quantize_model(model: Module, bits: int = 5, per_layer_bits: dict | str | None = None,
                   method: str = "kmeans") -> list[QuantizedLayer]:
    """Share weights in every conv/linear layer of ``model`` (in place, dense or CSR form kept).

    ``bits`` for every layer, ``per_layer_bits`` overrides ({'conv1': 8} or 'conv1=8');
    ``method`` 'kmeans' or 'dp'. Returns the per-layer records in parameter order.
    """
    if method not in QUANTIZERS:
        raise ConfigError(f"unknown quantization method {method!r}: choose from {METHODS}")
    bits_of = layer_bits(model, bits, per_layer_bits)
    return [quantize_parameter(name, p, bits_of[name], method)
            for name, p in model.prox_parameters()]


def apply_records(model: Module, records: Iterable[QuantizedLayer]) -> None:
    """Write decoded or fine-tuned records into a model with the same sparsity pattern."""
    params = dict(model.named_parameters())
    for r in records:
        if r.name not in params:
            raise ConfigError(f"the model has no parameter {r.name!r}")
        write_values(params[r.name], r)


def round_codebook(record: QuantizedLayer, dtype=np.float16) -> QuantizedLayer:
    """The record with its codebook rounded to ``dtype`` (float16: stored in 2 bytes a value,
    relative change <= 2**-11): entries that round alike merge (assignments remapped), one
    that would round to 0 becomes the smallest nonzero of its sign, so zeros stay outside."""
    if np.abs(record.codebook).max(initial=0) > np.finfo(dtype).max:
        return record                   # does not fit: kept as it is (stored as float32)
    c = np.asarray(record.codebook, np.float32).astype(dtype)
    tiny = np.array(np.finfo(dtype).smallest_subnormal, dtype)
    c = np.where(c == 0, np.where(record.codebook < 0, -tiny, tiny), c).astype(np.float32)
    codebook, inverse = np.unique(c, return_inverse=True)
    return QuantizedLayer(record.name, record.shape, record.bits, codebook.astype(np.float32),
                          inverse.reshape(-1)[record.assignments].astype(np.int32),
                          record.positions)


def round_codebooks(model: Module, records: Iterable[QuantizedLayer], dtype=np.float16
                    ) -> list[QuantizedLayer]:
    """``round_codebook`` of every record, written into ``model`` (pattern unchanged)."""
    out = [round_codebook(r, dtype) for r in records]
    apply_records(model, out)
    return out


def segment_layout(assignments: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, offsets) grouping nonzeros by centroid, the input of ``Backend.segment_sum``:
    order lists the nonzero indices of centroid 0, then 1, ...; offsets (k+1) delimit them."""
    a = np.asarray(assignments, np.int64)
    order = np.argsort(a, kind="stable").astype(np.int32)
    offsets = np.zeros(k + 1, np.int32)
    np.cumsum(np.bincount(a, minlength=k), out=offsets[1:])
    return order, offsets


# ---------------------------------------------------------------------- fine-tuning
@dataclass
class _Binding:
    record: QuantizedLayer
    weight: Parameter
    codebook: Parameter
    assignments: object
    order: object
    offsets: object
    dense_form: bool
    masked: bool


class CentroidOptimizer:
    """Trains only the shared values of quantized layers; a drop-in optimizer for ``Trainer``.

    Pattern and assignments stay fixed. Each step, around an inner optimizer (Adam by default)
    that owns one k-vector Parameter per layer:
    1. before: centroid gradient = sum of its members' weight gradients (``segment_sum``);
    2. the inner optimizer's update of the centroids;
    3. after: every weight = its centroid (``gather``), so the model is quantized after each step.
    All three stay on the device. Dense weights are held as CSR while fine-tuning (their
    nonzeros are exactly the quantized entries); ``finish`` restores their form and returns
    the updated records.
    """

    def __init__(self, model: Module, records: list[QuantizedLayer], lr: float = 1e-4,
                 make_optimizer: Callable[[list], object] | None = None) -> None:
        params = dict(model.named_parameters())
        self.model = model
        self.bindings: list[_Binding] = []
        for r in records:
            p = params.get(r.name)
            if p is None:
                raise ConfigError(f"the model has no parameter {r.name!r}")
            dense_form, masked = not p.is_sparse, p.mask is not None
            write_values(p, r)
            p.to_csr()
            if p.csr.nnz != r.nnz:
                raise ShapeError(f"{r.name}: the weight has {p.csr.nnz} nonzeros, the record "
                                 f"{r.nnz}")
            b = p.backend
            cb = Parameter(r.codebook.copy())
            cb.to(b)
            order, offsets = segment_layout(r.assignments, r.k)
            self.bindings.append(_Binding(
                r, p, cb, b.from_host(r.assignments, np.int32), b.from_host(order, np.int32),
                b.from_host(offsets, np.int32), dense_form, masked))
        named = [(f"{bd.record.name}.codebook", bd.codebook) for bd in self.bindings]
        self.inner = make_optimizer(named) if make_optimizer else Adam(named, lr=lr)

    @property
    def step_count(self) -> int:
        return self.inner.step_count

    @property
    def lr(self) -> float:
        return self.inner.lr

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def step(self) -> None:
        """Reduce weight gradients to centroids, update the centroids, broadcast them back."""
        for bd in self.bindings:
            if bd.weight.grad is None or bd.record.k == 0:
                continue
            bd.weight.backend.segment_sum(bd.weight.grad, bd.order, bd.offsets,
                                          out=bd.codebook.grad_buffer())
        self.inner.step()
        for bd in self.bindings:
            if bd.record.k:
                bd.weight.backend.gather(bd.codebook.data, bd.assignments, out=bd.weight.values)
            bd.weight.values_changed()

    def records(self) -> list[QuantizedLayer]:
        """The records with the current centroids (one k-vector per layer comes back)."""
        out = []
        for bd in self.bindings:
            c = bd.codebook.backend.to_host(bd.codebook.data).astype(np.float32)
            out.append(replace(bd.record, codebook=c))
        return out

    def finish(self) -> list[QuantizedLayer]:
        """Restore dense weights (and their masks) to their form; return the final records.
        A centroid trained to exactly 0 is set to the smallest normal float so that the
        pattern, and the record, stay valid."""
        records = []
        for bd, r in zip(self.bindings, self.records()):
            if np.any(r.codebook == 0):
                c = r.codebook.copy()
                c[c == 0] = np.finfo(np.float32).tiny
                r = replace(r, codebook=c)
                write_values(bd.weight, r)
            if bd.dense_form:
                bd.weight.to_dense()
                if bd.masked:
                    bd.weight.set_mask((r.dense() != 0).astype(np.float32))
            records.append(r)
        return records


class AssignmentRetrainer(CentroidOptimizer):
    """Quantization-aware retraining: the float weights learn, the codebooks stay, every weight
    is re-assigned to its nearest centroid after each step (straight-through estimator).

    The model always holds quantized weights (pattern fixed, ``codebook[assignment]``); a float
    copy of each layer's nonzeros (starting from the weights before quantizing) takes the
    gradient computed at the quantized weights with an inner Adam, then ``nearest_centroid``
    re-assigns it and ``gather`` writes the quantized weights back. Weights can so move to
    another centroid when training pushes them there, which fixed-assignment fine-tuning
    (``CentroidOptimizer``) cannot do. Everything stays on the device; ``finish`` returns the
    records with the new assignments.
    """

    def __init__(self, model: Module, records: list[QuantizedLayer],
                 float_values: dict[str, np.ndarray], lr: float = 1e-4) -> None:
        self.float_values, self.shadows, self.mids = float_values, [], []
        super().__init__(model, records, lr=lr, make_optimizer=lambda _: self._shadow_adam(lr))

    def _shadow_adam(self, lr: float) -> Adam:
        named = []
        for bd in self.bindings:
            r, b = bd.record, bd.weight.backend
            start = np.asarray(self.float_values.get(r.name, r.values()), np.float32)
            if start.shape != (r.nnz,):
                raise ShapeError(f"{r.name}: {start.size} float values for {r.nnz} nonzeros")
            shadow = Parameter(start.copy())
            shadow.to(b)
            c = r.codebook.astype(np.float64)
            self.shadows.append(shadow)
            self.mids.append(b.from_host(((c[1:] + c[:-1]) / 2).astype(np.float32)))
            named.append((f"{r.name}.float", shadow))
        return Adam(named, lr=lr)

    def step(self) -> None:
        """Float weights take the gradient of the quantized ones; re-assign; write back."""
        for bd, shadow in zip(self.bindings, self.shadows):
            if bd.weight.grad is not None and bd.record.k:
                bd.weight.backend.copy_into(shadow.grad_buffer(), bd.weight.grad)
        self.inner.step()
        for bd, shadow, mids in zip(self.bindings, self.shadows, self.mids):
            if bd.record.k:
                b = bd.weight.backend
                b.nearest_centroid(shadow.data, mids, out=bd.assignments)
                b.gather(bd.codebook.data, bd.assignments, out=bd.weight.values)
            bd.weight.values_changed()

    def records(self) -> list[QuantizedLayer]:
        """The records with the current assignments (the codebooks are unchanged)."""
        return [replace(bd.record, assignments=np.asarray(
            bd.weight.backend.to_host(bd.assignments), np.int32).copy())
            for bd in self.bindings]


def nonzero_values(model: Module) -> dict[str, np.ndarray]:
    """{weight name: its nonzero values in row-major order} of every conv/linear weight (the
    float starting point of ``retrain_assignments``, taken before ``quantize_model``)."""
    out = {}
    for name, p in model.prox_parameters():
        flat = np.asarray(p.host_dense(), np.float32).ravel()
        out[name] = flat[np.flatnonzero(flat)]
    return out


def retrain_assignments(model: Module, records: list[QuantizedLayer],
                        float_values: dict[str, np.ndarray], train_ds: ArrayDataset, steps: int,
                        lr: float = 1e-4, batch_size: int = 128, seed: int = 0,
                        log: Callable[[str], None] = print) -> list[QuantizedLayer]:
    """Quantization-aware retraining (``AssignmentRetrainer``) for ``steps`` minibatches with
    the standard ``Trainer``; returns the records with the new assignments."""
    opt = AssignmentRetrainer(model, records, float_values, lr=lr)
    try:
        Trainer(model, opt).fit(train_ds, None, steps, batch_size, seed=seed,
                                log_every=max(1, min(100, steps)), progress=False, log=log)
    finally:
        records = opt.finish()
    return records


def finetune_codebooks(model: Module, records: list[QuantizedLayer], train_ds: ArrayDataset,
                       steps: int, lr: float = 1e-4, batch_size: int = 128, seed: int = 0,
                       log: Callable[[str], None] = print, progress: bool = False,
                       test_ds: ArrayDataset | None = None) -> tuple[list[QuantizedLayer],
                                                                     History]:
    """Train the centroids of ``records`` for ``steps`` minibatches (Adam, ``lr``) with the
    standard ``Trainer``; returns the updated records and the training history."""
    opt = CentroidOptimizer(model, records, lr=lr)
    try:
        hist = Trainer(model, opt).fit(train_ds, test_ds, steps, batch_size, seed=seed,
                                       log_every=max(1, min(100, steps)), progress=progress,
                                       log=log)
    finally:
        records = opt.finish()
    return records, hist
