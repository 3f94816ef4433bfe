"""Whole-network training: device residency, NumPy/OpenCL parity, LeNet-5 on real MNIST."""
from __future__ import annotations

import time

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.models import LeNet5
from minidnn.optim import ProxAdam
from minidnn.train import Trainer


def _batch(rng, n=16):
    return (rng.standard_normal((n, 1, 28, 28)).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int32))


def _step(backend, images, labels, seed=0):
    model = LeNet5(seed=seed).to(backend)
    trainer = Trainer(model, ProxAdam(model.named_parameters(), lr=0.001, lam=0.5))
    loss = trainer.train_step(images, labels)
    grads = {n: backend.to_host(p.grad) for n, p in model.named_parameters()}
    return float(backend.to_host(loss)[0]), grads, model.state_dict()


def test_training_step_transfers_only_the_batch_and_scalars(clb, rng):
    images, labels = _batch(rng, 32)
    model = LeNet5().to(clb)
    trainer = Trainer(model, ProxAdam(model.named_parameters(), lr=0.001, lam=0.5))
    trainer.train_step(images, labels)            # warm-up: optimizer state is created
    clb.synchronize()
    clb.transfers.reset()
    trainer.train_step(images, labels)
    t = clb.transfers
    assert (t.to_device, t.to_host) == (2, 0)
    assert t.bytes_to_device == images.nbytes + labels.nbytes
    trainer.running_loss()
    assert (t.to_host, t.bytes_to_host) == (1, 4)


def test_lenet5_training_step_parity(clb, rng):
    images, labels = _batch(rng)
    ref_loss, ref_grads, ref_state = _step(NumpyBackend(), images, labels)
    loss, grads, state = _step(clb, images, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for name, g in ref_grads.items():
        scale = np.abs(g).max() + 1e-12
        np.testing.assert_allclose(grads[name] / scale, g / scale, atol=2e-5, err_msg=name)
    for name, w in ref_state.items():
        # Adam's first step moves each weight by about lr: compare at that resolution, and
        # require the same zero set except for weights within float32 noise of the threshold
        np.testing.assert_allclose(state[name], w, atol=2e-6, err_msg=name)
        assert np.mean((state[name] == 0) != (w == 0)) < 1e-3, name


@pytest.mark.slow
def test_lenet5_mnist_short_run_is_accurate_and_sparse(mnist_dir):
    """Acceptance: a short Prox-Adam run reaches >= 97% test accuracy with >= 80% zeros."""
    from minidnn.cli import resolve_backend
    from minidnn.data import load_dataset
    backend = resolve_backend("auto", None)
    train, test = load_dataset("mnist", mnist_dir)
    model = LeNet5(seed=0).to(backend)
    trainer = Trainer(model, ProxAdam(model.named_parameters(), lr=0.001, lam=0.25))
    t0 = time.perf_counter()
    steps = 900 if backend.name == "opencl" else 400
    trainer.fit(train, None, steps, 128, progress=False)
    result = trainer.evaluate(test)
    zeros = trainer.zero_fraction()
    print(f"{backend.name}: {steps} steps in {time.perf_counter() - t0:.0f} s, "
          f"accuracy {result['accuracy']:.4f}, zeros {zeros:.4f}")
    assert result["accuracy"] >= 0.97
    assert zeros >= 0.80


def test_fit_stops_at_its_time_budget(rng):
    """``max_seconds`` ends a run early, between steps, and says so in the log."""
    from minidnn.data import ArrayDataset
    images, labels = _batch(rng, n=64)
    model = LeNet5(seed=0).to(NumpyBackend())
    trainer = Trainer(model, ProxAdam(model.named_parameters(), lr=1e-3, lam=0.1))
    lines = []
    data = ArrayDataset(images, labels, "random", [str(c) for c in range(10)])
    hist = trainer.fit(data, None, steps=10_000, batch_size=16,
                       progress=False, log=lines.append, max_seconds=0.5)
    assert 10 <= trainer.optimizer.step_count < 10_000
    assert hist.images == 16 * trainer.optimizer.step_count
    assert any("time budget" in line for line in lines)


def test_cli_resume_from_checkpoint_matches_uninterrupted_run(mnist_dir, tmp_path, capsys):
    """`minidnn train --checkpoint`: stopping after 3 steps and rerunning to 6 gives the same
    weights, bit for bit, as one uninterrupted 6-step run."""
    from minidnn.cli import main
    from minidnn.io import load
    common = ["train", "lenet5", "--data", "mnist", "--data-root", str(mnist_dir), "--backend",
              "numpy", "--batch-size", "32", "--no-progress", "--lam", "0.3"]
    ckpt = tmp_path / "run.ckpt.h5"
    assert main(common + ["--steps", "6", "--out", str(tmp_path / "straight.h5")]) == 0
    assert main(common + ["--steps", "3", "--checkpoint", str(ckpt), "--checkpoint-every", "3",
                          "--out", str(tmp_path / "first.h5")]) == 0
    assert ckpt.exists()
    capsys.readouterr()
    assert main(common + ["--steps", "6", "--checkpoint", str(ckpt), "--checkpoint-every", "3",
                          "--out", str(tmp_path / "resumed.h5")]) == 0
    assert "resumed from" in capsys.readouterr().out
    straight, resumed = load(tmp_path / "straight.h5"), load(tmp_path / "resumed.h5")
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(p.host_dense(), q.host_dense(), err_msg=name)


def test_batchnorm_recalibration_averages_fresh_batch_statistics(np32):
    """After recalibration a BN's running mean/var are the plain average of its per-batch
    statistics over the first k training batches; momentum is restored; no weight changes."""
    from minidnn.data import ArrayDataset, iterate_minibatches
    from minidnn.models import build_model

    rng = np.random.default_rng(5)
    data = ArrayDataset(rng.standard_normal((40, 3, 32, 32)).astype(np.float32),
                        rng.integers(0, 10, 40).astype(np.int32), "random",
                        [str(i) for i in range(10)])
    model = build_model("resnet32", blocks_per_stage=1).to(np32)
    trainer = Trainer(model, ProxAdam(model.named_parameters(), lr=0.001, lam=0.5))
    weights = {n: p.host_dense().copy() for n, p in model.named_parameters()}
    # 9 batch norms: bn1, two per block, two on the projection shortcuts
    assert trainer.recalibrate_batchnorm(data, batches=3, batch_size=8, seed=4) == 9
    means, variances = [], []
    for k, (images, _) in enumerate(iterate_minibatches(data, 8, shuffle=True, seed=4, epoch=0,
                                                         drop_last=True)):
        if k == 3:
            break
        y = model.conv1.forward(images)  # conv1's output feeds bn1
        means.append(y.mean(axis=(0, 2, 3)))
        variances.append(y.var(axis=(0, 2, 3)) * y[:, 0].size / (y[:, 0].size - 1))
    np.testing.assert_allclose(model.bn1.running_mean, np.mean(means, axis=0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(model.bn1.running_var, np.mean(variances, axis=0), rtol=1e-4)
    assert model.bn1.momentum == 0.1
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.host_dense(), weights[n], err_msg=n)
    assert trainer.recalibrate_batchnorm(data, batches=0) == 0
    lenet = LeNet5().to(np32)  # no batch norm: nothing to do
    assert Trainer(lenet, ProxAdam(lenet.named_parameters())).recalibrate_batchnorm(data) == 0


def test_cli_evaluate_reports_the_saved_models_accuracy(mnist_dir, tmp_path, capsys):
    """`minidnn evaluate` rebuilds a saved model and measures what `train` reported; --out saves
    it with the new figures; a missing file is a clear error (exit 2)."""
    import json
    import re

    from minidnn.cli import main
    from minidnn.io import load
    model_path, again = tmp_path / "m.h5", tmp_path / "again.h5"
    assert main(["train", "lenet5", "--data", "mnist", "--data-root", str(mnist_dir), "--backend",
                 "numpy", "--steps", "3", "--batch-size", "32", "--no-progress", "--out",
                 str(model_path), "--json", str(tmp_path / "m.json")]) == 0
    trained = json.loads((tmp_path / "m.json").read_text())["accuracy"]
    capsys.readouterr()
    assert main(["evaluate", str(model_path), "--data-root", str(mnist_dir), "--backend", "numpy",
                 "--bn-batches", "2", "--out", str(again)]) == 0
    out = capsys.readouterr().out
    measured = float(re.search(r"test accuracy ([0-9.]+)%", out).group(1)) / 100
    assert abs(measured - trained) <= 2e-4  # CSR vs dense summation order may flip an image
    assert "batch-norm" not in out  # LeNet-5 has none
    assert abs(load(again).metadata["accuracy"] - measured) < 1e-4
    assert main(["evaluate", str(tmp_path / "missing.h5")]) == 2
