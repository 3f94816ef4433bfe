"""Hardening (issue 14): every hostile-but-fair case ends with one clear line, a non-zero exit,
nothing lost, no traceback, no hang and no memory bomb. docs/reliability.md lists the cases."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

import minidnn.io.atomic as atomic
from minidnn.backend import NumpyBackend
from minidnn.cli import main
from minidnn.data import ArrayDataset, load_dataset
from minidnn.data.idx import read_idx
from minidnn.errors import (ConfigError, DataError, FileWriteError, ModelFileError,
                            TrainingDivergedError)
from minidnn.io import describe, load, save, save_checkpoint
from minidnn.io.h5 import seal, set_attrs
from minidnn.models import LeNet5
from minidnn.optim import SGD, Adam
from minidnn.train import Trainer

REPO = Path(__file__).resolve().parents[1]
MNIST_FILES = {("train", 0): "train-images-idx3-ubyte.gz", ("train", 1): "train-labels-idx1-ubyte.gz",
               ("test", 0): "t10k-images-idx3-ubyte.gz", ("test", 1): "t10k-labels-idx1-ubyte.gz"}


# ---------------------------------------------------------------------- helpers
def idx_bytes(a: np.ndarray) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return (0x0800 | a.ndim).to_bytes(4, "big") + dims + a.astype(np.uint8).tobytes()


def fake_mnist(folder: Path, n_train: int = 64, n_test: int = 16) -> Path:
    """A tiny MNIST folder of gzipped IDX files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        arrays = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        for k, a in enumerate(arrays):
            (folder / MNIST_FILES[split, k]).write_bytes(gzip.compress(idx_bytes(a), 1))
    return folder


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "lenet5", "--data-root", str(root), "--backend", "numpy", "--steps", "2",
            "--batch-size", "16", "--no-progress", "--log-every", "1", "--bn-batches", "0",
            "--out", str(out), *extra]


def one_error_line(capsys) -> str:
    """The command's stderr: exactly one line, no traceback; returned for matching."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    return fake_mnist(tmp_path / "mnist")


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "lenet.h5"
    save(LeNet5().to(NumpyBackend()), path)
    return path


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any training step runs (outputs must be checked before training)."""
    def refuse(self, *a, **k):
        raise AssertionError("training started")
    monkeypatch.setattr(Trainer, "train_step", refuse)


def tamper(path: Path, edit, reseal: bool = True) -> Path:
    with h5py.File(path, "r+") as f:
        edit(f)
        if reseal:
            seal(f)
    return path


@contextlib.contextmanager
def tmpfs(folder: Path, *options: str):
    """A 1 MiB tmpfs at ``folder`` (root only; skipped where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    opts = ",".join(("size=1m",) + options)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> None:
    """Fill a file system completely."""
    with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        for size in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * size):
                    pass


# ---------------------------------------------------------------------- 1. hang
def test_training_set_smaller_than_a_batch_fails_at_once(tmp_path):
    """100 training images and the default batch of 128: an error in seconds, not a hang."""
    root = fake_mnist(tmp_path / "small", n_train=100)
    cmd = [sys.executable, "-m", "minidnn.cli", "train", "lenet5", "--data-root", str(root),
           "--backend", "numpy", "--steps", "5", "--out", str(tmp_path / "m.h5")]
    done = subprocess.run(["timeout", "120"] + cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "has 100 images, fewer than one batch of 128" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "m.h5").exists()


def test_empty_or_too_small_training_set(tmp_path):
    """0 images is a DataError at loading; a batch larger than the set a ConfigError in fit."""
    with pytest.raises(DataError, match="holds no images"):
        load_dataset("mnist", fake_mnist(tmp_path / "empty", n_train=0))
    train, _ = load_dataset("mnist", fake_mnist(tmp_path / "few", n_train=20))
    trainer = Trainer(LeNet5().to(NumpyBackend()), Adam(LeNet5().named_parameters()))
    with pytest.raises(ConfigError, match="fewer than one batch of 60001"):
        trainer.fit(train, None, steps=3, batch_size=60001, progress=False)


# ---------------------------------------------------------------------- 2. full disk
def test_save_on_a_full_disk_is_an_error_and_keeps_the_old_file(tmp_path):
    """ENOSPC: FileWriteError naming the problem (no segfault), the old file intact, no temp."""
    with tmpfs(tmp_path / "disk") as disk:
        old = disk / "m.h5"
        old.write_bytes(b"old contents")
        fill(disk)
        model = LeNet5().to(NumpyBackend())
        with pytest.raises(FileWriteError, match="space"):
            save(model, old)
        with pytest.raises(FileWriteError, match="space"):
            save_checkpoint(disk / "c.h5", model, Adam(model.named_parameters()))
        assert old.read_bytes() == b"old contents"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "m.h5"]


def test_cli_full_disk_at_the_final_save_rescues_the_model(tmp_path, mnist_root, capsys,
                                                           monkeypatch):
    """The trained model is written to the temp folder instead, and the line says where."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk)
        assert main(train_args(mnist_root, disk / "m.h5")) == 2
        err = one_error_line(capsys)
    assert "space left" in err and "saved to" in err
    rescued = list((tmp_path / "rescue").glob("minidnn-rescued-*-m.h5"))
    assert len(rescued) == 1 and str(rescued[0]) in err
    assert load(rescued[0]).arch == "lenet5"


def test_cli_full_disk_at_a_checkpoint_rescues_it(tmp_path, mnist_root, capsys, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk)  # an empty file (the output check's probe) still fits; no checkpoint does
        rc = main(train_args(mnist_root, tmp_path / "m.h5", "--checkpoint",
                             str(disk / "c.h5"), "--checkpoint-every", "1"))
    assert rc == 2
    err = one_error_line(capsys)
    assert "checkpoint was saved to" in err
    assert list((tmp_path / "rescue").glob("minidnn-rescued-*-c.h5"))


# ---------------------------------------------------------------------- 3. memory bombs
def test_never_written_dataset_is_refused_before_reading(model_file, capsys):
    """1.6 KB declaring 2.5e8 floats: refused from its declared vs stored size, not read."""
    tamper(model_file, lambda f: f["params"].create_dataset(
        "bomb", shape=(250_000_000,), dtype="f4", chunks=(1 << 20,)), reseal=False)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="declares 1,000,000,000 bytes but stores only 0"):
            describe(model_file)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    assert main(["info", str(model_file)]) == 2
    assert "stores only 0" in one_error_line(capsys)


def test_config_larger_than_the_file_is_refused_before_building(model_file):
    """num_classes=200000 would build a 100M-weight layer; the file's weight count stops it."""
    tamper(model_file, lambda f: set_attrs(f, config=json.dumps({"num_classes": 200000})))
    t0 = time.perf_counter()
    for read in (load, describe):
        with pytest.raises(ModelFileError, match="describes a larger lenet5"):
            read(model_file)
    assert time.perf_counter() - t0 < 5


def test_declared_parameter_shape_is_capped(model_file):
    """A CSR weight claiming 2^40 x 2^40 is refused before a dense copy is made."""
    tamper(model_file, lambda f: set_attrs(f["params/classifier.fc1.weight"],
                                           shape=np.array([1 << 40, 1 << 40], np.int64)))
    with pytest.raises(ModelFileError, match="more than a minidnn model holds"):
        load(model_file)


def test_idx_gz_header_is_checked_before_decompressing(tmp_path):
    """A .gz that expands to 64 MiB behind a 10-image header: refused, reading ~8 KB of it."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(idx_bytes(np.zeros((10, 28, 28), np.uint8)))
        for _ in range(64):
            f.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="longer than its header says"):
            read_idx(path, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    huge = tmp_path / "huge.gz"
    huge.write_bytes(gzip.compress((0x0803).to_bytes(4, "big") + b"\xff\xff\xff\xff" * 3))
    with pytest.raises(DataError, match="more than"):
        read_idx(huge, 3)


# ---------------------------------------------------------------------- 4. output paths
@pytest.mark.parametrize("flag", ["--out", "--json", "--checkpoint"])
def test_output_that_is_a_folder_fails_before_training(tmp_path, mnist_root, capsys,
                                                       no_training, flag):
    args = train_args(mnist_root, tmp_path / "m.h5")
    args += [flag, str(tmp_path)]
    assert main(args) == 2
    assert f"{flag} {tmp_path}: is a folder" in one_error_line(capsys)


def test_output_on_a_read_only_mount_fails_before_training(tmp_path, mnist_root, capsys,
                                                           no_training):
    with tmpfs(tmp_path / "ro", "ro") as ro:
        assert main(train_args(mnist_root, ro / "m.h5")) == 2
    assert "cannot write in" in one_error_line(capsys)


def test_os_errors_and_interrupts_are_one_line(monkeypatch, model_file, capsys):
    import minidnn.io
    for exc, code, text in ((PermissionError(13, "Permission denied", "x"), 1, "Permission"),
                            (KeyboardInterrupt(), 130, "interrupted")):
        def boom(path, exc=exc):
            raise exc
        monkeypatch.setattr(minidnn.io, "describe", boom)
        assert main(["info", str(model_file)]) == code
        assert text in one_error_line(capsys)


# ---------------------------------------------------------------------- 5. divergence
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
@pytest.mark.parametrize("optimizer,lr", [("adam", "1e3"), ("sgd", "1e30")])
def test_diverging_training_stops_without_saving(tmp_path, mnist_root, capsys, optimizer, lr):
    out = tmp_path / "m.h5"
    rc = main(train_args(mnist_root, out, "--optimizer", optimizer, "--lr", lr, "--steps", "20"))
    assert rc == 2 and not out.exists()
    assert "training diverged at step" in one_error_line(capsys)


def test_trainer_check_loss():
    trainer = Trainer(LeNet5().to(NumpyBackend()), max_loss=10.0)
    trainer.check_loss(9.0, 1)
    for bad in (float("nan"), float("inf"), 11.0):
        with pytest.raises(TrainingDivergedError):
            trainer.check_loss(bad, 2)


# ---------------------------------------------------------------------- 6-7. arguments
BAD_ARGS = [["--lr", "nan"], ["--lr", "inf"], ["--lr", "-1"], ["--lam", "nan"],
            ["--epochs", "-1"], ["--epochs", "0"], ["--steps", "0"], ["--steps", "-5"],
            ["--csr-density", "5"], ["--csr-density", "-1"], ["--minutes", "-1"],
            ["--retrain-steps", "-3"], ["--bn-batches", "-1"], ["--eval-every", "-1"],
            ["--batch-size", "0"], ["--log-every", "0"], ["--checkpoint-every", "0"],
            ["--seed", "-1"], ["--momentum", "1.5"], ["--backend", "numpy", "--device", "0:0"]]


@pytest.mark.parametrize("bad", BAD_ARGS, ids=[" ".join(b) for b in BAD_ARGS])
def test_nonsense_arguments_are_usage_errors(tmp_path, capsys, no_training, bad):
    assert main(["train", "lenet5", "--out", str(tmp_path / "m.h5"), *bad]) == 2
    err = one_error_line(capsys)
    assert ("--device applies only to the OpenCL backend" in err if "--device" in bad
            else f"argument {bad[0]}" in err)


@pytest.mark.parametrize("command", [["mm", "lenet5", "--mu0", "-1"],
                                     ["prune", "lenet5", "--sparsity", "2"],
                                     ["sweep", "lenet5", "--method", "spc", "--jobs", "0"],
                                     ["evaluate", "m.h5", "--batch-size", "0"],
                                     ["plot", "x", "--fraction", "nan"]])
def test_nonsense_arguments_of_other_commands(capsys, command):
    assert main(command) == 2
    assert "error: argument" in one_error_line(capsys)


@pytest.mark.parametrize("key", ["config", "metadata"])
def test_deeply_nested_json_is_a_model_file_error(model_file, capsys, key, tmp_path,
                                                  mnist_root):
    tamper(model_file, lambda f: set_attrs(f, **{key: "[" * 100_000 + "]" * 100_000}))
    for read in (load, describe):
        with pytest.raises(ModelFileError, match="nests JSON deeper than"):
            read(model_file)
    for command in (["info", str(model_file)],
                    ["evaluate", str(model_file), "--backend", "numpy",
                     "--data-root", str(mnist_root)]):
        assert main(command) == 2
        assert "nests JSON deeper" in one_error_line(capsys)
    tamper(model_file, lambda f: set_attrs(f, **{key: json.dumps(
        {"a": json.loads("[" * 40 + "]" * 40)})}))
    with pytest.raises(ModelFileError, match="nests JSON deeper than 32"):
        load(model_file)


def _interrupt_at(monkeypatch, step: int) -> None:
    """Deliver a real SIGINT in the middle of training step ``step``."""
    real = Trainer.train_step
    count = [0]

    def train_step(self, *a, **k):
        count[0] += 1
        if count[0] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *a, **k)
    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_ctrl_c_writes_a_checkpoint_and_the_rerun_resumes_exactly(tmp_path, mnist_root,
                                                                  capsys, monkeypatch):
    ckpt = tmp_path / "c.h5"
    common = ["--steps", "6", "--checkpoint-every", "100", "--lam", "0.3"]
    assert main(train_args(mnist_root, tmp_path / "straight.h5", *common)) == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        rc = main(train_args(mnist_root, tmp_path / "resumed.h5", *common,
                             "--checkpoint", str(ckpt)))
    assert rc == 130 and not (tmp_path / "resumed.h5").exists()
    assert f"interrupted (Ctrl-C) at step 3: checkpoint saved to {ckpt}" in one_error_line(capsys)
    assert main(train_args(mnist_root, tmp_path / "resumed.h5", *common,
                           "--checkpoint", str(ckpt))) == 0
    assert "resumed from" in capsys.readouterr().out
    straight, resumed = load(tmp_path / "straight.h5"), load(tmp_path / "resumed.h5")
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(p.host_dense(), q.host_dense(), err_msg=name)


def test_ctrl_c_without_checkpoint_says_nothing_was_kept(tmp_path, mnist_root, capsys,
                                                         monkeypatch):
    _interrupt_at(monkeypatch, 1)
    assert main(train_args(mnist_root, tmp_path / "m.h5")) == 130
    assert "nothing saved" in one_error_line(capsys)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------- 8. smaller ones
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temp_files_are_removed_on_the_next_save(tmp_path):
    path = tmp_path / "m.h5"
    dead = tmp_path / f".m.h5.{_dead_pid()}-0123abcd.tmp"
    legacy_old = tmp_path / ".m.h5.89abcdef.tmp"
    live = tmp_path / f".m.h5.{os.getppid()}-feedbeef.tmp"
    other = tmp_path / f".other.h5.{_dead_pid()}-0123abcd.tmp"
    for p in (dead, legacy_old, live, other):
        p.write_bytes(b"partial")
    os.utime(legacy_old, (time.time() - 2 * atomic.STALE_SECONDS,) * 2)
    save(LeNet5().to(NumpyBackend()), path)
    assert not dead.exists() and not legacy_old.exists()
    assert live.exists() and other.exists()  # a running writer's, another file's


def test_sigkill_during_save_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "m.h5"
    save(LeNet5().to(NumpyBackend()), path)
    before = path.read_bytes()
    code = ("import os, signal, minidnn.io.atomic as a\n"
            "def stop(fd, data):\n"
            "    os.write(fd, bytes(data[:1000])); os.kill(os.getpid(), signal.SIGKILL)\n"
            "a._write_all = stop\n"
            "from minidnn.io import save\nfrom minidnn.models import LeNet5\n"
            "from minidnn.backend import NumpyBackend\n"
            f"save(LeNet5(seed=1).to(NumpyBackend()), {str(path)!r})\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO)
    assert done.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert len(list(tmp_path.glob(".m.h5.*.tmp"))) == 1
    save(LeNet5().to(NumpyBackend()), path)
    assert not list(tmp_path.glob(".m.h5.*.tmp"))


def test_overwrite_keeps_the_file_mode_and_fsyncs_the_folder(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(
        stat.S_ISDIR(os.fstat(fd).st_mode)) or real(fd))
    save(LeNet5().to(NumpyBackend()), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert synced == [False, True]  # the temp file, then the folder after the rename


def test_info_escapes_and_cuts_file_strings(model_file, capsys):
    metadata = {"evil": "\x1b]0;owned\x07\x1b[31mred", "big": "x" * 2_000_000,
                **{f"k{i}": i for i in range(100)}}
    tamper(model_file, lambda f: set_attrs(f, metadata=json.dumps(metadata),
                                           created="\x1b[2Jtoday\u202e"))
    assert main(["info", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\u001b[31mred" in out
    assert "\\x1b[2Jtoday\\u202e" in out
    assert len(out) < 40_000 and "more characters" in out and "more entries" in out


def test_long_file_strings_in_errors_are_cut(model_file, capsys):
    tamper(model_file, lambda f: set_attrs(f, arch="\x1b[2J" + "x" * 5_000_000))
    assert main(["info", str(model_file)]) == 2
    err = one_error_line(capsys)
    assert "unknown architecture" in err and len(err) < 1000 and "\x1b" not in err


def test_info_refuses_what_load_refuses(model_file, capsys):
    tamper(model_file, lambda f: set_attrs(f, config=json.dumps({"num_classes": 11})))
    with pytest.raises(ModelFileError):
        load(model_file)
    assert main(["info", str(model_file)]) == 2
    assert "shape" in one_error_line(capsys)


def test_info_on_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    done = subprocess.run(["timeout", "60", sys.executable, "-m", "minidnn.cli", "info",
                           str(fifo)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "not a regular file" in done.stderr


def test_missing_data_root_is_an_error_not_a_fallback(tmp_path, monkeypatch, capsys,
                                                      no_training):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", tmp_path / "typo")
    monkeypatch.setenv("MINIDNN_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataError, match=r"\$MINIDNN_DATA\) does not exist"):
        load_dataset("mnist")
    assert main(train_args(tmp_path / "typo", tmp_path / "m.h5")) == 2
    assert "does not exist" in one_error_line(capsys)
