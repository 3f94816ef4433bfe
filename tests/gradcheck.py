"""Central-difference gradient checking for layers on the float64 NumPy backend."""
from __future__ import annotations

import numpy as np


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6, max_entries: int = 300,
                   rng=None) -> tuple[np.ndarray, np.ndarray]:
    """d f / d x at (up to max_entries random) entries of x; returns (flat indices, grads)."""
    rng = rng or np.random.default_rng(1)
    flat = x.reshape(-1)
    idx = np.arange(flat.size) if flat.size <= max_entries else \
        rng.choice(flat.size, max_entries, replace=False)
    grads = np.empty(len(idx))
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        grads[j] = (fp - fm) / (2 * eps)
    return idx, grads


def check_layer(layer, x: np.ndarray, rng=None, rtol: float = 1e-5, atol: float = 1e-7,
                train: bool = True) -> None:
    """Assert that layer.backward matches central differences for the input and every param.

    The scalar is sum(forward(x) * R) for a fixed random R, so every output entry counts.
    """
    rng = rng or np.random.default_rng(0)
    layer.train(train)
    y = layer.forward(x)
    r = rng.standard_normal(y.shape)

    def f():
        for p in layer.parameters():  # the contract of an in-place update of the values
            p.values_changed()
        return float((layer.forward(x) * r).sum())

    layer.zero_grad()
    for p in layer.parameters():
        p.grad = None
    layer.forward(x)
    dx = layer.backward(r)
    idx, num = numerical_grad(f, x, rng=rng)
    np.testing.assert_allclose(dx.reshape(-1)[idx], num, rtol=rtol, atol=atol,
                               err_msg="input gradient")
    for name, p in layer.named_parameters():
        analytic = p.grad.copy()
        idx, num = numerical_grad(f, p.values, rng=rng)  # dense data, or the blocks
        np.testing.assert_allclose(analytic.reshape(-1)[idx], num, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of {name}")


def off_kink_values(rng, shape, gap: float = 0.05) -> np.ndarray:
    """Distinct values at least ``gap`` apart, none near 0: safe for max/ReLU kinks."""
    n = int(np.prod(shape))
    v = (rng.permutation(n) - n / 2 + 0.5) * gap
    return v.reshape(shape).astype(np.float64)
