"""CSR primitives: the NumPy reference against dense math, and OpenCL parity with the reference.

The OpenCL products have several kernel forms ("panel", "gather", "scalar", picked from the
shapes); the ``path`` fixture forces each one so that all are checked on every case.
"""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.backend import cl_csr

# (O, K, G, M): tiny, batch 1 with groups, odd grouped, conv-like (K = 5*5, long M), linear
SHAPES = [(6, 10, 1, 5), (6, 10, 2, 1), (50, 37, 2, 300), (20, 25, 1, 1000), (64, 200, 1, 130)]
DENSITIES = [0.0, 0.01, 0.3, 1.0]


def sparse_matrix(rng, o: int, k: int, density: float, empty_rows: bool = True) -> np.ndarray:
    """Random (O, K) float32 matrix with about ``density`` nonzeros, some rows forced empty."""
    w = rng.standard_normal((o, k)).astype(np.float32)
    w[rng.random((o, k)) >= density] = 0
    if empty_rows and o > 3 and density < 1:
        w[1] = 0
        w[-1] = 0
    return w


def dense_groups(w: np.ndarray, groups: int) -> list[np.ndarray]:
    og = w.shape[0] // groups
    return [w[g * og:(g + 1) * og] for g in range(groups)]


def operands(rng, o: int, k: int, g: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """x (G, M, K) and dy (G, M, O/G) of unit normals."""
    x = rng.standard_normal((g, m, k)).astype(np.float32)
    dy = rng.standard_normal((g, m, o // g)).astype(np.float32)
    return x, dy


# ---------------------------------------------------------------- NumPy reference vs dense math
@pytest.mark.parametrize("o,k,g,m", SHAPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_reference_csr_matches_dense_math(np64, rng, o, k, g, m, density):
    w = sparse_matrix(rng, o, k, density).astype(np.float64)
    row_ptr, col_idx, values = np64.csr_from_dense(w)
    assert row_ptr.dtype == np.int32 and col_idx.dtype == np.int32
    assert row_ptr[0] == 0 and row_ptr[-1] == np.count_nonzero(w) == values.size
    for r in range(o):
        cols = col_idx[row_ptr[r]:row_ptr[r + 1]]
        np.testing.assert_array_equal(cols, np.flatnonzero(w[r]))
        np.testing.assert_array_equal(values[row_ptr[r]:row_ptr[r + 1]], w[r, cols])
    np.testing.assert_array_equal(np64.csr_to_dense(row_ptr, col_idx, values, w.shape), w)

    t_row_ptr, t_col_idx, t_values, perm = np64.csr_transpose(row_ptr, col_idx, values, w.shape, g)
    t_dense = np.concatenate([wg.T for wg in dense_groups(w, g)])
    np.testing.assert_array_equal(
        np64.csr_to_dense(t_row_ptr, t_col_idx, t_values, t_dense.shape), t_dense)
    np.testing.assert_array_equal(values[perm], t_values)

    x, dy = (a.astype(np.float64) for a in operands(rng, o, k, g, m))
    wg = dense_groups(w, g)
    y = np64.csr_matmul_t(x, row_ptr, col_idx, values, w.shape)
    np.testing.assert_allclose(y, np.stack([x[i] @ wg[i].T for i in range(g)]), atol=1e-12)
    dx = np64.csr_matmul(dy, t_row_ptr, t_col_idx, t_values, w.shape)
    np.testing.assert_allclose(dx, np.stack([dy[i] @ wg[i] for i in range(g)]), atol=1e-12)
    out = np.full(values.size, 0.5)
    np64.csr_sddmm(dy, x, row_ptr, col_idx, w.shape, out, accumulate=True)
    dw = np.concatenate([dy[i].T @ x[i] for i in range(g)])
    np.testing.assert_allclose(out, 0.5 + dw[w != 0], atol=1e-10)


def test_reference_2d_operands(np32, rng):
    w = sparse_matrix(rng, 9, 7, 0.4)
    csr = np32.csr_from_dense(w)
    x = rng.standard_normal((4, 7)).astype(np.float32)
    np.testing.assert_allclose(np32.csr_matmul_t(x, *csr, w.shape), x @ w.T, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- OpenCL parity
@pytest.fixture(params=["auto", "panel", "gather", "scalar"])
def path(request, monkeypatch):
    """Force the panel, gather or scalar product kernels (panel SDDMM with many chunks of M), or
    let the shapes pick."""
    if request.param != "auto":
        scalar_max_m = 1 << 30 if request.param == "scalar" else 0
        monkeypatch.setattr(cl_csr, "SPMM_SCALAR_MAX_M", scalar_max_m)
    if request.param == "panel":
        monkeypatch.setattr(cl_csr, "SPMM_PANEL_NNZ_PER_K", 0.0)
        monkeypatch.setattr(cl_csr, "SDDMM_PANEL_NNZ_PER_K", 0.0)
        monkeypatch.setattr(cl_csr, "SDDMM_BLOCK_FLOATS", 1)  # 16-row blocks: partial sums
    elif request.param == "gather":
        monkeypatch.setattr(cl_csr, "SPMM_PANEL_NNZ_PER_K", float("inf"))
        monkeypatch.setattr(cl_csr, "SDDMM_PANEL_NNZ_PER_K", float("inf"))
    return request.param


def upload_csr(clb, w: np.ndarray):
    """Compact a host matrix on the device."""
    return clb.csr_from_dense(clb.from_host(w))


def tol(n: int) -> dict:
    """float32 tolerance for sums of n products of unit normals."""
    return dict(rtol=1e-4, atol=1e-5 * max(1.0, np.sqrt(n)))


@pytest.mark.parametrize("o,k,g,m", SHAPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_compaction_and_transpose_exact(clb, np32, rng, o, k, g, m, density):
    w = sparse_matrix(rng, o, k, density)
    before = clb.transfers.to_host, clb.transfers.bytes_to_host
    csr = upload_csr(clb, w)
    assert (clb.transfers.to_host - before[0], clb.transfers.bytes_to_host - before[1]) == (1, 4)
    ref = np32.csr_from_dense(w)
    for got, want in zip(csr, ref):
        np.testing.assert_array_equal(clb.to_host(got), want)
    np.testing.assert_array_equal(clb.to_host(clb.csr_to_dense(*csr, w.shape)), w)

    t = clb.csr_transpose(*csr, w.shape, g)
    t_ref = np32.csr_transpose(*ref, w.shape, g)
    for got, want in zip(t, t_ref):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(clb.to_host(got), want)
    np.testing.assert_array_equal(clb.to_host(clb.gather(csr[2], t[3])), t_ref[2])


@pytest.mark.parametrize("o,k,g,m", SHAPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_products_match_reference_and_dense(clb, np32, rng, path, o, k, g, m, density):
    w = sparse_matrix(rng, o, k, density)
    x, dy = operands(rng, o, k, g, m)
    csr, ref = upload_csr(clb, w), np32.csr_from_dense(w)
    t, t_ref = clb.csr_transpose(*csr, w.shape, g), np32.csr_transpose(*ref, w.shape, g)
    wg = [a.astype(np.float64) for a in dense_groups(w, g)]
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    xd, dyd = clb.from_host(x), clb.from_host(dy)
    before = clb.transfers.to_host

    y = clb.csr_matmul_t(xd, *csr, w.shape)
    dx = clb.csr_matmul(dyd, *t[:3], w.shape)
    out = clb.from_host(np.full(ref[2].size, 0.25, np.float32))
    clb.csr_sddmm(dyd, xd, csr[0], csr[1], w.shape, out, accumulate=True)
    out2 = clb.from_host(np.full(ref[2].size, 7.0, np.float32))
    clb.csr_sddmm(dyd, xd, csr[0], csr[1], w.shape, out2, accumulate=False)
    assert clb.transfers.to_host == before  # the products read nothing back

    y_h, dx_h = clb.to_host(y), clb.to_host(dx)
    assert y_h.shape == (g, m, o // g) and dx_h.shape == (g, m, k)
    np.testing.assert_allclose(y_h, np32.csr_matmul_t(x, *ref, w.shape), **tol(k))
    np.testing.assert_allclose(y_h, np.stack([x64[i] @ wg[i].T for i in range(g)]), **tol(k))
    np.testing.assert_allclose(dx_h, np32.csr_matmul(dy, *t_ref[:3], w.shape), **tol(o))
    np.testing.assert_allclose(dx_h, np.stack([dy64[i] @ wg[i] for i in range(g)]), **tol(o))

    dw = np.concatenate([dy64[i].T @ x64[i] for i in range(g)])[w != 0]
    sd_ref = np.zeros(ref[2].size, np.float32)
    np32.csr_sddmm(dy, x, *ref[:2], w.shape, sd_ref, accumulate=False)
    np.testing.assert_allclose(clb.to_host(out2), sd_ref, **tol(m))
    np.testing.assert_allclose(clb.to_host(out2), dw, **tol(m))
    np.testing.assert_allclose(clb.to_host(out), 0.25 + dw, **tol(m))


@pytest.mark.parametrize("density", [0.03, 0.3])
def test_fc1_shape(clb, np32, rng, path, density):
    """LeNet-5's fc1 (500 x 800) at batch 128: the benchmark's shape, long rows."""
    w = sparse_matrix(rng, 500, 800, density, empty_rows=False)
    x, dy = operands(rng, 500, 800, 1, 128)
    csr, ref = upload_csr(clb, w), np32.csr_from_dense(w)
    xd, dyd = clb.from_host(x[0]), clb.from_host(dy[0])
    y = clb.to_host(clb.csr_matmul_t(xd, *csr, w.shape))
    assert y.shape == (128, 500)
    np.testing.assert_allclose(y, x[0].astype(np.float64) @ w.T, **tol(800))
    dx = clb.to_host(clb.csr_matmul(dyd, *clb.csr_transpose(*csr, w.shape)[:3], w.shape))
    assert dx.shape == (128, 800)
    np.testing.assert_allclose(dx, dy[0].astype(np.float64) @ w, **tol(500))
    out = clb.zeros((ref[2].size,))
    clb.csr_sddmm(dyd, xd, csr[0], csr[1], w.shape, out, accumulate=False)
    np.testing.assert_allclose(clb.to_host(out), (dy[0].T.astype(np.float64) @ x[0])[w != 0],
                               **tol(128))


def test_sddmm_deterministic(clb, rng, path):
    """No float atomics: the same inputs give bit-identical gradients, chunked or not."""
    w = sparse_matrix(rng, 20, 25, 0.5)
    x, dy = operands(rng, 20, 25, 1, 3000)
    csr = upload_csr(clb, w)
    xd, dyd = clb.from_host(x), clb.from_host(dy)
    outs = []
    for _ in range(2):
        out = clb.zeros((int(csr[2].size),))
        clb.csr_sddmm(dyd, xd, csr[0], csr[1], w.shape, out, accumulate=False)
        outs.append(clb.to_host(out))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_gather_int_payload_and_out(clb):
    src = clb.from_host(np.arange(10, 20, dtype=np.int32))
    index = clb.from_host(np.array([9, 0, 3, 3], dtype=np.int32))
    np.testing.assert_array_equal(clb.to_host(clb.gather(src, index)), [19, 10, 13, 13])
    out = clb.zeros((4,), np.int32)
    assert clb.gather(src, index, out=out) is out
    np.testing.assert_array_equal(clb.to_host(out), [19, 10, 13, 13])


def test_empty_matrices(clb):
    """Zero rows or columns: nothing to allocate or launch, products give zeros."""
    for shape in [(0, 5), (4, 0)]:
        row_ptr, col_idx, values = clb.csr_from_dense(clb.zeros(shape))
        np.testing.assert_array_equal(clb.to_host(row_ptr), np.zeros(shape[0] + 1, np.int32))
        assert col_idx.size == values.size == 0
    csr = clb.csr_from_dense(clb.zeros((4, 3)))
    y = clb.csr_matmul_t(clb.from_host(np.ones((2, 3), np.float32)), *csr, (4, 3))
    np.testing.assert_array_equal(clb.to_host(y), np.zeros((2, 4), np.float32))


def test_shape_mismatch_raises(clb, rng):
    w = sparse_matrix(rng, 6, 10, 0.5)
    csr = upload_csr(clb, w)
    with pytest.raises(ValueError):
        clb.csr_matmul_t(clb.zeros((3, 9)), *csr, w.shape)
    with pytest.raises(ValueError):
        clb.csr_transpose(*csr, w.shape, groups=4)
