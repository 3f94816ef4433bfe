"""Quantized weights on the device (issue 16 item 4): the products that read each value through
a per-layer codebook (``qcsr_matmul_t``, ``qcsr_conv2d``, uint8 / uint16 codes) against the
NumPy reference on every usable OpenCL device, the Backend defaults, and inference plans that
run a quantized file's weights through their codebooks."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.compress.quantize import quantize_model
from minidnn.errors import DTypeError, ShapeError
from minidnn.inference import InferencePlan, QuantizedLinearStep, SparseConvStep
from minidnn.io import load, save
from minidnn.sparse import QuantizedCSR

from test_quantized_file import _model

# (g, m, o, k, density, codebook size): batch 1 (scalar kernel), gather, panel, grouped,
# uint16 codes (k > 256), an empty matrix
MATMUL_CASES = [
    (1, 1, 10, 50, 0.3, 16),
    (1, 100, 50, 800, 0.05, 32),
    (1, 300, 50, 800, 0.5, 256),
    (2, 40, 8, 30, 0.3, 1000),
    (1, 20, 7, 9, 0.0, 3),
]


def _quantized(rng, o: int, k: int, density: float, size: int):
    """(row_ptr, col_idx, codes, codebook) of a random (o, k) quantized CSR matrix; every code
    is used where there are enough nonzeros, including the last (size - 1)."""
    mask = rng.random((o, k)) < density
    row_ptr = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    col_idx = np.nonzero(mask)[1].astype(np.int32)
    codes = rng.integers(0, size, col_idx.size)
    if codes.size:
        codes[-1] = size - 1
    codebook = rng.standard_normal(size).astype(np.float32)
    return row_ptr, col_idx, codes.astype(np.uint8 if size <= 256 else np.uint16), codebook


@pytest.mark.parametrize("case", MATMUL_CASES)
def test_qcsr_matmul_t_matches_numpy(clb, case):
    g, m, o, k, density, size = case
    rng = np.random.default_rng(sum(case[:4]))
    row_ptr, col_idx, codes, codebook = _quantized(rng, o, k, density, size)
    x = rng.standard_normal((g, m, k)).astype(np.float32)
    ref = NumpyBackend()
    want = ref.csr_matmul_t(x, row_ptr, col_idx, codebook[codes.astype(np.int64)], (o, k))
    assert np.array_equal(ref.qcsr_matmul_t(x, row_ptr, col_idx, codes, codebook, (o, k)), want)
    q = QuantizedCSR.from_host(clb, row_ptr, col_idx, codes, codebook, (o, k), g)
    assert q.codes.dtype == codes.dtype
    got = clb.to_host(clb.qcsr_matmul_t(clb.from_host(x), q.row_ptr, q.col_idx, q.codes,
                                        q.codebook, (o, k)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))
    # 1 or 2 bytes per value instead of 4
    assert q.nbytes() == 4 * (o + 1) + 4 * q.nnz + codes.itemsize * q.nnz + 4 * size


CONV_CASES = [  # (n, c, h, w, o, kernel, stride, pad, groups, codebook size, relu, pool, res)
    (2, 1, 28, 28, 20, 5, 1, 0, 1, 256, True, 2, False),
    (3, 20, 12, 12, 50, 5, 1, 0, 1, 16, True, 2, False),
    (1, 4, 19, 21, 6, 3, 2, 1, 2, 300, False, 1, True),
    (2, 3, 11, 13, 5, 3, 1, 1, 1, 2, True, 1, True),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_qcsr_conv2d_matches_numpy(clb, case):
    n, c, h, w, o, k, s, p, g, size, relu, pool, has_res = case
    rng = np.random.default_rng(n + c + h)
    row_ptr, col_idx, codes, codebook = _quantized(rng, o, c // g * k * k, 0.3, size)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    res = rng.standard_normal((n, o, oh, ow)).astype(np.float32) if has_res else None
    out = {}
    for b in (NumpyBackend(), clb):
        q = QuantizedCSR.from_host(b, row_ptr, col_idx, codes, codebook, (o, c // g * k * k), g)
        taps = b.csr_conv_taps(q.col_idx, k, k)
        args = (q.shape, b.from_host(bias), k, k, s, p, g)
        kw = dict(residual=None if res is None else b.from_host(res), relu=relu, pool=pool)
        out[b] = b.to_host(b.qcsr_conv2d(b.from_host(x), q.row_ptr, taps, q.codes, q.codebook,
                                         *args, **kw))
        if isinstance(b, NumpyBackend):   # the reference is the float product of the values
            want = b.csr_conv2d(x, row_ptr, taps, codebook[codes.astype(np.int64)], *args, **kw)
            assert np.array_equal(out[b], want)
    np.testing.assert_allclose(out[clb], next(iter(out.values())), rtol=1e-5, atol=1e-5)


def test_backend_defaults_decode_through_the_codebook(np32):
    from test_backend_core import CoreOnlyBackend
    core, rng = CoreOnlyBackend(), np.random.default_rng(5)
    row_ptr, col_idx, codes, codebook = _quantized(rng, 6, 40, 0.4, 12)
    x = rng.standard_normal((5, 40)).astype(np.float32)
    np.testing.assert_allclose(core.qcsr_matmul_t(x, row_ptr, col_idx, codes, codebook, (6, 40)),
                               np32.qcsr_matmul_t(x, row_ptr, col_idx, codes, codebook, (6, 40)),
                               rtol=1e-6, atol=1e-6)
    xi = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    rp, ci, cd, cb = _quantized(rng, 4, 9, 0.5, 3)
    want = np32.qcsr_conv2d(xi, rp, np32.csr_conv_taps(ci, 3, 3), cd, cb, (4, 9), None, 3, 3,
                            1, 1, 1, relu=True)
    got = core.qcsr_conv2d(xi, rp, core.csr_conv_taps(ci, 3, 3), cd, cb, (4, 9), None, 3, 3, 1,
                           1, 1, relu=True)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_bad_quantized_csr_is_refused(np32, clb):
    with pytest.raises(ShapeError, match="codebook"):
        QuantizedCSR.from_host(np32, np.array([0, 2], np.int32), np.array([0, 1], np.int32),
                               np.array([0, 3]), np.ones(3, np.float32), (1, 2))
    with pytest.raises(ShapeError, match="65,536"):
        QuantizedCSR.from_host(np32, np.array([0, 1], np.int32), np.array([0], np.int32),
                               np.array([0]), np.ones(70000, np.float32), (1, 1))
    with pytest.raises(DTypeError, match="uint8/uint16"):
        clb.qcsr_matmul_t(clb.zeros((1, 2)), clb.from_host(np.array([0, 1], np.int32)),
                          clb.from_host(np.array([0], np.int32)),
                          clb.from_host(np.array([0], np.int32)), clb.zeros((1,)), (1, 2))


@pytest.fixture(scope="module")
def quantized_file(tmp_path_factory):
    """A quantized LeNet-5 file (conv1 at 9 bits: uint16 codes) and test images."""
    model = _model(seed=3)
    records = quantize_model(model, 5, "conv1=9")
    path = tmp_path_factory.mktemp("qdev") / "q.h5"
    save(model, path, quantized=records)
    x = np.random.default_rng(0).standard_normal((37, 1, 28, 28)).astype(np.float32)
    return path, x


def test_plans_run_quantized_files_through_their_codebooks(quantized_file, clb):
    path, x = quantized_file
    model = load(path, backend=clb)
    plan = InferencePlan(model, 16)
    kinds = [type(s).__name__ for s in plan.steps]
    assert kinds.count("SparseConvStep") == 2 and kinds.count("QuantizedLinearStep") == 2
    assert all(s.codebook is not None for s in plan.steps if isinstance(s, SparseConvStep))
    assert len(plan.records) == 4
    float_plan = InferencePlan(model, 16, quantized=False)
    assert not any(isinstance(s, QuantizedLinearStep) for s in float_plan.steps)
    np.testing.assert_allclose(plan.logits(x), float_plan.logits(x), rtol=1e-5, atol=1e-5)
    assert plan.weight_bytes() < float_plan.weight_bytes()
    # the same logits as the NumPy reference of the quantized plan
    ref = InferencePlan(load(path), 16).logits(x)
    np.testing.assert_allclose(plan.logits(x), ref, rtol=1e-5, atol=1e-5)


def test_a_weight_changed_after_loading_keeps_the_float_path(quantized_file):
    path, x = quantized_file
    model = load(path)
    p = model.classifier.fc2.weight
    p.data = p.backend.from_host(p.host_dense() * 1.01)
    plan = InferencePlan(model, 16)
    assert len(plan.records) == 3 and id(p) not in plan.records
    assert np.array_equal(plan.predict(x), InferencePlan(model, 16, quantized=False).predict(x))
