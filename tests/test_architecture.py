"""The architecture record: layer registry, save/load without the class, bounded strict reading,
loading into an instance, version 1 files."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import minidnn as mdn
from conftest import spy
from minidnn import models as zoo
from minidnn.backend import NumpyBackend
from minidnn.errors import ModelFileError
from minidnn.io import architecture as arch_io
from minidnn.io.h5 import seal, set_attrs
from minidnn.io.model_file import model_tensors
from minidnn.layers.registry import LAYER_TYPES, layer_type_name

# ---------------------------------------------------------------------- the registry
CONFIGS = {
    "Linear": [dict(in_features=5, out_features=3, bias=True),
               dict(in_features=2, out_features=7, bias=False)],
    "Conv2d": [dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2,
                    bias=True),
               dict(in_channels=1, out_channels=2, kernel_size=1, stride=1, padding=0, groups=1,
                    bias=False),
               dict(in_channels=3, out_channels=3, kernel_size=[5, 1], stride=1, padding=2,
                    groups=3, bias=False)],
    "LowRankLinear": [dict(in_features=8, out_features=6, rank=2, bias=True)],
    "Tucker2Conv2d": [dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1,
                           rank_in=2, rank_out=3, bias=False)],
    "CPConv2d": [dict(in_channels=4, out_channels=5, kernel_size=3, stride=1, padding=1,
                      rank=7, bias=True)],
    "BatchNorm1d": [dict(num_features=4, eps=1e-3, momentum=0.2)],
    "BatchNorm2d": [dict(num_features=3, eps=1e-5, momentum=0.1)],
    "ReLU": [{}],
    "Flatten": [{}],
    "MaxPool2d": [dict(kernel_size=3, stride=2, padding=1)],
    "AvgPool2d": [dict(kernel_size=2, stride=2, padding=0), dict(kernel_size=None, stride=None,
                                                                  padding=0)],
    "GlobalAvgPool2d": [{}],
    "Dropout": [dict(p=0.25, seed=12)],
}


def test_every_registered_type_is_covered():
    assert set(CONFIGS) == set(LAYER_TYPES)


@pytest.mark.parametrize("kind,config", [(k, c) for k, cs in CONFIGS.items() for c in cs])
def test_registry_matches_the_layer(kind, config):
    """Config round trip, and the shapes computed from the config are the constructed layer's."""
    entry = LAYER_TYPES[kind]
    layer = entry.cls(**config)
    assert layer_type_name(layer) == kind
    assert layer.layer_config() == config
    assert entry.check_config(layer.layer_config()) == config
    params, buffers = model_tensors(layer)
    assert params == entry.params(config)
    assert buffers == entry.buffers(config)


def test_subclass_of_a_layer_is_not_that_layer():
    class MyLinear(mdn.Linear):
        pass
    assert layer_type_name(MyLinear(2, 2)) is None


# ---------------------------------------------------------------------- user networks
class Block(mdn.Model):
    """A nested Model with the default forward: recorded as a Sequential."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = mdn.Conv2d(c, c, 3, padding=1, groups=2)
        self.bn = mdn.BatchNorm2d(c)


class UserNet(mdn.Model):
    """Every layer type and both containers, without a forward of its own."""

    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__(width=8)
        rng = np.random.default_rng(3)
        self.stem = mdn.Sequential(mdn.Conv2d(3, 8, 3, padding=1, rng=rng), mdn.ReLU())
        self.res = mdn.Residual(
            mdn.Sequential(conv=mdn.Conv2d(8, 8, 3, padding=1, bias=False, rng=rng),
                           bn=mdn.BatchNorm2d(8)),
            shortcut=Block(8), post=mdn.ReLU())
        self.down = mdn.Residual(mdn.AvgPool2d(2), mdn.MaxPool2d(3, 2, 1))
        self.pool = mdn.GlobalAvgPool2d()
        self.flat = mdn.Flatten()
        self.bn1 = mdn.BatchNorm1d(8)
        self.drop = mdn.Dropout(0.3, seed=5)
        self.fc = mdn.Linear(8, 4, rng=rng)


def _randomize(model, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters (so buffers matter)."""
    rng = np.random.default_rng(seed)
    state = {k: (rng.random(v.shape) + 0.5).astype(np.float32) if "running" in k or "bn" in k
             else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)


def _logits(model, x: np.ndarray) -> np.ndarray:
    model.eval()
    b = model.backend
    return np.asarray(b.to_host(model.forward(b.from_host(x))))


def test_user_network_round_trip_without_its_class(tmp_path):
    model = UserNet().to(NumpyBackend())
    _randomize(model)
    model.fc.weight.to_csr()
    path = tmp_path / "user.h5"
    mdn.save(model, path)
    loaded = mdn.load(path)
    assert type(loaded) is mdn.Model and loaded.arch == "UserNet"
    assert loaded.input_shape == (3, 8, 8) and loaded.config == {"width": 8}
    assert loaded.fc.weight.is_sparse
    x = np.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_logits(loaded, x), _logits(model, x))
    # the rebuilt model records the same tree: it saves and loads again
    mdn.save(loaded, tmp_path / "again.h5")
    np.testing.assert_array_equal(_logits(mdn.load(tmp_path / "again.h5"), x), _logits(model, x))


@pytest.mark.parametrize("arch,config", [("lenet5", {}), ("resnet32", {"blocks_per_stage": 1})])
def test_zoo_record_computes_what_the_zoo_class_does(arch, config):
    """The record of a zoo model rebuilds a network with the same outputs (ResNet-32's wiring:
    Residual blocks with a post ReLU, projections as shortcuts)."""
    model = zoo.build_model(arch, **config).to(NumpyBackend())
    _randomize(model)
    record = arch_io.record_architecture(model)
    assert record["zoo"] is True and record["module"] is not None
    rebuilt = arch_io.build_from_record(json.loads(json.dumps(record)), "test").to(NumpyBackend())
    rebuilt.load_state_dict(model.state_dict())
    x = np.random.default_rng(2).standard_normal((3,) + model.input_shape).astype(np.float32)
    np.testing.assert_array_equal(_logits(rebuilt, x), _logits(model, x))


@pytest.mark.parametrize("arch", sorted(zoo.MODELS))
def test_zoo_records_declare_the_zoo_tensors(arch):
    model = zoo.build_model(arch)
    record = arch_io.record_architecture(model)
    assert arch_io.expected_tensors(record, "test") == model_tensors(model)


# ---------------------------------------------------------------------- what cannot be recorded
class CustomForward(mdn.Model):
    input_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.a = mdn.Linear(4, 3)
        self.b = mdn.Linear(4, 3)

    def forward(self, x):  # two branches summed: no minidnn container says this
        return self.backend.add(self.a.forward(x), self.b.forward(x))

    def backward(self, dy, need_dx=False):
        self.a.backward(dy, False)
        self.b.backward(dy, False)


class Swish(mdn.Module):
    def forward(self, x):
        return x

    def backward(self, dy, need_dx=True):
        return dy


def test_custom_forward_is_refused_at_save_then_loads_into_its_class(tmp_path):
    model = CustomForward().to(NumpyBackend())
    path = tmp_path / "custom.h5"
    with pytest.raises(ModelFileError, match=r"CustomForward with its own forward\(\).*"
                                             r"architecture=False.*model=CustomForward"):
        mdn.save(model, path)
    assert not path.exists()
    mdn.save(model, path, architecture=False)
    with pytest.raises(ModelFileError, match=r"weights .* model=CustomForward"):
        mdn.load(path)
    into = mdn.load(path, model=CustomForward())
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(_logits(into, x), _logits(model, x))
    assert "only into an instance" in mdn.describe(path)


def test_foreign_layer_type_is_refused_at_save(tmp_path):
    model = mdn.Sequential(fc=mdn.Linear(2, 2), act=Swish())
    with pytest.raises(ModelFileError, match="'act' is a Swish, not a minidnn layer"):
        mdn.save(model, tmp_path / "x.h5")


# ---------------------------------------------------------------------- loading into a class
def test_load_into_an_instance_checks_every_name_and_shape(tmp_path):
    model = UserNet().to(NumpyBackend())
    _randomize(model)
    path = tmp_path / "user.h5"
    mdn.save(model, path)
    target = UserNet()
    assert mdn.load(path, model=target) is target
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_logits(target, x), _logits(model, x))

    class Other(mdn.Model):
        def __init__(self) -> None:
            super().__init__()
            self.stem = mdn.Sequential(mdn.Conv2d(3, 4, 3, padding=1), mdn.ReLU())
            self.fc = mdn.Linear(8, 5)
            self.extra = mdn.Linear(2, 2)
    other = Other()
    before = other.fc.weight.host_dense().copy()
    with pytest.raises(ModelFileError) as info:
        mdn.load(path, model=other)
    message = str(info.value)
    assert "\n" not in message
    for part in ("missing ['extra.bias', 'extra.weight']", "unexpected ['bn1.bias'",
                 "'stem.0.weight' has shape (8, 3, 3, 3) in the file but (4, 3, 3, 3)",
                 "'fc.weight' has shape (4, 8) in the file but (5, 8)"):
        assert part in message
    np.testing.assert_array_equal(other.fc.weight.host_dense(), before)  # untouched


def test_load_into_an_instance_on_another_backend(tmp_path, clb):
    model = UserNet().to(NumpyBackend())
    _randomize(model)
    mdn.save(model, tmp_path / "user.h5")
    target = mdn.load(tmp_path / "user.h5", backend=clb, model=UserNet().to(NumpyBackend()))
    assert target.backend is clb and target.bn1.backend is clb
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_logits(target, x), _logits(model, x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- reading is strict
@pytest.fixture
def user_file(tmp_path):
    model = UserNet().to(NumpyBackend())
    path = tmp_path / "user.h5"
    mdn.save(model, path)
    return path


def _edit_record(path, change) -> None:
    """Rewrite the architecture attribute with change(record) (a dict, or raw text) and reseal."""
    with h5py.File(path, "r+") as f:
        record = json.loads(f.attrs["architecture"])
        new = change(record)
        set_attrs(f, architecture=new if isinstance(new, str) else json.dumps(new))
        seal(f)


def _leaf(record, *names):
    node = record["module"]
    for name in names:
        node = next(c for c in node["children"] if c["name"] == name)
    return node


def _set(names, key, value):
    def change(record):
        _leaf(record, *names)[key] = value
        return record
    return change


def _config(names, key, value):
    def change(record):
        _leaf(record, *names)["config"][key] = value
        return record
    return change


def _nest(depth: int):
    def change(record):
        node = {"name": "fc", "type": "Linear",
                "config": _leaf(record, "fc")["config"]}
        for _ in range(depth):
            node = {"name": "s", "type": "Sequential", "children": [node]}
        record["module"]["children"] = [node]
        return record
    return change


def _many(count: int):
    def change(record):
        record["module"]["children"] = [{"name": f"r{i}", "type": "ReLU", "config": {}}
                                        for i in range(count)]
        return record
    return change


def _huge(record):
    _leaf(record, "fc")["config"].update(in_features=2 ** 31 - 1, out_features=2 ** 31 - 1)
    return record


BAD_RECORDS = {
    "unknown type": (_set(["fc"], "type", "Swish"), "unknown layer type 'Swish'"),
    "python path as type": (_set(["fc"], "type", "os.system"), "unknown layer type"),
    "not JSON": (lambda r: "{", "not valid JSON"),
    "deep JSON": (lambda r: "[" * 100_000 + "]" * 100_000, "not valid JSON|must be an object"),
    "too long": (lambda r: json.dumps(r) + " " * arch_io.MAX_TEXT, "characters"),
    "record keys": (lambda r: {**r, "extra": 1}, "keys"),
    "zoo not bool": (lambda r: {**r, "zoo": 0}, "'zoo'"),
    "input_shape": (lambda r: {**r, "input_shape": [3, -8, 8]}, "input_shape"),
    "num_classes bool": (lambda r: {**r, "num_classes": True}, "num_classes"),
    "bool as int": (_config(["fc"], "in_features", True), "'in_features' must be an integer"),
    "float as int": (_config(["fc"], "in_features", 8.0), "'in_features' must be an integer"),
    "string as bool": (_config(["fc"], "bias", "true"), "'bias' must be true or false"),
    "negative padding": (_config(["stem", "0"], "padding", -1), "'padding'"),
    "NaN eps": (_config(["bn1"], "eps", float("nan")), "'eps'"),
    "unknown argument": (_config(["fc"], "rng", 1), "unknown \\['rng'\\]"),
    "missing argument": (lambda r: (_leaf(r, "fc")["config"].pop("bias"), r)[1], "missing"),
    "extra node key": (_set(["fc"], "forward", "print"), "keys"),
    "dotted name": (_set(["fc"], "name", "a.b"), "invalid child name"),
    "reserved name": (_set(["fc"], "name", "forward"), "invalid child name 'forward'"),
    "dunder name": (_set(["fc"], "name", "__class__"), "invalid child name"),
    "duplicate names": (_set(["flat"], "name", "fc"), "duplicate"),
    "residual child": (lambda r: (_leaf(r, "res")["children"][0].update(name="side"), r)[1],
                       "Residual's children"),
    "residual without main": (lambda r: (_leaf(r, "down")["children"].pop(0), r)[1],
                              "needs a 'main'"),
    "root not Sequential": (lambda r: {**r, "module": {**r["module"], "type": "Residual"}},
                            "Residual's children|must be a Sequential"),
    "too deep": (_nest(arch_io.MAX_DEPTH + 1), "deeper"),
    "too many nodes": (_many(arch_io.MAX_NODES + 1), "more than"),
    "huge declared sizes": (_huge, "more than this minidnn loads"),
    "shape vs stored": (_config(["fc"], "out_features", 5), "'fc.weight' has shape \\(4, 8\\) in "
                                                           "the file but \\(5, 8\\)"),
    "groups vs stored": (_config(["stem", "0"], "groups", 3), "stem.0.weight"),
    "layer missing": (lambda r: (r["module"]["children"].pop(), r)[1], "unexpected"),
    "weights only": (lambda r: {**r, "module": None}, "architecture=False"),
    "constructor refuses": (_config(["down", "shortcut"], "padding", 2), "MaxPool2d: padding 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_fails_in_one_line_before_anything_is_built(user_file, case, monkeypatch):
    change, message = BAD_RECORDS[case]
    _edit_record(user_file, change)
    built = spy(monkeypatch, arch_io, "_build")
    with pytest.raises(ModelFileError, match=message) as info:
        mdn.load(user_file)
    assert "\n" not in str(info.value)
    # all but a constructor's own refusal is found from the record and the tensors alone
    assert bool(built) == (case == "constructor refuses")


def test_unknown_type_message(user_file):
    _edit_record(user_file, _set(["fc"], "type", "Swish"))
    with pytest.raises(ModelFileError) as info:
        mdn.load(user_file)
    assert str(info.value) == (
        f"{user_file}: architecture at 'fc': unknown layer type 'Swish' (minidnn has "
        f"AvgPool2d, BatchNorm1d, BatchNorm2d, CPConv2d, Conv2d, Dropout, Flatten, "
        f"GlobalAvgPool2d, Linear, LowRankLinear, MaxPool2d, ReLU, Tucker2Conv2d, Sequential, "
        f"Residual)")


# ---------------------------------------------------------------------- version 1 files
def _make_version_1(path) -> None:
    with h5py.File(path, "r+") as f:
        del f.attrs["architecture"]
        set_attrs(f, format_version=1)
        seal(f)


def test_version_1_zoo_file_still_loads(tmp_path):
    model = zoo.build_model("lenet5").to(NumpyBackend())
    path = tmp_path / "v1.h5"
    mdn.save(model, path)
    _make_version_1(path)
    loaded = mdn.load(path)
    assert type(loaded) is zoo.LeNet5
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(_logits(loaded, x), _logits(model, x))
    assert "format version 1" in mdn.describe(path)


def test_version_1_file_of_another_class_says_how_to_upgrade(user_file):
    _make_version_1(user_file)
    with pytest.raises(ModelFileError, match="unknown architecture 'UserNet'.*version 1.*"
                                             "model=YourNet"):
        mdn.load(user_file)
    upgraded = mdn.load(user_file, model=UserNet())
    mdn.save(upgraded, user_file)
    assert type(mdn.load(user_file)) is mdn.Model


def test_zoo_subclass_is_not_loaded_as_the_zoo_class(tmp_path):
    class Wider(zoo.LeNet5):
        pass
    model = Wider()
    assert model.arch == "lenet5"
    mdn.save(model, tmp_path / "w.h5")
    loaded = mdn.load(tmp_path / "w.h5")
    assert type(loaded) is mdn.Model and loaded.arch == "lenet5"
