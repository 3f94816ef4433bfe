"""Zoo models: per-layer weight counts equal the paper's tables, shapes, PyTorch and backend
parity of a full forward/backward, and a few Prox-Adam steps lowering the loss."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.data import random_crop_flip
from minidnn.layers import MaxPool2d, ReLU, SoftmaxCrossEntropy
from minidnn.models import MODELS, build_model, training_augment, training_recipe
from minidnn.optim import ProxAdam
from minidnn.train import Trainer

ZOO = ["lenet5", "lenet300", "alexnet", "vgg16", "resnet32"]
MNIST_ZOO = ("lenet5", "lenet300")


# Table A4 as printed: (layer, weights)
RESNET32_TABLE_A4 = [
    ("conv1", 432),
    *[(f"conv1-{b}-{i}", 2_304) for b in range(1, 6) for i in (1, 2)],
    ("conv2-1-1", 4_608), ("conv2-1-2", 9_216), ("conv2-1-proj", 512),
    *[(f"conv2-{b}-{i}", 9_216) for b in range(2, 6) for i in (1, 2)],
    ("conv3-1-1", 18_432), ("conv3-1-2", 36_864), ("conv3-1-proj", 2_048),
    *[(f"conv3-{b}-{i}", 36_864) for b in range(2, 6) for i in (1, 2)],
    ("fc1", 640),
]


def _resnet_name(paper: str) -> str:
    """Table A4's 'conv{stage}-{block}-{1,2,proj}' as our parameter name."""
    if paper in ("conv1", "fc1"):
        return {"conv1": "conv1.weight", "fc1": "fc.weight"}[paper]
    stage, block, which = paper.removeprefix("conv").split("-")
    branch = "shortcut.conv" if which == "proj" else f"main.conv{which}"
    return f"stage{stage}.block{block}.{branch}.weight"


# (paper layer name, our parameter name, weights) from the paper: LeNet-5 (Section 4 / Table A1),
# AlexNet (Table A2), VGG16 (Table A3), ResNet-32 (Table A4); the totals are the tables' last rows.
PAPER_COUNTS = {
    "lenet5": [("conv1", "features.conv1.weight", 500), ("conv2", "features.conv2.weight", 25_000),
               ("fc1", "classifier.fc1.weight", 400_000), ("fc2", "classifier.fc2.weight", 5_000)],
    # LeNet-300-100 (Han et al. 2015, Table 1; Guo et al. 2016): 784-300-100-10
    "lenet300": [("fc1", "classifier.fc1.weight", 235_200), ("fc2", "classifier.fc2.weight", 30_000),
                 ("fc3", "classifier.fc3.weight", 1_000)],
    "alexnet": [("conv1", "features.conv1.weight", 7_200),
                ("conv2", "features.conv2.weight", 307_200),
                ("conv3", "features.conv3.weight", 884_736),
                ("conv4", "features.conv4.weight", 663_552),
                ("conv5", "features.conv5.weight", 442_368),
                ("fc1", "classifier.fc1.weight", 4_194_304),
                ("fc2", "classifier.fc2.weight", 1_048_576),
                ("fc3", "classifier.fc3.weight", 10_240)],
    "vgg16": [("conv1-1", "features.conv1_1.weight", 1_728),
              ("conv1-2", "features.conv1_2.weight", 36_864),
              ("conv2-1", "features.conv2_1.weight", 73_728),
              ("conv2-2", "features.conv2_2.weight", 147_456),
              ("conv3-1", "features.conv3_1.weight", 294_912),
              ("conv3-2", "features.conv3_2.weight", 589_824),
              ("conv3-3", "features.conv3_3.weight", 589_824),
              ("conv4-1", "features.conv4_1.weight", 1_179_648),
              ("conv4-2", "features.conv4_2.weight", 2_359_296),
              ("conv4-3", "features.conv4_3.weight", 2_359_296),
              ("conv5-1", "features.conv5_1.weight", 2_359_296),
              ("conv5-2", "features.conv5_2.weight", 2_359_296),
              ("conv5-3", "features.conv5_3.weight", 2_359_296),
              ("fc1", "classifier.fc1.weight", 524_288),
              ("fc2", "classifier.fc2.weight", 1_048_576),
              ("fc3", "classifier.fc3.weight", 10_240)],
    "resnet32": [(paper, _resnet_name(paper), n) for paper, n in RESNET32_TABLE_A4],
}
PAPER_TOTALS = {"lenet5": 430_500, "lenet300": 266_200, "alexnet": 7_558_176, "vgg16": 16_293_568,
                "resnet32": 464_432}

# output shape of each top-level child for a batch of 2 (children run in order)
CHILD_SHAPES = {
    "lenet5": {"features": (2, 800), "classifier": (2, 10)},
    "lenet300": {"features": (2, 784), "classifier": (2, 10)},
    "alexnet": {"features": (2, 4096), "classifier": (2, 10)},
    "vgg16": {"features": (2, 512), "classifier": (2, 10)},
    "resnet32": {"conv1": (2, 16, 32, 32), "stage1": (2, 16, 32, 32), "stage2": (2, 32, 16, 16),
                 "stage3": (2, 64, 8, 8), "pool": (2, 64, 1, 1), "flatten": (2, 64),
                 "fc": (2, 10)},
}

_MODELS: dict[tuple, object] = {}


def _model(name: str, **config):
    """Build each (model, config) once per session (VGG16's init draws 16M normals)."""
    key = (name, tuple(sorted(config.items())))
    if key not in _MODELS:
        _MODELS[key] = build_model(name, seed=1, **config)
    return _MODELS[key]


def _fresh(name: str, backend, **config):
    """A copy of the cached (host) model, on ``backend``."""
    return copy.deepcopy(_model(name, **config)).to(backend)


def _batch(model, n: int = 2, seed: int = 0, dtype=np.float32):
    """Random images shaped for ``model`` and random labels (host arrays)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + tuple(model.input_shape)).astype(dtype)
    y = rng.integers(0, model.num_classes, n).astype(np.int32)
    return x, y


def _forward_backward(model, backend, x, y):
    """Logits, loss, dx and every parameter gradient (host arrays) for one batch in train mode."""
    loss_fn = SoftmaxCrossEntropy(backend)
    model.train()
    logits = model.forward(backend.from_host(x))
    loss = loss_fn.forward(logits, backend.from_host(y, np.int32))
    model.zero_grad()
    dx = model.backward(loss_fn.backward(), need_dx=True)
    grads = {n: backend.to_host(p.grad) for n, p in model.named_parameters()}
    return backend.to_host(logits), float(backend.to_host(loss)[0]), backend.to_host(dx), grads


# ---------------------------------------------------------------------------- structure
@pytest.mark.parametrize("name", ZOO)
def test_weight_counts_match_paper(name):
    table = PAPER_COUNTS[name]
    assert sum(n for _, _, n in table) == PAPER_TOTALS[name]  # the table transcribes the paper
    counts = {n: p.numel for n, p in _model(name).prox_parameters()}
    assert counts == {ours: n for _, ours, n in table}
    assert _model(name).weight_count() == PAPER_TOTALS[name]


def test_registry_and_recipes():
    """Every zoo model's recipe names its dataset and lam: the only source of those defaults."""
    assert set(ZOO) <= set(MODELS)
    for name in ZOO:
        assert MODELS[name].arch == name
        recipe = training_recipe(name)
        assert recipe["data"] == ("mnist" if name in MNIST_ZOO else "cifar10")
        assert recipe["lam"] > 0
        assert recipe["optimizer"] == "adam" and recipe["lr"] == 0.001
    assert training_augment("resnet32") is random_crop_flip
    assert training_augment("alexnet") is None and training_augment("lenet5") is None


def test_augment_option_overrides_the_recipe():
    from minidnn.data import random_shift
    from minidnn.errors import ConfigError
    from minidnn.train_config import TrainConfig
    assert TrainConfig.for_model("lenet5", augment="shift").augment is random_shift
    assert TrainConfig.for_model("resnet32", augment="none").augment is None
    assert TrainConfig.for_model("resnet32").augment is random_crop_flip
    with pytest.raises(ConfigError, match="unknown augmentation 'tilt'"):
        TrainConfig.for_model("lenet5", augment="tilt")


@pytest.mark.parametrize("name", ZOO)
def test_config_rebuilds_same_model(name):
    m = _model(name)
    config = json.loads(json.dumps(m.config))  # JSON-friendly, as saved files store it
    again = build_model(m.arch, **config).state_dict()
    for key, value in m.state_dict().items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


@pytest.mark.parametrize("name", ZOO)
def test_forward_shapes(np32, name):
    m = _fresh(name, np32)
    x, _ = _batch(m)
    assert tuple(m.forward(np32.from_host(x)).shape) == (2, m.num_classes)  # train mode
    m.eval()  # deterministic from here (no dropout draws, no batch statistics)
    out = np32.from_host(x)
    shapes = {}
    for child, layer in m._modules.items():  # the zoo models apply their children in order
        out = layer.forward(out)
        shapes[child] = tuple(out.shape)
    for child, shape in CHILD_SHAPES[name].items():
        assert shapes[child] == shape, child
    np.testing.assert_array_equal(m.forward(np32.from_host(x)), out)
    assert m.predict(x).shape == (2,)


def test_resnet32_other_depth_and_classes(np32):
    m = build_model("resnet32", blocks_per_stage=1, num_classes=7).to(np32)
    x, _ = _batch(m)
    assert tuple(m.forward(np32.from_host(x)).shape) == (2, 7)
    assert sum(1 for n, _ in m.prox_parameters() if "shortcut" in n) == 2


# ---------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("name", ZOO)
def test_forward_backward_matches_torch(np64, name):
    """float64 logits, loss, dx and every gradient against a PyTorch twin (dropout masks shared)."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional test oracle)")
    from torch_twin import torch_twin
    m = _fresh(name, np64)
    net, params = torch_twin(m, torch.float64, exact_dropout=True)
    assert set(params) == {n for n, _ in m.named_parameters()}
    x, y = _batch(m, dtype=np.float64)
    logits, loss, dx, grads = _forward_backward(m, np64, x, y)
    tx = torch.tensor(x, requires_grad=True)
    net.train()
    t_logits = net(tx)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(y, dtype=torch.long))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-9, atol=1e-9)
    assert loss == pytest.approx(t_loss.item(), rel=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-12 * np.abs(dx).max())
    for pname, g in grads.items():
        ref = params[pname].grad.numpy().reshape(g.shape)
        np.testing.assert_allclose(g, ref, rtol=1e-7, atol=1e-10 * np.abs(ref).max(),
                                   err_msg=pname)
    for bname, buf in m.named_buffers():  # BN running statistics updated the same way
        owner, stat = bname.rsplit(".", 1)
        t_buf = net.get_submodule(owner).get_buffer(stat)
        np.testing.assert_allclose(buf, t_buf.numpy(), rtol=1e-9, atol=1e-12, err_msg=bname)


def _decisions(model, backend) -> dict[str, np.ndarray]:
    """Every ReLU's active set and every max-pool's chosen inputs, from the last forward."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, ReLU):
            out[name] = backend.to_host(m._y) > 0
        elif isinstance(m, MaxPool2d):
            ones = backend.from_host(np.ones(m._argmax.shape, np.float32))
            out[name] = backend.to_host(backend.maxpool2d_backward(ones, m._argmax,
                                                                   m._x_shape)) > 0
    return out


def _missing_primitive(exc: Exception) -> bool:
    """True when an OpenCL primitive is not written yet (the backend is being finished)."""
    return isinstance(exc, NotImplementedError) or (
        isinstance(exc, TypeError) and "abstract" in str(exc))


@pytest.mark.parametrize("name", ZOO)
def test_opencl_matches_numpy(clb, np32, name):
    """A train-mode forward/backward on OpenCL equals NumPy's at float32 tolerance.

    Inputs whose pre-activations fall within float32 rounding of a ReLU kink (or a max-pool tie)
    make the two backends route a gradient differently, legitimately; such a batch is replaced.
    """
    for seed in range(6):
        x, y = _batch(_model(name), seed=seed)
        ref = _fresh(name, np32)
        r_logits, r_loss, r_dx, r_grads = _forward_backward(ref, np32, x, y)
        m = _fresh(name, clb)
        try:
            logits, loss, dx, grads = _forward_backward(m, clb, x, y)
            decisions = _decisions(m, clb)
        except (NotImplementedError, TypeError) as exc:
            if _missing_primitive(exc):
                pytest.skip(f"OpenCL primitive missing: {exc}")
            raise
        scale = np.abs(r_logits).max()
        np.testing.assert_allclose(logits, r_logits, rtol=1e-4, atol=1e-4 * scale)
        assert loss == pytest.approx(r_loss, rel=1e-4, abs=1e-5)
        ref_decisions = _decisions(ref, np32)
        flips = sum(int((decisions[k] != ref_decisions[k]).sum()) for k in ref_decisions)
        total = sum(v.size for v in ref_decisions.values())
        assert flips <= 1e-4 * total, f"{flips} of {total} ReLU/max-pool decisions differ"
        if flips:
            continue  # a near-kink batch: gradients may differ legitimately; try another
        np.testing.assert_allclose(dx, r_dx, rtol=1e-3, atol=1e-3 * np.abs(r_dx).max())
        for pname, g in r_grads.items():
            np.testing.assert_allclose(grads[pname], g, rtol=1e-3, atol=1e-3 * np.abs(g).max(),
                                       err_msg=pname)
        return
    pytest.skip("every batch tried had an activation within float32 rounding of a kink")


@pytest.mark.parametrize("name", ZOO)
def test_prox_adam_lowers_loss_on_fixed_batch(np32, name):
    """Repeated Prox-Adam steps on one batch lower its loss and zero some weights."""
    config = {} if name in ("lenet5", "lenet300", "resnet32") else {"dropout": 0.0}  # deterministic loss
    m = _fresh(name, np32, **config)
    x, y = _batch(m, n=8, seed=3)
    opt = ProxAdam(m.named_parameters(), lr=1e-4, lam=1.0)
    trainer = Trainer(m, opt)
    losses = [float(np32.to_host(trainer.train_step(x, y))[0]) for _ in range(4)]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses
    zeros = sum(int((p.host_dense() == 0).sum()) for _, p in m.prox_parameters())
    assert zeros > 0
    for pname, p in m.named_parameters():
        if not p.prox and pname.endswith(".weight"):  # BN scales: never thresholded
            assert np.all(p.host_dense() != 0), pname


@pytest.mark.parametrize("name,augment", [("resnet32", random_crop_flip), ("alexnet", None)])
def test_cli_train_uses_recipe_augmentation(monkeypatch, tmp_path, name, augment):
    """``minidnn train resnet32`` trains with crop + flip; the others without augmentation."""
    import minidnn.data
    from minidnn.cli import main
    from minidnn.data import ArrayDataset
    rng = np.random.default_rng(0)
    tiny = ArrayDataset(rng.standard_normal((4, 3, 32, 32), dtype=np.float32),
                        np.arange(4, dtype=np.int32), "cifar10", [str(k) for k in range(10)])
    loaded, seen = [], {}
    monkeypatch.setattr(minidnn.data, "load_dataset",
                        lambda data, root=None: loaded.append(data) or (tiny, tiny))
    fit = Trainer.fit

    def spy(self, *args, **kwargs):
        seen["augment"] = kwargs.get("augment")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    rc = main(["train", name, "--backend", "numpy", "--steps", "1", "--batch-size", "2",
               "--no-progress", "--out", str(tmp_path / f"{name}.h5")])
    assert rc == 0 and loaded == ["cifar10"]
    assert seen["augment"] is augment


def test_unknown_model_fails_in_one_line(capsys):
    from minidnn.cli import main
    assert main(["train", "nope", "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'nope'" in err


def test_training_defaults_come_from_the_recipe():
    from minidnn.train_config import TrainConfig, recipe_value
    config = TrainConfig.for_model("resnet32", lr=0.01)
    assert (config.optimizer, config.lr, config.batch_size) == ("adam", 0.01, 128)
    assert config.augment is random_crop_flip
    assert recipe_value("lenet5", "data") == "mnist" and recipe_value("vgg16", "lam") > 0
    assert recipe_value("lenet5", "data", "cifar10") == "cifar10"


def test_calling_a_model_needs_a_backend():
    from minidnn.errors import StateError
    m = build_model("lenet5")
    with pytest.raises(StateError, match="to\\(backend\\)"):
        m(np.zeros((1, 1, 28, 28), np.float32))
    assert m.backend is None
