"""OpenCL ``gemm`` and ``transpose`` against the NumPy backend (every OpenCL device found).

Shapes cover each kernel path: B read in place or packed, A read in place or packed, K split
across work-items (scratch + reduction) and K cut into sequential blocks, ragged edges of the
6x16 register block, batches (conv groups), and the LeNet-5 products at a reduced batch.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

TRANS = list(itertools.product([False, True], repeat=2))

# (batch, M, N, K); batch 0 means 2-D operands
SHAPES = [
    (0, 1, 1, 1), (0, 7, 10, 25), (2, 13, 17, 33), (0, 25, 7, 1), (2, 37, 5, 700),
    (0, 6, 16, 8), (0, 12, 32, 64), (1, 5, 300, 70), (2, 130, 140, 90), (0, 3, 600, 1100),
    (0, 400, 256, 1100), (0, 400, 100, 1100), (2, 100, 60, 1030), (0, 10, 500, 128),
    (0, 128, 10, 500), (0, 500, 800, 128),
]

# LeNet-5 products at batch 128 with the long dimension cut (name, M, N, K, trans_a, trans_b)
LENET = [
    ("conv1 fwd", 4608, 20, 25, False, True),
    ("conv1 dX", 4608, 25, 20, False, False),
    ("conv1 dW", 20, 25, 9216, True, False),
    ("conv2 fwd", 1024, 50, 500, False, True),
    ("conv2 dX", 1024, 500, 50, False, False),
    ("conv2 dW", 50, 500, 2048, True, False),
    ("fc1 fwd", 128, 500, 800, False, True),
    ("fc1 dX", 128, 800, 500, False, False),
    ("fc1 dW", 500, 800, 128, True, False),
    ("fc2 fwd", 128, 10, 500, False, True),
    ("fc2 dX", 128, 500, 10, False, False),
    ("fc2 dW", 10, 500, 128, True, False),
]


def _operands(rng, nb, m, n, k, ta, tb):
    lead = (nb,) if nb else ()
    a = rng.standard_normal(lead + ((k, m) if ta else (m, k)), dtype=np.float32)
    b = rng.standard_normal(lead + ((n, k) if tb else (k, n)), dtype=np.float32)
    return a, b


def _assert_close(got, ref, scale, k):
    """Float32 sums of k products: error relative to sum |a||b| grows about like sqrt(k)."""
    assert got.shape == ref.shape
    tol = scale * (5e-7 * (4.0 + np.sqrt(k))) + 1e-30
    worst = float(np.max(np.abs(got - ref) / tol)) if got.size else 0.0
    assert np.all(np.abs(got - ref) <= tol), f"error {worst:.2f}x the tolerance"


def _check(clb, np32, a, b, ta, tb, k, **kw):
    ref = np32.gemm(a, b, ta, tb)
    scale = np32.gemm(np.abs(a), np.abs(b), ta, tb)
    got = clb.to_host(clb.gemm(clb.from_host(a), clb.from_host(b), ta, tb, **kw))
    _assert_close(got, ref, scale, k)


@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("nb,m,n,k", SHAPES)
def test_gemm_matches_numpy(clb, np32, rng, nb, m, n, k, ta, tb):
    a, b = _operands(rng, nb, m, n, k, ta, tb)
    _check(clb, np32, a, b, ta, tb, k)


# (batch, M, N, K) at the edges of both register blocks (6 or 12 rows x 16 columns): 1 row, a
# row short of / past a panel, K not a multiple of 8 with op(A) packed (N >= 128, K >= 64), more
# row panels than one row block (16 panels), K split across work-items with several row blocks
EDGES = [
    (0, 1, 200, 70), (0, 11, 130, 67), (0, 12, 128, 64), (2, 13, 150, 129), (0, 23, 17, 9),
    (0, 25, 140, 100), (0, 97, 130, 72), (0, 200, 20, 3000), (1, 389, 131, 75),
    (0, 1030, 33, 64),
]


@pytest.mark.parametrize("mr,row_blocked", [(6, False), (6, True), (12, True), (12, False)])
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("nb,m,n,k", EDGES)
def test_gemm_register_rows(clb, np32, rng, monkeypatch, mr, row_blocked, nb, m, n, k, ta, tb):
    """Both builds of the product kernels (6-row blocks; 12-row blocks for AVX-512) and both
    grids (row-blocked; plain 2-D) on every device, whichever the device picks."""
    monkeypatch.setattr(clb.dense, "mr", mr)
    monkeypatch.setattr(clb.dense, "row_blocked", row_blocked)
    a, b = _operands(rng, nb, m, n, k, ta, tb)
    _check(clb, np32, a, b, ta, tb, k)
    c0 = rng.standard_normal(np32.gemm(a, b, ta, tb).shape, dtype=np.float32)
    ref = np32.gemm(a, b, ta, tb, out=c0.copy(), alpha=0.5, beta=-2.0)
    out = clb.from_host(c0)
    clb.gemm(clb.from_host(a), clb.from_host(b), ta, tb, out=out, alpha=0.5, beta=-2.0)
    _assert_close(clb.to_host(out), ref, 0.5 * np32.gemm(np.abs(a), np.abs(b), ta, tb)
                  + 2.0 * np.abs(c0), k)


@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("nb,m,n,k", EDGES[:6] + [(0, 40, 2100, 300), (1, 130, 2050, 257)])
def test_gemm_blocked_shapes_layout(clb, np32, rng, monkeypatch, nb, m, n, k, ta, tb):
    """The per-product layout of Intel's runtime (row-blocked grid, up to 12 rows, for a wide
    op(B)) forced on every device: a runtime whose own layout is the plain grid with 6 rows
    switches per call."""
    monkeypatch.setattr(clb.dense, "row_blocked", False)
    monkeypatch.setattr(clb.dense, "mr", 6)
    monkeypatch.setattr(clb.dense, "blocked_shapes", ((16, 1),))
    a, b = _operands(rng, nb, m, n, k, ta, tb)
    _check(clb, np32, a, b, ta, tb, k)


def test_gemm_blocked_shapes_follow_the_device(clb):
    """Only Intel's CPU runtime switches layouts per product: for op(B) of >= 2048 columns and
    K >= 256 (VGG16's lowered 512-channel products) or K >= 4096 and N >= 256 (long weight
    gradients), not at 1024^3, short K or N = 144."""
    intel = clb.runtime.is_cpu and "intel" in clb.runtime.device.platform.vendor.lower()
    d = clb.dense
    assert d._gemm_blocked(4608, 512) == d._gemm_blocked(1728, 4096) == (intel or d.row_blocked)
    assert d._gemm_blocked(1024, 1024) == d._gemm_blocked(4608, 128) == d.row_blocked
    assert d._gemm_blocked(144, 131072) == d.row_blocked
    if intel:
        assert d._gemm_rows(512, 512, 0, True) == (12 if d._wide_registers() else 6)
        assert d._gemm_rows(512, 512, 0, False) == 6


def test_gemm_register_rows_follow_the_device(clb):
    """12-row blocks and row-blocked grids only on CPU runtimes other than Intel's, 12 rows
    only with 16-float native vectors (32 AVX-512 registers)."""
    dev = clb.runtime.device
    intel = "intel" in dev.platform.vendor.lower()
    assert clb.dense.row_blocked == (clb.runtime.is_cpu and not intel)
    wide = clb.runtime.is_cpu and not intel and dev.native_vector_width_float >= 16
    assert clb.dense.mr == (12 if wide else 6)
    # 12-row blocks where they pad op(A) no more than 6-row ones, or M is large
    rows = {m: clb.dense._gemm_rows(m, 64) for m in (1, 6, 12, 16, 18, 23, 24, 30, 50, 96, 97)}
    if wide:
        assert rows == {1: 6, 6: 6, 12: 12, 16: 6, 18: 6, 23: 12, 24: 12, 30: 6, 50: 6,
                        96: 12, 97: 12}
        assert clb.dense._gemm_rows(200, 4096, 4096) == 6
        assert clb.dense._gemm_rows(200, 576, 576) == 12 and clb.dense._gemm_rows(200, 32) == 6
    else:
        assert set(rows.values()) == {6}


@pytest.mark.parametrize("name,m,n,k,ta,tb", LENET, ids=[c[0] for c in LENET])
def test_gemm_lenet_shapes(clb, np32, rng, name, m, n, k, ta, tb):
    a, b = _operands(rng, 0, m, n, k, ta, tb)
    _check(clb, np32, a, b, ta, tb, k)


@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("nb,m,n,k", [(0, 7, 10, 25), (2, 13, 17, 33), (0, 3, 600, 1100),
                                      (0, 400, 256, 1100), (1, 130, 140, 90),
                                      (0, 20, 25, 3000)])
def test_gemm_alpha_beta_out(clb, np32, rng, nb, m, n, k, ta, tb):
    a, b = _operands(rng, nb, m, n, k, ta, tb)
    shape = np32.gemm(a, b, ta, tb).shape
    c0 = rng.standard_normal(shape, dtype=np.float32)
    ref = np32.gemm(a, b, ta, tb, out=c0.copy(), alpha=0.5, beta=-2.0)
    scale = 0.5 * np32.gemm(np.abs(a), np.abs(b), ta, tb) + 2.0 * np.abs(c0)
    out = clb.from_host(c0)
    res = clb.gemm(clb.from_host(a), clb.from_host(b), ta, tb, out=out, alpha=0.5, beta=-2.0)
    assert res is out
    _assert_close(clb.to_host(out), ref, scale, k)


@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("nb,m,n,k", [(0, 13, 17, 33), (0, 400, 256, 1100), (0, 20, 25, 3000),
                                      (2, 64, 300, 200)])
def test_gemm_beta_zero_ignores_garbage_in_out(clb, np32, rng, nb, m, n, k, tb):
    a, b = _operands(rng, nb, m, n, k, False, tb)
    shape = (nb, m, n) if nb else (m, n)
    out = clb.from_host(np.full(shape, np.nan, dtype=np.float32))
    clb.gemm(clb.from_host(a), clb.from_host(b), False, tb, out=out, alpha=2.0)
    ref = 2.0 * np32.gemm(a, b, False, tb)
    _assert_close(clb.to_host(out), ref, 2.0 * np32.gemm(np.abs(a), np.abs(b), False, tb), k)


def test_gemm_swaps_operands_of_a_linear_forward(clb):
    """X W^T with few rows of X runs as W X^T (W read in place, no packing of W^T), a
    transposed product that the parity tests above cover (NT and TT with M < N)."""
    swap = clb.dense._gemm_swap
    assert swap(128, 500, True) and swap(1, 1000, True) and swap(64, 1024, True)
    assert not swap(128, 10, True) and not swap(128, 500, False) and not swap(1024, 2048, True)


def test_gemm_out_of_another_shape_and_2d_3d(clb, np32, rng):
    a, b = _operands(rng, 0, 9, 20, 30, False, False)
    out = clb.empty((180,))
    clb.gemm(clb.from_host(a), clb.from_host(b), out=out)
    _assert_close(clb.to_host(out).reshape(9, 20), np32.gemm(a, b),
                  np32.gemm(np.abs(a), np.abs(b)), 30)
    got = clb.gemm(clb.from_host(a[None]), clb.from_host(b[None]))
    assert got.shape == (1, 9, 20)
    assert clb.gemm(clb.from_host(a), clb.from_host(b)).shape == (9, 20)


def test_gemm_empty_reduction_and_bad_shapes(clb, rng):
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    assert np.array_equal(clb.to_host(clb.gemm(clb.from_host(a), clb.from_host(b))),
                          np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError):
        clb.gemm(clb.empty((3, 5)), clb.empty((4, 6)))
    with pytest.raises(ValueError):
        clb.gemm(clb.empty((2, 3, 5)), clb.empty((3, 5, 6)))


def test_gemm_is_deterministic(clb, rng):
    for m, n, k in [(20, 25, 3000), (400, 256, 1100)]:
        a, b = _operands(rng, 0, m, n, k, True, False)
        da, db = clb.from_host(a), clb.from_host(b)
        first = clb.to_host(clb.gemm(da, db, True, False))
        assert np.array_equal(first, clb.to_host(clb.gemm(da, db, True, False)))


TRANSPOSE_CASES = ([((3, 5, 7), p) for p in itertools.permutations(range(3))]
                   + [((9, 1, 17), p) for p in itertools.permutations(range(3))]
                   + [((5, 3, 11, 9), p) for p in itertools.permutations(range(4))]
                   + [((2, 13, 1, 19), p) for p in [(3, 2, 1, 0), (0, 3, 1, 2), (1, 0, 3, 2)]]
                   + [((17, 23), (1, 0)), ((40, 64), (1, 0)), ((31,), (0,))])


@pytest.mark.parametrize("shape,axes", TRANSPOSE_CASES)
def test_transpose_matches_numpy(clb, np32, rng, shape, axes):
    x = rng.standard_normal(shape, dtype=np.float32)
    got = clb.to_host(clb.transpose(clb.from_host(x), axes))
    assert np.array_equal(got, np32.transpose(x, axes))


def test_transpose_conv_layout_round_trip(clb, rng):
    """(G, N*P, O/G) conv output -> (N, O, P) and back, as the conv layer uses it."""
    g, n, p, og = 2, 3, 25, 7
    y = rng.standard_normal((g, n * p, og), dtype=np.float32)
    ref = y.reshape(g, n, p, og).transpose(1, 0, 3, 2).reshape(n, g * og, p)
    d = clb.transpose(clb.from_host(y).reshape(g, n, p, og), (1, 0, 3, 2))
    assert np.array_equal(clb.to_host(d).reshape(n, g * og, p), ref)
    back = clb.transpose(d, (1, 0, 3, 2))
    assert np.array_equal(clb.to_host(back).reshape(g, n * p, og), y)


def test_transpose_int32_bits(clb, rng):
    x = rng.integers(-2**31, 2**31 - 1, size=(6, 10, 12), dtype=np.int32)
    got = clb.to_host(clb.transpose(clb.from_host(x), (2, 0, 1)))
    assert got.dtype == np.int32 and np.array_equal(got, x.transpose(2, 0, 1))
