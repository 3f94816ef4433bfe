"""Layers with CSR weights against the same layers with dense weights + mask, on NumPy and every
OpenCL device: forward outputs, input gradients and weight gradients (at the nonzeros), in
training mode (im2row + sparse products) and in eval mode (Conv2d's direct sparse convolution)."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.layers import Conv2d, Linear

from conftest import OPENCL_DEVICES, opencl_backend_for

DENSITIES = [0.0, 0.01, 0.3, 1.0]

# (n, c, h, w, o, k, stride, pad, groups): odd sizes, padding, strides, groups; output tiles
# fully inside the image, at its borders, and partial (OH, OW not multiples of the 8 x 8 tile)
CONV_CASES = [
    (2, 3, 9, 11, 5, 3, 1, 1, 1),
    (3, 4, 13, 10, 6, 3, 2, 1, 2),
    (2, 1, 28, 28, 20, 5, 1, 0, 1),   # LeNet-5 conv1
    (2, 20, 12, 12, 50, 5, 1, 0, 1),  # LeNet-5 conv2
    (2, 6, 7, 5, 4, 3, 1, 2, 1),
    (1, 8, 40, 37, 8, 3, 2, 1, 4),    # stride 2 with interior tiles
    (2, 6, 7, 7, 6, 1, 1, 0, 3),
    (1, 3, 30, 29, 4, 3, 1, 0, 1),    # inside tiles and a 4-row tail tile on the checked path
    (1, 2, 66, 64, 3, 3, 1, 1, 1),    # padding, but enough inside tiles to skip the padded copy
]


def _set_sparse_weight(layer, rng, density: float) -> np.ndarray:
    """Random weight with about ``density`` nonzeros and some empty rows; returns it (host)."""
    w = rng.standard_normal(layer.weight.shape).astype(np.float32)
    w[rng.random(w.shape) >= density] = 0
    if w.shape[0] > 2 and density < 1:
        w[1] = 0
    layer.weight.data = layer.backend.from_host(w)
    layer.weight.set_mask((w != 0).astype(np.float32))
    if layer.bias is not None:
        layer.bias.data = layer.backend.from_host(rng.standard_normal(layer.bias.shape)
                                                  .astype(np.float32))
    return w


def _run(layer, backend, x: np.ndarray, dy: np.ndarray, train: bool) -> dict[str, np.ndarray]:
    layer.train(train)
    for p in layer.parameters():
        p.zero_grad()
    y = layer.forward(backend.from_host(x))
    out = {"y": backend.to_host(y)}
    if train:
        out["dx"] = backend.to_host(layer.backward(backend.from_host(dy)))
        out["dw"] = backend.to_host(layer.weight.grad)
        if layer.bias is not None:
            out["db"] = backend.to_host(layer.bias.grad)
    return out


def _compare(layer, backend, x: np.ndarray, dy_shape, w: np.ndarray, rng) -> None:
    dy = rng.standard_normal(dy_shape).astype(np.float32)
    nonzero = w.reshape(w.shape[0], -1) != 0  # CSR values are the nonzeros in row-major order
    for train in (True, False):
        layer.weight.to_dense()
        layer.weight.set_mask((w != 0).astype(np.float32))
        dense = _run(layer, backend, x, dy, train)
        layer.weight.to_csr()
        assert layer.weight.is_sparse
        sparse = _run(layer, backend, x, dy, train)
        tol = dict(rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(sparse["y"], dense["y"], err_msg=f"y train={train}", **tol)
        if train:
            np.testing.assert_allclose(sparse["dx"], dense["dx"], err_msg="dx", **tol)
            np.testing.assert_allclose(sparse["dw"], dense["dw"].reshape(nonzero.shape)[nonzero],
                                       err_msg="dw at the nonzeros", **tol)
            if "db" in sparse:
                np.testing.assert_allclose(sparse["db"], dense["db"], err_msg="db", **tol)


@pytest.fixture(params=["numpy", *(f"opencl:{d}" for d in OPENCL_DEVICES)])
def backend(request, np32):
    """The NumPy backend and every OpenCL device found."""
    if request.param == "numpy":
        return np32
    return opencl_backend_for(request.param.split(":", 1)[1])


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("density", DENSITIES)
def test_conv2d_csr_matches_dense_mask(backend, rng, case, density):
    n, c, h, w, o, k, stride, pad, groups = case
    layer = Conv2d(c, o, k, stride=stride, padding=pad, groups=groups, rng=rng).to(backend)
    weight = _set_sparse_weight(layer, rng, density)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    _compare(layer, backend, x, layer.output_shape(x.shape), weight, rng)


@pytest.mark.parametrize("n,i,o", [(5, 13, 7), (1, 800, 500), (130, 37, 10)])
@pytest.mark.parametrize("density", DENSITIES)
def test_linear_csr_matches_dense_mask(backend, rng, n, i, o, density):
    layer = Linear(i, o, rng=rng).to(backend)
    weight = _set_sparse_weight(layer, rng, density)
    _compare(layer, backend, rng.standard_normal((n, i)).astype(np.float32), (n, o), weight, rng)


def test_conv2d_backward_after_eval_forward_is_a_clear_error(np32, rng):
    layer = Conv2d(2, 3, 3, rng=rng).to(np32)
    _set_sparse_weight(layer, rng, 0.5)
    layer.weight.to_csr()
    layer.eval()
    y = layer.forward(np32.from_host(rng.standard_normal((1, 2, 5, 5)).astype(np.float32)))
    with pytest.raises(RuntimeError, match="model.train"):
        layer.backward(y)
