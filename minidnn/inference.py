"""Prepared inference: a model in inference form, on its backend, at one batch size, run with the
least work per call; ``predict`` (and ``minidnn evaluate``) use it by default.

An ``InferencePlan`` is built in two stages:

1. **Lowering** (here, backend-independent): the module tree is flattened into a list of steps.
   Containers that run their children in order (``Sequential``, a ``Model`` with the default
   forward) are expanded, so fusion crosses their boundaries. A ``Conv2d`` with CSR weights
   (or dense ones with few taps per output, or block-diagonal ones, converted at plan time)
   becomes one fused direct
   sparse convolution taking what follows it: a ``BatchNorm2d``
   (folded into the values and bias at plan time), a ``ReLU``, a 2x2/stride-2 ``MaxPool2d``;
   a ``Residual`` whose main branch ends in such a convolution gets the shortcut added (and
   its ``ReLU``) inside it. A ``Linear`` with permuted block-diagonal weights (issue 18) becomes
   one ``block_matmul`` with its bias and a following ``ReLU`` fused. Other known layers (dense ``Conv2d``, ``Linear``, ``ReLU``, pools,
   ``Flatten``, ``BatchNorm`` in eval) run their own eval forward; ``Dropout`` vanishes. A module
   of any other kind, or one with its own ``forward``, cannot be planned: ``predict`` then runs
   the regular forward and says so once.
2. **Preparation** (``Backend.prepare``): on OpenCL the steps run once while the runtime records
   every launch; each call then copies the input in, enqueues the recorded kernels with their
   arguments bound at plan time (no Python between the enqueues) and reads the output once
   (``backend/cl_prepared.py``). Other backends run the steps eagerly.

A plan copies what it folds (BN into the conv values) and keeps the device buffers of the
weights it reads: build a new plan after changing the weights.

**Quantized weights** (a model loaded from a quantized file carries its records as
``model.quantized``): a conv/linear weight whose record still matches it bit for bit runs
through its codebook, ``QuantizedCSR`` (uint8/uint16 codes + float32 codebook) with the
``qcsr_conv2d`` / ``qcsr_matmul_t`` products, so the plan's weights take 1-2 bytes per value on
the device instead of 4 (``InferencePlan(..., quantized=False)`` uses the float weights). A
quantized conv followed by a BatchNorm keeps the float path (folding the BN scales each row,
which a shared codebook cannot hold).
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from .backend import NumpyBackend
from .backend.base import Array, Backend
from .errors import ConfigError, ShapeError, StateError
from .layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear,
                     MaxPool2d, Module, ReLU, Residual)
from .sparse import CSRMatrix, QuantizedCSR, fits_conv_taps

Step = Callable[[Array], Array]

# layers whose own eval forward a plan runs as it is (if the class does not override forward)
PLAIN_LAYERS = (Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d, Flatten, BatchNorm1d, BatchNorm2d)
# a dense Conv2d with at most this many taps per output channel runs as a direct convolution of
# its weights in CSR form (measured on PoCL, benchmarks/bench_inference.py)
DENSE_DIRECT_MAX_TAPS = 64


class PlanFallbackWarning(UserWarning):
    """``predict`` ran the regular forward because the model cannot be planned."""


# ---------------------------------------------------------------------------- lowering
def _own_forward(m: Module, cls: type) -> bool:
    """Whether ``m`` runs ``cls``'s forward (not one a subclass wrote)."""
    return isinstance(m, cls) and type(m).forward is cls.forward


def _in_order(m: Module) -> bool:
    """A container whose forward only applies its children in order (Sequential, Model)."""
    return getattr(type(m).forward, "runs_children_in_order", False)


def _leaves(m: Module) -> list[Module]:
    """``m``'s children in run order, containers that run in order expanded recursively."""
    if not _in_order(m):
        return [m]
    return [leaf for child in m._modules.values() if child is not None
            for leaf in _leaves(child)]


def _direct_conv(m: Module, records: dict) -> bool:
    """A Conv2d the plan runs as a direct sparse convolution: CSR, quantized or block-diagonal
    weights (whose blocks have no use for im2row in inference), or dense ones with few taps per
    output channel (C/G*k*k <= DENSE_DIRECT_MAX_TAPS, where skipping im2row, the GEMM's
    packing and the transpose wins); the taps must fit ``csr_conv_taps``."""
    if not _own_forward(m, Conv2d):
        return False
    cg = m.in_channels // m.groups
    few = cg * m.kh * m.kw <= DENSE_DIRECT_MAX_TAPS
    return (m.weight.is_sparse or m.weight.is_blockdiag or few or id(m.weight) in records) \
        and fits_conv_taps(cg, m.kh, m.kw)


class SparseConvStep:
    """conv (CSR) [+ BN folded] [+ ReLU] [+ 2x2 max pool] as one ``csr_conv2d``; ``residual``
    (set by the enclosing Residual step) adds a shortcut before the ReLU."""

    def __init__(self, conv: Conv2d, bn: BatchNorm2d | None, relu: bool, pool: int,
                 record=None) -> None:
        b, w = conv.backend, conv.weight
        self.backend, self.conv, self.relu, self.pool = b, conv, relu, pool
        self.bias = None if conv.bias is None else conv.bias.data
        self.codebook: Array | None = None      # set: ``values`` are a QuantizedCSR's codes
        if record is not None and bn is None:
            q = _quantized_csr(b, record, w.groups)
            self.row_ptr, self.shape, self.groups = q.row_ptr, q.shape, q.groups
            self.taps = b.csr_conv_taps(q.col_idx, conv.kh, conv.kw)
            self.values, self.codebook = q.codes, q.codebook
        else:
            if w.is_sparse:
                csr = w.csr
            else:   # dense, or block-diagonal (its blocks as CSR: no im2row, issue 18)
                dense = w.data if w.blockdiag is None else b.from_host(w.host_dense())
                csr = CSRMatrix.from_dense(b, dense.reshape(w.matrix_shape), w.groups)
            self.row_ptr, self.shape, self.groups = csr.row_ptr, csr.shape, csr.groups
            self.taps = b.csr_conv_taps(csr.col_idx, conv.kh, conv.kw)
            self.values = csr.values
            if bn is not None:
                self.values, self.bias = _fold_batchnorm(conv, csr, bn)
        self.residual: Step | None = None

    def nbytes(self) -> int:
        """Device bytes of the weights this step reads (pattern, taps, values or codes and
        codebook; the bias not counted)."""
        arrays = (self.row_ptr, self.taps, self.values) + \
            ((self.codebook,) if self.codebook is not None else ())
        return sum(self.backend.nbytes(a) for a in arrays)

    def __call__(self, x: Array, residual: Array | None = None) -> Array:
        c = self.conv
        if self.codebook is not None:
            return self.backend.qcsr_conv2d(x, self.row_ptr, self.taps, self.values,
                                            self.codebook, self.shape, self.bias, c.kh, c.kw,
                                            c.stride, c.padding, self.groups,
                                            residual=residual, relu=self.relu, pool=self.pool)
        return self.backend.csr_conv2d(x, self.row_ptr, self.taps, self.values, self.shape,
                                       self.bias, c.kh, c.kw, c.stride, c.padding,
                                       self.groups,
                                       residual=residual, relu=self.relu, pool=self.pool)


def _quantized_csr(backend: Backend, record, groups: int) -> QuantizedCSR:
    """The device form of a ``QuantizedLayer`` record."""
    row_ptr, col_idx = record.csr()
    return QuantizedCSR.from_host(backend, row_ptr, col_idx, record.assignments,
                                  record.codebook, record.matrix_shape, groups)


class QuantizedLinearStep:
    """A Linear whose weight runs through its codebook: ``qcsr_matmul_t`` + bias."""

    def __init__(self, linear: Linear, record) -> None:
        self.backend, self.linear = linear.backend, linear
        self.q = _quantized_csr(linear.backend, record, 1)
        self.bias = None if linear.bias is None else linear.bias.data

    def nbytes(self) -> int:
        return self.q.nbytes()

    def __call__(self, x: Array) -> Array:
        if len(x.shape) != 2 or int(x.shape[1]) != self.linear.in_features:
            raise ShapeError(f"Linear({self.linear.in_features}, {self.linear.out_features}) "
                             f"got input of shape {tuple(x.shape)}")
        n = int(x.shape[0])
        y = self.q.matmul_t(x.reshape((1,) + tuple(x.shape))).reshape(
            (n, self.linear.out_features))
        if self.bias is not None:
            self.backend.add_channel_bias(y, self.bias)
        return y


def matching_records(model: Module) -> dict[int, object]:
    """{id(weight): record} of the records in ``model.quantized`` that still match their weight
    bit for bit (pattern and values); a weight changed since (training) keeps the float path."""
    records = {r.name: r for r in (getattr(model, "quantized", None) or [])}
    out = {}
    for name, p in model.named_parameters():
        r = records.get(name)
        if r is None or tuple(r.shape) != tuple(p.shape):
            continue
        flat = np.asarray(p.host_dense(), np.float32).ravel()
        positions = np.flatnonzero(flat)
        if np.array_equal(positions, r.positions) and np.array_equal(flat[positions],
                                                                     r.values()):
            out[id(p)] = r
    return out


class BlockLinearStep:
    """Linear with permuted block-diagonal weights [+ ReLU] as one ``block_matmul`` (gather,
    block products, scatter, bias and ReLU in one kernel; issue 18)."""

    def __init__(self, linear: Linear, relu: bool) -> None:
        self.linear, self.relu = linear, relu
        linear.weight.blockdiag.transposed()   # made now, not recorded into every call

    def nbytes(self) -> int:
        return self.linear.weight.blockdiag.nbytes()

    def __call__(self, x: Array) -> Array:
        lin, n = self.linear, int(x.shape[0])
        if len(x.shape) != 2 or int(x.shape[1]) != lin.in_features:
            return lin.forward(x)   # the layer's own checks and message
        y = lin.weight.blockdiag.matmul_t(x.reshape((1, n, lin.in_features)),
                                          None if lin.bias is None else lin.bias.data,
                                          self.relu)
        return y.reshape((n, lin.out_features))


def _fold_batchnorm(conv: Conv2d, csr: CSRMatrix, bn: BatchNorm2d) -> tuple[Array, Array]:
    """(values, bias) of conv followed by eval-mode bn: row o scaled by gamma_o / sqrt(var_o +
    eps), bias (b_o - mean_o) * scale_o + beta_o (computed in float64 on the host, once)."""
    b = conv.backend
    row_ptr, _, values = (np.asarray(a) for a in csr.to_host())
    gamma, beta = bn.weight.host_dense(), bn.bias.host_dense()
    mean = np.asarray(b.to_host(bn.running_mean), np.float64)
    var = np.asarray(b.to_host(bn.running_var), np.float64)
    scale = gamma / np.sqrt(var + bn.eps)
    bias = np.zeros(csr.shape[0]) if conv.bias is None else conv.bias.host_dense()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(row_ptr))
    return (b.from_host((values * scale[rows]).astype(np.float32)),
            b.from_host(((bias - mean) * scale + beta).astype(np.float32)))


def _take(layers: list[Module], i: int, cls: type, test=lambda m: True) -> bool:
    return i < len(layers) and _own_forward(layers[i], cls) and test(layers[i])


def _pool2(m: MaxPool2d) -> bool:
    return m.kernel_size == 2 and m.stride == 2 and m.padding == 0


def lower_sequence(layers: list[Module], records: dict | None = None) -> list[Step]:
    """The steps of ``layers`` run in order, with the fusions of the module docstring;
    ``records`` ({id(weight): QuantizedLayer}) run those weights through their codebooks."""
    records = records or {}
    steps: list[Step] = []
    i = 0
    while i < len(layers):
        m = layers[i]
        i += 1
        if _direct_conv(m, records):
            bn = layers[i] if _take(layers, i, BatchNorm2d) else None
            i += bn is not None
            relu = _take(layers, i, ReLU)
            i += relu
            pool = 2 if _take(layers, i, MaxPool2d, _pool2) else 1
            i += pool == 2
            steps.append(SparseConvStep(m, bn, relu, pool, records.get(id(m.weight))))
        elif _own_forward(m, Linear) and id(m.weight) in records:
            steps.append(QuantizedLinearStep(m, records[id(m.weight)]))
        elif _own_forward(m, Linear) and m.weight.is_blockdiag:
            relu = _take(layers, i, ReLU)
            i += relu
            steps.append(BlockLinearStep(m, relu))
        elif _own_forward(m, Residual):
            steps.append(ResidualStep(m, records))
        elif isinstance(m, Dropout) and _own_forward(m, Dropout):
            continue  # identity in eval mode
        elif any(_own_forward(m, cls) for cls in PLAIN_LAYERS):
            steps.append(m.forward)
        else:
            raise ConfigError(f"cannot plan a {type(m).__name__} (only minidnn's own layers "
                              "and containers that run their children in order)")
    return steps


def run_steps(steps: Sequence[Step], x: Array) -> Array:
    for step in steps:
        x = step(x)
    return x


class ResidualStep:
    """post(main(x) + shortcut(x)); when main ends in a fused sparse conv without pooling and
    post is a ReLU (or absent), the add and the ReLU happen inside that convolution."""

    def __init__(self, block: Residual, records: dict | None = None) -> None:
        self.backend = block.backend
        self.main = lower_sequence(_leaves(block.main), records)
        self.shortcut = None if block.shortcut is None else \
            lower_sequence(_leaves(block.shortcut), records)
        post = [] if block.post is None else _leaves(block.post)
        last = self.main[-1] if self.main else None
        self.fused = (isinstance(last, SparseConvStep) and not last.relu and last.pool == 1
                      and (not post or (len(post) == 1 and _own_forward(post[0], ReLU))))
        if self.fused:
            last.relu = bool(post)
            self.post: list[Step] = []
        else:
            self.post = lower_sequence(post, records)

    def __call__(self, x: Array) -> Array:
        s = x if self.shortcut is None else run_steps(self.shortcut, x)
        if self.fused:
            return self.main[-1](run_steps(self.main[:-1], x), residual=s)
        y = run_steps(self.main, x)
        if tuple(y.shape) != tuple(s.shape):
            raise ShapeError(f"Residual: branch shapes differ {tuple(y.shape)} vs {tuple(s.shape)}")
        return run_steps(self.post, self.backend.add(y, s))


# ---------------------------------------------------------------------------- plans
class InferencePlan:
    """``model`` (on its backend, eval semantics) prepared for batches of ``batch_size`` images
    of ``input_shape`` (C, H, W; default: the model's). ``logits(images)`` and
    ``predict(images)`` take any number of images (the last batch is padded). ConfigError when
    the model cannot be planned. ``quantized``: run the weights of ``model.quantized`` through
    their codebooks (see the module docstring)."""

    def __init__(self, model: Module, batch_size: int,
                 input_shape: Sequence[int] | None = None, quantized: bool = True) -> None:
        if model.backend is None:
            raise StateError("InferencePlan: the model is on no backend: call .to(backend)")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"InferencePlan: batch_size must be a positive integer, got "
                              f"{batch_size!r}")
        shape = tuple(input_shape or getattr(model, "input_shape", ()) or ())
        if not shape:
            raise ConfigError("InferencePlan: give input_shape (the model declares none)")
        self.model, self.backend = model, model.backend
        self.batch_size, self.input_shape = int(batch_size), tuple(int(s) for s in shape)
        self.records = matching_records(model) if quantized else {}
        with _eval_mode(model):
            self.steps = lower_sequence(_leaves(model), self.records)
            self.prepared = self.backend.prepare(lambda x: run_steps(self.steps, x),
                                                 (self.batch_size,) + self.input_shape)

    @property
    def launches(self) -> int:
        """Kernel enqueues per batch (0 when the backend runs the steps eagerly)."""
        return self.prepared.launches

    def weight_bytes(self) -> int:
        """Device bytes of the conv/linear weights the plan reads (each once): the fused and
        quantized steps' own arrays, else the layer's weight as it is (CSR or dense)."""
        return sum(_step_bytes(step, self.backend) for step in self.steps)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw outputs (N, classes) for host images (N, C, H, W)."""
        images = np.asarray(images)
        if tuple(images.shape[1:]) != self.input_shape:
            raise ShapeError(f"InferencePlan for images {self.input_shape}, got "
                             f"{tuple(images.shape[1:])}")
        bs, out = self.batch_size, []
        with _eval_mode(self.model):
            for i in range(0, len(images), bs):
                chunk = np.ascontiguousarray(images[i:i + bs], dtype=np.float32)
                n = len(chunk)
                if n < bs:  # pad: rows are independent in eval mode
                    chunk = np.concatenate([chunk, np.zeros((bs - n,) + self.input_shape,
                                                            np.float32)])
                out.append(self.prepared(chunk)[:n])
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class predictions (argmax of the logits)."""
        logits = self.logits(images)
        return logits.argmax(axis=1) if logits.size else np.zeros(0, np.int64)


def _step_bytes(step: Step, backend: Backend) -> int:
    if isinstance(step, ResidualStep):
        return sum(_step_bytes(s, backend) for part in (step.main, step.shortcut or [], step.post)
                   for s in part)
    if hasattr(step, "nbytes"):
        return step.nbytes()
    layer = getattr(step, "__self__", None)
    if isinstance(layer, (Conv2d, Linear)):
        w = layer.weight
        if w.is_blockdiag:
            return w.blockdiag.nbytes()
        return w.csr.nbytes() if w.is_sparse else backend.nbytes(w.data)
    return 0


class _eval_mode:
    """Context: the model in eval mode, its previous mode restored after."""

    def __init__(self, model: Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.train(self.was)


def plan_or_none(model: Module, batch_size: int, input_shape: Sequence[int]
                 ) -> InferencePlan | None:
    """An InferencePlan, or None (with a PlanFallbackWarning, shown once per reason) when the
    model cannot be planned: the caller then runs the regular forward."""
    try:
        return InferencePlan(model, batch_size, input_shape)
    except (ConfigError, StateError) as exc:
        warnings.warn(f"{type(model).__name__}: no inference plan ({exc}); running the regular "
                      "forward", PlanFallbackWarning, stacklevel=3)
        return None


def logits(model: Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Raw outputs of ``model`` for host images (N, C, H, W), in eval mode, through an
    InferencePlan (or the regular forward when the model cannot be planned)."""
    if model.backend is None:
        model.to(NumpyBackend())
    images = np.asarray(images)
    if not len(images):
        return np.zeros((0, 0), np.float32)
    plan = plan_or_none(model, min(int(batch_size), len(images)), images.shape[1:])
    if plan is not None:
        return plan.logits(images)
    return regular_logits(model, images, batch_size)


def regular_logits(model: Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The regular (unplanned) forward over host images, batch by batch, in eval mode."""
    b: Backend = model.backend
    with _eval_mode(model):
        out = [b.to_host(model.forward(b.from_host(images[i:i + batch_size])))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def predict(model: Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Class predictions of ``model`` for host images (N, C, H, W): the fast path by default
    (see ``logits``); the same predictions as the regular forward."""
    out = logits(model, images, batch_size)
    return out.argmax(axis=1) if out.size else np.zeros(0, np.int64)


def evaluate(model: Module, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> dict:
    """{'loss': mean softmax cross-entropy, 'accuracy'} of ``model`` on host images and integer
    labels, through ``logits`` (the fast path; the loss computed on the host in float64)."""
    if len(images) != len(labels) or not len(images):
        raise ShapeError(f"evaluate: {len(images)} images and {len(labels)} labels")
    z = logits(model, images, batch_size).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    labels = np.asarray(labels, np.int64)
    return {"loss": float(-log_p[np.arange(len(labels)), labels].mean()),
            "accuracy": float((z.argmax(axis=1) == labels).mean())}
