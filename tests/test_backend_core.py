"""The backend interface splits into core primitives (abstract) and optional ones with defaults
built from the core. A backend that implements only the core (here: NumPy's core methods and
nothing else) must train a model exactly as the full NumPy backend does, and every optional
default must match the NumPy override it stands in for."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from minidnn.backend import Backend, NumpyBackend
from minidnn.backend.base import CORE_PRIMITIVES, OPTIONAL_PRIMITIVES
from minidnn.models import build_model
from minidnn.optim import Adam, ProxAdam, ProxSGD, RMSProp
from minidnn.train import Trainer

from test_opencl_nn_ops import CASES


def _public_methods(cls) -> set[str]:
    return {n for n, v in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


class CoreOnlyBackend(Backend):
    """Implements the core primitives by calling a NumpyBackend's, and nothing else: every
    optional primitive runs the default of ``Backend``."""

    name = "core-only"

    def __init__(self, dtype=np.float32) -> None:
        super().__init__()
        self.reference = NumpyBackend(dtype)
        self.transfers = self.reference.transfers
        self.dtype = self.reference.dtype
        self.device_name = "core primitives of NumPy"


def _forward_to_reference(name: str):
    def method(self, *args, **kwargs):
        return getattr(self.reference, name)(*args, **kwargs)
    method.__name__ = name
    return method


for _name in CORE_PRIMITIVES:
    setattr(CoreOnlyBackend, _name, _forward_to_reference(_name))
CoreOnlyBackend.__abstractmethods__ = frozenset()  # set after the class body, as ABCMeta would


def test_core_and_optional_partition_the_interface():
    assert len(CORE_PRIMITIVES) <= 25 and not set(CORE_PRIMITIVES) & set(OPTIONAL_PRIMITIVES)
    assert Backend.__abstractmethods__ == set(CORE_PRIMITIVES)
    assert _public_methods(Backend) == set(CORE_PRIMITIVES) | set(OPTIONAL_PRIMITIVES)
    # the full backends override every optional default
    for name in OPTIONAL_PRIMITIVES:
        if name not in ("nbytes", "synchronize", "prepare"):
            assert getattr(NumpyBackend, name) is not getattr(Backend, name), name


def test_core_only_backend_overrides_nothing_optional():
    for name in OPTIONAL_PRIMITIVES:
        assert getattr(CoreOnlyBackend, name) is getattr(Backend, name), name


# RMSProp's first steps divide by sqrt(0.01 g^2) + eps, which turns the rounding differences
# of the second step's gradients (the bias sums differ in order) into a few % of a step
# (lr * 10 = 1e-2) for gradients near eps (1.2e-4 seen, depending on BLAS threads): hence its
# looser atol, still an order of magnitude below one step.
@pytest.mark.parametrize("optimizer,atol", [
    (lambda params: ProxAdam(params, lr=1e-3, lam=0.3), 1e-6),
    (lambda params: ProxSGD(params, lr=0.05, momentum=0.9, nesterov=True, lam=0.3), 1e-6),
    (lambda params: RMSProp(params, lr=1e-3, weight_decay=1e-4), 1e-3),
], ids=["prox-adam", "prox-sgd-nesterov", "rmsprop"])
def test_core_only_backend_trains_lenet5_like_numpy(optimizer, atol):
    """Two LeNet-5 training steps on a backend with only the core primitives match the full
    NumPy backend: the defaults of the optional primitives are real implementations."""
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((16, 1, 28, 28)).astype(np.float32),
                rng.integers(0, 10, 16).astype(np.int32)) for _ in range(2)]
    weights, losses = [], []
    for backend in (NumpyBackend(), CoreOnlyBackend()):
        model = build_model("lenet5").to(backend)
        trainer = Trainer(model, optimizer(model.named_parameters()))
        losses.append([float(backend.to_host(trainer.train_step(x, y))[0]) for x, y in batches])
        weights.append({n: backend.to_host(p.values) for n, p in model.named_parameters()})
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for name, ref in weights[0].items():
        np.testing.assert_allclose(weights[1][name], ref, rtol=1e-5, atol=atol, err_msg=name)
        # the prox zeroed the same weights (none where it moved a weight across zero)
        assert np.array_equal(weights[1][name] == 0, ref == 0), name


@pytest.mark.parametrize("runner,params,tol", [pytest.param(r, p, t, id=i)
                                               for i, r, p, t in CASES])
def test_optional_defaults_match_numpy_overrides(runner, params, tol):
    """The parity table of the OpenCL nn ops, run on the core-only backend against NumPy."""
    ref = {k: np.asarray(v) for k, v in runner(NumpyBackend(), np.random.default_rng(1),
                                                **params).items()}
    core = CoreOnlyBackend()
    got = {k: core.to_host(v) for k, v in runner(core, np.random.default_rng(1),
                                                 **params).items()}
    for name, value in ref.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_allclose(got[name], value, rtol=max(tol[0], 1e-5),
                                   atol=max(tol[1], 1e-5), err_msg=name)


def test_core_only_backend_runs_csr_layers_like_numpy():
    """CSR training (csr_matmul by default through csr_matmul_t on the transpose) and CSR
    inference (csr_conv2d by default through im2row + csr_matmul_t) match NumPy."""
    from minidnn.compress.sparsify import freeze_zeros
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int32)
    results = []
    for backend in (NumpyBackend(), CoreOnlyBackend()):
        model = build_model("lenet5").to(backend)
        trainer = Trainer(model, ProxAdam(model.named_parameters(), lr=1e-3, lam=20.0))
        trainer.train_step(x, y)  # a strong prox: many exact zeros
        freeze_zeros(model, "csr")
        assert all(p.is_sparse for _, p in model.prox_parameters())
        trainer = Trainer(model, Adam(model.named_parameters(), lr=1e-3))
        trainer.train_step(x, y)
        model.eval()
        results.append(backend.to_host(model.forward(backend.from_host(x))))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["soft_threshold_scaled", "hard_threshold", "mask_zeros",
                                  "l1_reweight"])
def test_prox_variant_defaults_match_numpy(name):
    """The defaults of the prox variants (built from relu, its gate and div_sqrt) equal the
    NumPy overrides, zeros included."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal(1000).astype(np.float32)
    w[::7] = 0.0
    scale = rng.uniform(0.5, 2.0, 1000).astype(np.float32)
    ref, core = NumpyBackend(), CoreOnlyBackend()
    if name == "mask_zeros":
        want, got = np.ones_like(w), np.ones_like(w)
        ref.mask_zeros(w, want)
        core.mask_zeros(w, got)
    else:
        args = {"soft_threshold_scaled": (w, scale, 0.3), "hard_threshold": (w, 0.5),
                "l1_reweight": (w, 0.1)}[name]
        want, got = getattr(ref, name)(*args), getattr(core, name)(*args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if name != "l1_reweight":
        assert np.array_equal(got == 0, want == 0)


def test_group_soft_threshold_default_matches_numpy():
    """The default group prox (row norms by GEMM, scales by div_sqrt and relu) equals the NumPy
    override, vanished rows included."""
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((40, 3, 5, 5)) * rng.uniform(0, 0.1, (40, 1, 1, 1))).astype(np.float32)
    w[5] = 0.0
    want = NumpyBackend().group_soft_threshold(w, 0.01)
    got = CoreOnlyBackend().group_soft_threshold(w, 0.01)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    rows = lambda a: np.all(a.reshape(40, -1) == 0, axis=1)  # noqa: E731
    assert np.array_equal(rows(got), rows(want)) and rows(want).sum() > 5
    lin = w.reshape(40, -1).T.copy()                                  # 75 inputs x 40 outputs
    want = NumpyBackend().group_soft_threshold(lin, 0.01, columns=True)
    got = CoreOnlyBackend().group_soft_threshold(lin, 0.01, columns=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert np.array_equal(np.all(got == 0, axis=0), np.all(want == 0, axis=0))
