"""Sparse inference: the fused epilogue of the direct sparse convolution and prepared inference
plans (minidnn/inference.py), against the NumPy reference on every usable OpenCL device."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.errors import ConfigError
from minidnn.sparse import CSRMatrix

from conftest import OPENCL_DEVICES

# (n, c, h, w, o, k, stride, pad, groups): LeNet-5's two convolutions, odd output sizes (the
# pooled output drops the last row/column), partial tiles, strides and groups
EPILOGUE_CASES = [
    (2, 1, 28, 28, 20, 5, 1, 0, 1),
    (3, 20, 12, 12, 50, 5, 1, 0, 1),
    (2, 3, 11, 13, 5, 3, 1, 1, 1),
    (1, 4, 19, 21, 6, 3, 2, 1, 2),
    (2, 6, 7, 9, 4, 1, 1, 0, 1),
]
EPILOGUES = [(False, False, 1), (False, True, 1), (False, True, 2), (True, True, 1),
             (True, False, 2), (False, False, 2)]


def _filter_bank(rng, o: int, k: int, density: float = 0.3) -> np.ndarray:
    w = rng.standard_normal((o, k)).astype(np.float32)
    w[rng.random(w.shape) >= density] = 0
    w[min(1, o - 1)] = 0  # an empty row: the output is bias (+ residual) only
    return w


@pytest.mark.parametrize("case", EPILOGUE_CASES)
@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_csr_conv2d_fused_epilogue_matches_numpy(clb, rng, case, epilogue):
    n, c, h, w, o, k, s, p, g = case
    has_res, relu, pool = epilogue
    ref = NumpyBackend()
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = _filter_bank(rng, o, c // g * k * k)
    bias = rng.standard_normal(o).astype(np.float32)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    res = rng.standard_normal((n, o, oh, ow)).astype(np.float32) if has_res else None
    out = {}
    for b in (ref, clb):
        m = CSRMatrix.from_dense(b, b.from_host(wt), g)
        taps = b.csr_conv_taps(m.col_idx, k, k)
        y = b.csr_conv2d(b.from_host(x), m.row_ptr, taps, m.values, m.shape, b.from_host(bias),
                         k, k, s, p, g, residual=None if res is None else b.from_host(res),
                         relu=relu, pool=pool)
        out[b] = b.to_host(y)
    assert out[clb].shape == (n, o, oh // pool, ow // pool)
    np.testing.assert_allclose(out[clb], out[ref], rtol=1e-5, atol=1e-5)


def test_csr_conv2d_pool_other_than_2_is_a_config_error(np32):
    with pytest.raises(ConfigError, match="pool"):
        np32.csr_conv2d(np.zeros((1, 1, 4, 4), np.float32), np.array([0, 0], np.int32),
                        np.zeros(0, np.int32), np.zeros(0, np.float32), (1, 1), None, 1, 1, 1,
                        0, 1, pool=3)
