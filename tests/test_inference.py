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
    (1, 3, 30, 29, 4, 3, 1, 0, 1),
    (1, 2, 66, 64, 3, 3, 1, 1, 1),
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


# ---------------------------------------------------------------------------- plans
import warnings  # noqa: E402  (the plan tests below)

import minidnn as mdn  # noqa: E402
from minidnn.errors import StateError  # noqa: E402
from minidnn.inference import InferencePlan, PlanFallbackWarning, regular_logits  # noqa: E402
from minidnn.models import build_model  # noqa: E402


class UserNet(mdn.Model):
    """A user network mixing what a plan must handle: dense and CSR convs, BN (folded and not),
    pools fused and not, a residual block with a projection, dropout, dense and CSR linears."""

    input_shape = (3, 20, 20)

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(1)
        self.stem = mdn.Sequential(mdn.Conv2d(3, 8, 3, padding=1, rng=rng), mdn.BatchNorm2d(8),
                                   mdn.ReLU(), mdn.MaxPool2d(2))
        self.block = mdn.Residual(
            mdn.Sequential(mdn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False, rng=rng),
                           mdn.BatchNorm2d(12), mdn.ReLU(),
                           mdn.Conv2d(12, 12, 3, padding=1, rng=rng), mdn.BatchNorm2d(12)),
            mdn.Sequential(mdn.Conv2d(8, 12, 1, stride=2, bias=False, rng=rng),
                           mdn.BatchNorm2d(12)),
            post=mdn.ReLU())
        self.conv = mdn.Conv2d(12, 16, 3, padding=1, rng=rng)
        self.relu = mdn.ReLU()
        self.pool = mdn.AvgPool2d(2)
        self.flatten = mdn.Flatten()
        self.drop = mdn.Dropout(0.5)
        self.fc1 = mdn.Linear(64, 32, rng=rng)
        self.bn = mdn.BatchNorm1d(32)
        self.relu2 = mdn.ReLU()
        self.fc2 = mdn.Linear(32, 10, rng=rng)


def _randomize(model, seed: int, sparsity: float) -> None:
    """Magnitude-prune every conv/linear weight to ``sparsity``, random biases and BN figures."""
    rng = np.random.default_rng(seed)
    b = model.backend
    for _, p in model.prox_parameters():
        w = p.host_dense()
        w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0
        p.data = b.from_host(w)
    for name, p in model.named_parameters():
        if not p.prox:  # biases, BN gamma/beta
            p.data = b.from_host(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)
                                 if name.endswith("weight") else
                                 rng.normal(0, 0.1, p.shape).astype(np.float32))
    for _, m in model.named_modules():
        if isinstance(m, (mdn.BatchNorm1d, mdn.BatchNorm2d)):
            m.running_mean = b.from_host(rng.normal(0, 0.2, m.num_features).astype(np.float32))
            m.running_var = b.from_host(rng.uniform(0.5, 2.0, m.num_features).astype(np.float32))


MODELS = {  # name -> (factory, sparsity, CSR density limit of to_inference_form)
    "lenet5-csr": (lambda: build_model("lenet5", seed=0), 0.97, 0.5),
    "lenet5-dense": (lambda: build_model("lenet5", seed=0), 0.0, 0.0),
    "user": (UserNet, 0.8, 0.5),
    "resnet32-csr": (lambda: build_model("resnet32", seed=0), 0.88, 0.5),
}


def _pair(name: str, backend):
    """(NumPy reference model, the same weights on ``backend``), both in inference form."""
    factory, sparsity, density = MODELS[name]
    ref = factory().to(NumpyBackend())
    _randomize(ref, 0, sparsity)
    other = factory()
    other.load_state_dict(ref.state_dict())
    other.to(backend)
    for m in (ref, other):
        mdn.to_inference_form(m, density)
    return ref.eval(), other.eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_plan_matches_the_numpy_reference(clb, rng, name):
    ref, model = _pair(name, clb)
    n = 3 if name.startswith("resnet") else 5
    images = rng.standard_normal((n,) + tuple(model.input_shape)).astype(np.float32)
    want = regular_logits(ref, images, n)
    for batch in (1, 2, n):  # 2: the last batch is padded
        plan = InferencePlan(model, batch)
        got = plan.logits(images)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        assert np.array_equal(got.argmax(1), want.argmax(1))
    assert plan.launches > 0  # recorded and replayed, not run eagerly


@pytest.mark.parametrize("name", ["user", "resnet32-csr"])
def test_plan_fuses_bn_relu_pool_and_the_residual_add(clb, name):
    _, model = _pair(name, clb)
    names = InferencePlan(model, 1).prepared.names
    assert "maxpool2d_k2s2" not in names or name != "user"
    if name == "resnet32-csr":  # every block's add and ReLU happen inside its second conv
        assert "add" not in names and "relu" not in names
        assert not any(n.startswith("batchnorm") or n.startswith("channel_affine")
                       for n in names)


def test_plan_on_numpy_runs_eagerly_and_matches(np32, rng):
    ref, model = _pair("user", np32)
    images = rng.standard_normal((4, 3, 20, 20)).astype(np.float32)
    plan = InferencePlan(model, 3)
    assert plan.launches == 0
    np.testing.assert_allclose(plan.logits(images), regular_logits(ref, images, 4), rtol=1e-5,
                               atol=1e-5)


def test_predict_uses_the_plan_and_copies_once_each_way(clb, rng):
    _, model = _pair("lenet5-csr", clb)
    images = rng.standard_normal((7, 1, 28, 28)).astype(np.float32)
    want = regular_logits(model, images, 7).argmax(1)
    plan = InferencePlan(model, 7)
    before = (clb.transfers.to_device, clb.transfers.to_host)
    assert np.array_equal(plan.predict(images), want)
    assert (clb.transfers.to_device - before[0], clb.transfers.to_host - before[1]) == (1, 1)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlanFallbackWarning)
        assert np.array_equal(mdn.predict(model, images, batch_size=3), want)
        assert np.array_equal(model.predict(images, 4), want)
    assert model.training  # predict restores the mode


class CustomForward(mdn.Model):
    input_shape = (1, 6, 6)

    def __init__(self) -> None:
        super().__init__()
        self.fc = mdn.Linear(36, 3, rng=np.random.default_rng(0))

    def forward(self, x):
        return self.fc.forward(x.reshape((x.shape[0], 36)))


def test_an_unplannable_model_falls_back_with_one_warning(np32, rng):
    model = CustomForward().to(np32)
    images = rng.standard_normal((5, 1, 6, 6)).astype(np.float32)
    with pytest.raises(ConfigError, match="CustomForward"):
        InferencePlan(model, 2)
    with pytest.warns(PlanFallbackWarning, match="regular forward"):
        got = mdn.predict(model, images, batch_size=2)
    assert np.array_equal(got, regular_logits(model, images, 5).argmax(1))


def test_recording_refuses_host_reads(clb):
    x = clb.zeros((4,))
    with pytest.raises(StateError, match="recording"):
        clb.runtime.record(lambda: clb.to_host(x))
    clb.to_host(x)  # recording ended


def test_evaluate_matches_the_trainer(clb, rng):
    from minidnn.data import dataset_from_arrays
    from minidnn.train import Trainer
    _, model = _pair("lenet5-csr", clb)
    images = rng.standard_normal((30, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, 30).astype(np.int32)
    got = mdn.inference.evaluate(model, images, labels, batch_size=8)
    want = Trainer(model).evaluate(dataset_from_arrays(images, labels, name="t"), 8)
    assert got["accuracy"] == want["accuracy"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
