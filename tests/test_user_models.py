"""Your own networks end to end: classes by spec, datasets from arrays, training, a file that
loads in another process without the class (same predictions on NumPy and OpenCL), the CLI."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minidnn as mdn
from conftest import OPENCL_DEVICES, opencl_backend_for
from minidnn.cli import main as cli_main
from minidnn.errors import ConfigError, DataError, ModelFileError, ShapeError
from minidnn.models import build_model, default_data, default_lam, load_model_class

NETS = textwrap.dedent('''
    import numpy as np
    import minidnn as mdn


    class TinyNet(mdn.Model):
        """The network of issue 13: conv, ReLU, pool, two linears; no forward of its own."""

        input_shape = (1, 28, 28)

        def __init__(self, seed: int = 0) -> None:
            super().__init__(seed=seed)
            rng = np.random.default_rng(seed)
            self.features = mdn.Sequential(conv=mdn.Conv2d(1, 8, 3, padding=1, rng=rng),
                                           relu=mdn.ReLU(), pool=mdn.MaxPool2d(2),
                                           flatten=mdn.Flatten())
            self.fc1 = mdn.Linear(1568, 64, rng=rng)
            self.relu = mdn.ReLU()
            self.fc2 = mdn.Linear(64, 10, rng=rng)


    class NoSeed(mdn.Model):
        def __init__(self) -> None:
            super().__init__()
            self.fc = mdn.Linear(4, 2)


    class Branches(mdn.Model):
        input_shape = (1, 28, 28)

        def __init__(self, seed: int = 0) -> None:
            super().__init__()
            self.flatten = mdn.Flatten()
            self.fc = mdn.Linear(784, 10)

        def forward(self, x):
            return self.fc.forward(self.flatten.forward(x))

        def backward(self, dy, need_dx=False):
            return self.flatten.backward(self.fc.backward(dy), need_dx)


    NOT_A_MODEL = 3
''')


@pytest.fixture(scope="module")
def nets_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "user_nets.py"
    path.write_text(NETS)
    return path


# ---------------------------------------------------------------------- specs and defaults
def test_file_spec(nets_file):
    cls = load_model_class(f"{nets_file}:TinyNet")
    assert cls.__name__ == "TinyNet" and issubclass(cls, mdn.Model)
    assert load_model_class(f"{nets_file}:TinyNet") is cls        # imported once
    model = build_model(f"{nets_file}:TinyNet", seed=3)
    assert model.config == {"seed": 3} and model.arch == "TinyNet"
    assert type(build_model(f"{nets_file}:NoSeed", seed=3)).__name__ == "NoSeed"


def test_package_module_spec(tmp_path, monkeypatch):
    package = tmp_path / "mynets_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "small.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mynets_pkg", raising=False)
    assert load_model_class("mynets_pkg.small:TinyNet").__name__ == "TinyNet"


@pytest.mark.parametrize("spec,message", [
    ("{nets}:Missing", "has no 'Missing'"),
    ("{nets}:NOT_A_MODEL", "not a subclass of minidnn.Model"),
    ("{dir}/absent.py:TinyNet", "no such file"),
    ("no_such_package_xyz.mod:TinyNet", "cannot import module"),
    ("{nets}:", "expected path/to/file.py:Class"),
    ("resnet9000", "unknown model 'resnet9000'.*path/to/file.py:Class"),
])
def test_bad_specs(nets_file, spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec.format(nets=nets_file, dir=nets_file.parent))


def test_default_data_and_lam(nets_file):
    tiny = build_model(f"{nets_file}:TinyNet")
    assert default_data(tiny) == "mnist" and default_data(build_model("resnet32")) == "cifar10"
    assert default_lam(tiny, "mnist")[0] == 0.3
    assert default_lam(tiny, "cifar10")[0] == pytest.approx(np.log(1.02))
    lam, why = default_lam(build_model("resnet32"), "mnist")
    assert lam == pytest.approx(np.log(1.001)) and "recipe of ResNet32" in why
    with pytest.raises(ConfigError, match="pass --data"):
        default_data(build_model(f"{nets_file}:NoSeed"))


# ---------------------------------------------------------------------- datasets from arrays
def test_dataset_from_arrays_trains_a_model():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((64, 2, 6, 6)).astype(np.float32)
    labels = (images[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64)
    data = mdn.dataset_from_arrays(images, labels)
    assert data.classes == ("0", "1") and data.labels.dtype == np.int32 and data.images is images

    class Net(mdn.Model):
        def __init__(self) -> None:
            super().__init__()
            self.flat = mdn.Flatten()
            self.fc = mdn.Linear(72, 2, rng=np.random.default_rng(0))
    model = Net().to(mdn.NumpyBackend())
    trainer = mdn.Trainer(model, mdn.ProxAdam(model.named_parameters(), lr=1e-2, lam=0.1))
    before = trainer.evaluate(data)["loss"]
    trainer.fit(data, None, steps=20, batch_size=16, progress=False)
    assert trainer.evaluate(data)["loss"] < before
    assert model.input_shape == (2, 6, 6)                 # inferred from the first batch


@pytest.mark.parametrize("images,labels,error,message", [
    (np.zeros((4, 1, 2, 2)), np.zeros(4, int), ShapeError, "float32"),
    (np.zeros((4, 2, 2), np.float32), np.zeros(4, int), ShapeError, r"\(N, C, H, W\)"),
    ([[[[0.0]]]], np.zeros(1, int), ShapeError, "float32 array"),
    (np.zeros((0, 1, 2, 2), np.float32), np.zeros(0, int), ShapeError, "no image"),
    (np.zeros((4, 1, 2, 2), np.float32), np.zeros(4, np.float32), ShapeError, "integers"),
    (np.zeros((4, 1, 2, 2), np.float32), np.zeros(3, int), ShapeError, r"shape \(4,\)"),
    (np.full((4, 1, 2, 2), np.nan, np.float32), np.zeros(4, int), DataError, "NaN"),
    (np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, -1, 0]), DataError, "0..1"),
])
def test_dataset_from_arrays_validates(images, labels, error, message):
    with pytest.raises(error, match=message):
        mdn.dataset_from_arrays(images, labels)


def test_dataset_from_arrays_labels_within_classes():
    with pytest.raises(DataError, match="0..1"):
        mdn.dataset_from_arrays(np.zeros((2, 1, 1, 1), np.float32), np.array([0, 2]),
                                classes=("a", "b"))


# ---------------------------------------------------------------------- another process
PREDICT = textwrap.dedent('''
    import sys
    import numpy as np
    import minidnn as mdn
    from minidnn.data import load_mnist

    path, backend, device, data_root, out = sys.argv[1:]
    b = mdn.get_backend(backend, None if device == "-" else device)
    model = mdn.load(path, backend=b)
    images = load_mnist(data_root)[1].images[:1000]
    model.eval()
    logits = b.to_host(model.forward(b.from_host(images)))
    user = [m for m in sys.modules if "user_nets" in m or m.startswith("minidnn_user_models")]
    assert not user, user
    np.save(out, logits)
''')


@pytest.fixture(scope="module")
def trained(nets_file, tmp_path_factory, mnist_dir):
    """TinyNet trained briefly with Prox-Adam on MNIST, in inference form, saved."""
    train, test = mdn.load_mnist(mnist_dir)
    model = build_model(f"{nets_file}:TinyNet").to(mdn.NumpyBackend())
    opt = mdn.ProxAdam(model.named_parameters(), lr=1e-3, lam=0.3)
    mdn.Trainer(model, opt).fit(train, None, steps=100, progress=False)
    assert "fc1.weight" in mdn.to_inference_form(model, max_density=0.8)
    path = tmp_path_factory.mktemp("saved") / "tiny.h5"
    mdn.save(model, path)
    return model, path, test.images[:1000], test.labels[:1000]


def _predict_elsewhere(path: Path, backend: str, device: str, mnist_dir, tmp_path) -> np.ndarray:
    script = tmp_path / "predict.py"
    script.write_text(PREDICT)
    out = tmp_path / "logits.npy"
    done = subprocess.run([sys.executable, str(script), str(path), backend, device,
                           str(mnist_dir), str(out)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


def _logits(model, images: np.ndarray) -> np.ndarray:
    model.eval()
    b = model.backend
    return np.asarray(b.to_host(model.forward(b.from_host(images))))


@pytest.mark.parametrize("where", ["numpy", *(f"opencl:{d}" for d in OPENCL_DEVICES)])
def test_loads_in_another_process_with_identical_predictions(trained, mnist_dir, tmp_path, where):
    """The file rebuilds TinyNet in a process that never imports its class: the logits of 1,000
    MNIST test images are bit for bit those of the original model on the same device."""
    model, path, images, labels = trained
    backend, _, device = where.partition(":")
    model.to(opencl_backend_for(device) if device else mdn.NumpyBackend())
    try:
        ours = _logits(model, images)
        theirs = _predict_elsewhere(path, backend, device or "-", mnist_dir, tmp_path)
        assert model.fc1.weight.is_sparse
    finally:
        model.to(mdn.NumpyBackend())
    np.testing.assert_array_equal(theirs, ours)
    np.testing.assert_array_equal(theirs.argmax(1), ours.argmax(1))
    print(f"{where}: 1000 MNIST test images, identical logits, accuracy of both "
          f"{np.mean(ours.argmax(1) == labels):.4f}")


# ---------------------------------------------------------------------- the command line
def test_cli_train_info_evaluate_on_a_user_class(nets_file, mnist_dir, tmp_path, capsys):
    out = tmp_path / "tiny.h5"
    assert cli_main(["train", f"{nets_file}:TinyNet", "--data-root", str(mnist_dir),
                     "--steps", "20", "--backend", "numpy", "--no-progress",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "note: lam 0.3: TinyNet has no recipe: the MNIST default" in text
    assert f"saved {out}" in text
    assert cli_main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "architecture: TinyNet" in text and "rebuilt from the module tree" in text
    assert "Linear(in_features=1568, out_features=64, bias=True)" in text
    assert cli_main(["evaluate", str(out), "--data-root", str(mnist_dir), "--backend",
                     "numpy"]) == 0
    assert "TinyNet on mnist (10000 test images)" in capsys.readouterr().out


def test_cli_refuses_an_unrecordable_class_before_training(nets_file, mnist_dir, capsys):
    assert cli_main(["train", f"{nets_file}:Branches", "--data-root", str(mnist_dir),
                     "--steps", "1", "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "Branches with its own forward()" in err and "architecture=False" in err


def test_weights_only_file_fails_in_one_line(tmp_path, nets_file):
    model = build_model(f"{nets_file}:Branches")
    mdn.save(model, tmp_path / "b.h5", architecture=False)
    with pytest.raises(ModelFileError) as info:
        mdn.load(tmp_path / "b.h5")
    assert "\n" not in str(info.value) and "model=Branches(...)" in str(info.value)
