"""Compression methods on a tiny conv net and separable synthetic data (NumPy backend, seconds)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.compress import (LCState, MMConfig, TrainConfig, layer_lams, magnitude_mask,
                              mm_compress, prune, prune_retrain, retrain, sparsity_ramp,
                              top_kappa_masks, train_spc)
from minidnn.compress.results import best_records, format_summary, plot_results, write_csv
from minidnn.compress.sweep import SweepSpec, make_jobs, run_sweep
from minidnn.names import parse_layer_spec, per_layer, resolve_layers
from minidnn.data import ArrayDataset
from minidnn.errors import ConfigError
from minidnn.layers import Conv2d, Flatten, Linear, ReLU, Sequential
from minidnn.layers.model import Model

from synthetic import template_classes


CONFIG = TrainConfig(batch_size=32, log_every=1000, seed=0)


class Tiny(Model):
    """conv1 1->4 3x3 on 6x6 -> fc1 64->16 -> ReLU -> fc2 16->3 (1,108 weights)."""

    arch = "tiny"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        rng = np.random.default_rng(seed)
        self.net = Sequential(conv1=Conv2d(1, 4, 3, rng=rng), flatten=Flatten(),
                              fc1=Linear(64, 16, rng=rng), relu=ReLU(),
                              fc2=Linear(16, 3, rng=rng))

    def forward(self, x):
        return self.net.forward(x)

    def backward(self, dy, need_dx=False):
        return self.net.backward(dy, need_dx)


def synthetic(n: int = 384, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Three classes: fixed 6x6 templates plus noise (linearly separable)."""
    return template_classes(n, 6, seed)


@pytest.fixture(scope="module")
def data():
    return synthetic()


def tiny(seed: int = 0) -> Tiny:
    return Tiny(seed).to(NumpyBackend())


def zero_sets(model) -> dict[str, np.ndarray]:
    return {n: p.host_dense() == 0 for n, p in model.prox_parameters()}


def dense_model(data, steps: int = 60) -> Tiny:
    model = tiny()
    train_spc(model, data[0], None, steps, 0.0, CONFIG, log=lambda s: None)
    return model


# ---------------------------------------------------------------------- SpC
def test_spc_zero_set_grows_with_lam(data):
    zeros = []
    for lam in (0.0, 1.0, 4.0, 16.0):
        model = tiny()
        train_spc(model, data[0], None, 80, lam, CONFIG, log=lambda s: None)
        zeros.append(np.mean(np.concatenate([z.ravel() for z in zero_sets(model).values()])))
    assert zeros[0] == 0.0
    assert all(a <= b for a, b in zip(zeros, zeros[1:])), zeros
    assert zeros[-1] > 0.5


def test_spc_per_layer_lam_only_shrinks_the_named_layer(data):
    model = tiny()
    lam = layer_lams(model, 0.0, {"fc1": 20.0})
    assert lam == {"net.conv1.weight": 0.0, "net.fc1.weight": 20.0, "net.fc2.weight": 0.0}
    train_spc(model, data[0], None, 60, 0.0, CONFIG, lam_per_layer={"fc1": 20.0},
              log=lambda s: None)
    z = zero_sets(model)
    assert z["net.fc1.weight"].mean() > 0.3
    assert not z["net.conv1.weight"].any() and not z["net.fc2.weight"].any()


def test_layer_specs_parse_and_resolve():
    model = tiny()
    assert parse_layer_spec("fc1=0.5, conv1=1e-1") == {"fc1": 0.5, "conv1": 0.1}
    assert resolve_layers(model, {"fc1": 1, "net.conv1": 2, "net.fc2.weight": 3}) == {
        "net.fc1.weight": 1, "net.conv1.weight": 2, "net.fc2.weight": 3}
    with pytest.raises(ConfigError, match="fc9"):
        resolve_layers(model, {"fc9": 1})
    with pytest.raises(ConfigError):
        parse_layer_spec("fc1:0.5")


# ---------------------------------------------------------------------- debiasing
@pytest.mark.parametrize("form", ["mask", "csr"])
def test_retrain_never_revives_a_zero(data, form):
    model = tiny()
    train_spc(model, data[0], None, 60, 4.0, CONFIG, log=lambda s: None)
    before = zero_sets(model)
    weights = {n: p.host_dense().copy() for n, p in model.prox_parameters()}
    assert 0.1 < np.mean(np.concatenate([z.ravel() for z in before.values()])) < 0.95
    retrain(model, data[0], None, 40, CONFIG, form=form, lr=0.01, log=lambda s: None)
    for name, p in model.prox_parameters():
        after = p.host_dense()
        assert p.is_sparse == (form == "csr")
        assert (after[before[name]] == 0).all(), name            # no zero revived
        assert not np.allclose(after, weights[name]), name       # the survivors did train


# ---------------------------------------------------------------------- Pru
def test_magnitude_mask_exact_count_with_ties():
    w = np.array([[0.5, -0.5, 0.5, 0.1], [-0.5, 0.5, 0.2, -0.5]], np.float32)
    m = magnitude_mask(w, sparsity=0.5)                  # 4 zeros: 0.1, 0.2, then two 0.5 ties
    assert int((m == 0).sum()) == 4
    np.testing.assert_array_equal(m, [[0, 0, 1, 0], [1, 1, 0, 1]])  # ties: lower index first
    q = magnitude_mask(w, quality=1.0)
    np.testing.assert_array_equal(q == 0, np.abs(w) < np.abs(w).std())


@pytest.mark.parametrize("rounds", [1, 3])
def test_prune_hits_target_sparsity_exactly_per_layer(data, rounds):
    model = dense_model(data)
    for _, p in model.prox_parameters():   # many exact ties in magnitude
        p.data[...] = np.round(p.data * 4) / 4 + 0.01
    target = {"conv1": 0.5, "fc1": 0.9, "fc2": 0.3}
    info = prune_retrain(model, data[0], data[1], 20, sparsity=target, rounds=rounds,
                         config=CONFIG, log=lambda s: None)
    assert len(info) == rounds and "accuracy_retrained" in info[-1]
    for name, p in model.prox_parameters():
        want = int(round(target[name.split(".")[1]] * p.numel))
        assert int((p.host_dense() == 0).sum()) == want, name   # after retraining, still exact


def test_prune_per_layer_leaves_unnamed_layers_dense(data):
    model = dense_model(data, 10)
    target = per_layer(model, None, {"fc1": 0.8})
    prune_retrain(model, data[0], None, 5, sparsity=target, rounds=2, config=CONFIG,
                  log=lambda s: None)
    z = {n.split(".")[1]: int(v.sum()) for n, v in zero_sets(model).items()}
    assert z == {"conv1": 0, "fc1": round(0.8 * 1024), "fc2": 0}


def test_prune_keeps_earlier_pruning_and_sparsity_ramp():
    model = tiny()
    prune(model, sparsity=0.5)
    first = zero_sets(model)
    prune(model, sparsity=0.75)
    for name, z in zero_sets(model).items():
        assert z[first[name]].all()
    ramp = sparsity_ramp(0.97, 3)
    assert ramp[-1] == 0.97 and ramp == sorted(ramp)


# ---------------------------------------------------------------------- MM
def _lc_state(data, mu=0.05):
    model = dense_model(data, 20)
    state = LCState(model)
    rng = np.random.default_rng(1)
    for _, p, theta, lam in state.entries:   # some history: theta and multipliers nonzero
        theta[...] = p.data * (rng.random(p.shape) > 0.5)
        lam[...] = 0.01 * rng.standard_normal(p.shape)
    return model, state


def test_mm_l0_c_step_keeps_exactly_kappa(data):
    model, state = _lc_state(data)
    state.c_step(0.05, "l0", kappa=100)
    assert state.theta_nnz()[0] == 100
    shifted = {n: p.data - lam / 0.05 for n, p, _, lam in state.entries}
    flat = np.concatenate([np.abs(v).ravel() for v in shifted.values()])
    kept = np.concatenate([t.ravel() for _, _, t, _ in state.entries])
    assert np.abs(kept[kept != 0]).min() >= np.sort(flat)[-100]   # the largest ones survive
    state.c_step(0.05, "l0", kappa={"net.fc1.weight": 30, "net.fc2.weight": 5})
    nnz = {n: int((t != 0).sum()) for n, _, t, _ in state.entries}
    assert nnz == {"net.conv1.weight": 36, "net.fc1.weight": 30, "net.fc2.weight": 5}
    masks = top_kappa_masks({"a": np.array([1.0, -3.0, 2.0]), "b": np.array([3.0])}, 2)
    np.testing.assert_array_equal(masks["a"], [0, 1, 0])   # tie 3.0 vs 3.0: lower index first
    np.testing.assert_array_equal(masks["b"], [1])


def test_mm_l1_c_step_is_the_soft_threshold_and_multipliers_update(data):
    model, state = _lc_state(data)
    mu, alpha = 0.05, 0.002
    lams = {n: lam.copy() for n, _, _, lam in state.entries}
    state.c_step(mu, "l1", alpha=alpha)
    for name, p, theta, _ in state.entries:
        v = p.data - lams[name] / mu
        np.testing.assert_allclose(theta, np.sign(v) * np.maximum(np.abs(v) - alpha / mu, 0),
                                   atol=1e-6)
    for _, p, _, _ in state.entries:
        p.grad = np.zeros(p.shape, np.float32)
    state.add_penalty_gradient(mu)
    state.multiplier_step(mu)
    for name, p, theta, lam in state.entries:
        np.testing.assert_allclose(p.grad, mu * (p.data - theta) - lams[name], atol=1e-7)
        np.testing.assert_allclose(lam, lams[name] - mu * (p.data - theta), atol=1e-7)


@pytest.mark.parametrize("penalty", ["l0", "l1"])
def test_mm_compress_leaves_theta_in_the_model(data, penalty):
    model = dense_model(data)
    mm = MMConfig(penalty=penalty, kappa=120, alpha=0.01, lc_iters=3, l_steps=10, mu0=0.01,
                  mu_growth=2.0, lr=0.05)
    history = mm_compress(model, data[0], data[1], mm, CONFIG, log=lambda s: None)
    assert [h["iter"] for h in history] == [1, 2, 3] and "theta_accuracy" in history[-1]
    nnz = sum(int((p.host_dense() != 0).sum()) for _, p in model.prox_parameters())
    assert nnz == history[-1]["theta_nnz"]
    if penalty == "l0":
        assert nnz == 120
    zeros = zero_sets(model)
    retrain(model, data[0], None, 10, CONFIG, log=lambda s: None)   # frozen: stays theta's
    for name, z in zero_sets(model).items():
        assert z[zeros[name]].all()


def test_mm_l_step_copies_only_the_batch(clb, data):
    from minidnn.compress.mm import LCPenalty
    from minidnn.optim import SGD
    from minidnn.train import Trainer
    model = Tiny(0).to(clb)
    state = LCState(model)
    state.c_step(1e-4, "l0", kappa=300)
    opt = SGD(model.named_parameters(), lr=0.01, momentum=0.9)
    opt.add_hook(LCPenalty(state, 1e-4))
    trainer = Trainer(model, opt)
    x, y = data[0].images[:32], data[0].labels[:32]
    trainer.train_step(x, y)
    clb.synchronize()
    clb.transfers.reset()
    trainer.train_step(x, y)
    assert (clb.transfers.to_device, clb.transfers.to_host) == (2, 0)


# ---------------------------------------------------------------------- sweep, files, plot
def test_sweep_end_to_end_writes_csv_json_summary_and_plot(tmp_path):
    spec = SweepSpec(model="tiny", data="synthetic", train=CONFIG, steps=40, retrain_steps=10,
                     out=str(tmp_path), model_factory=Tiny, data_factory=synthetic, echo=False,
                     mm=MMConfig(lc_iters=2, l_steps=10, mu0=0.01, mu_growth=2.0))
    quiet = lambda s: None
    r1 = run_sweep(spec, make_jobs("spc+retrain", [0.5, 4.0], "lam"), log=quiet)
    assert not r1["failed"] and r1["reference"]["accuracy"] > 0.5
    assert (tmp_path / "reference.npz").exists()
    r2 = run_sweep(spec, make_jobs("pru", [0.5, 0.9], "sparsity"), log=quiet)  # reuses reference
    r3 = run_sweep(spec, make_jobs("mm", [0.8], "sparsity"), log=quiet)
    assert not (r2["failed"] or r3["failed"])
    methods = [r["method"] for r in r3["records"]]
    assert methods == ["spc", "spc", "spc+retrain", "spc+retrain", "pru", "pru", "pru+retrain",
                       "pru+retrain", "mm"]
    pru = [r for r in r3["records"] if r["method"] == "pru+retrain"]
    assert [r["zeros"] for r in pru] == pytest.approx([0.5, 0.9], abs=3 / 1108)
    mm = [r for r in r3["records"] if r["method"] == "mm"][0]
    assert mm["weights"] == 1108 and mm["nnz"] == round(0.2 * 1108)
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 10 and rows[0]["run"] == "reference" and "zeros:fc1" in rows[0]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["records"]) == 9 and saved["records"][0]["layers"][0]["name"] == "conv1"
    assert (tmp_path / "runs" / "spc+retrain-lam4.txt").read_text().count("\nTotal ") == 2
    assert "SpC (Retrain)" in (tmp_path / "summary.txt").read_text()
    if pytest.importorskip("matplotlib"):
        assert (tmp_path / "accuracy.png").stat().st_size > 1000
        from minidnn.cli import main
        assert main(["plot", str(tmp_path), "--out", str(tmp_path / "merged.png")]) == 0
        assert (tmp_path / "merged.png").exists()
        assert main(["plot", str(tmp_path), "--out", str(tmp_path / "zoom.png"), "--xmin", "0.6",
                     "--ymin", "0.1"]) == 0
        assert (tmp_path / "zoom.png").stat().st_size > 1000
        assert main(["plot", str(tmp_path), "--anchors", "lenet5", "--goal", "111,0.991",
                     "--methods", "spc+retrain", "--out", str(tmp_path / "anchors.png")]) == 0
        assert (tmp_path / "anchors.png").stat().st_size > 1000
        from minidnn.io import save
        model = tiny()
        model.net.fc1.weight.data[:, ::2] = 0.0                  # some zeros to count
        save(model, tmp_path / "m.h5", architecture=False,
             metadata={"accuracy": 0.97, "method": "l0", "retrain_steps": 10})
        assert main(["plot", "--anchors", "lenet300", "--files", str(tmp_path / "m.h5"),
                     "--out", str(tmp_path / "files.png")]) == 0
        assert (tmp_path / "files.png").stat().st_size > 1000
        for bad in (["--anchors", "lenet5", "--goal", "x"], ["--anchors", "lenet5", "--goal",
                                                             "0.5,0.99"]):
            assert main(["plot", str(tmp_path), *bad, "--out", str(tmp_path / "b.png")]) != 0


def test_summary_picks_most_compressed_run_within_one_percent(tmp_path):
    rec = lambda m, v, acc, z: {"method": m, "param": "lam", "value": v, "accuracy": acc,
                                "zeros": z, "compression": 1 / (1 - z), "nnz": 1, "weights": 2,
                                "layers": [{"name": "fc1", "nnz": 1, "total": 2, "zeros": z,
                                            "compression": 1 / (1 - z)}]}
    records = [rec("spc", 0.1, 0.985, 0.9), rec("spc", 0.2, 0.980, 0.95),
               rec("spc", 0.4, 0.90, 0.99), rec("pru", 0.9, 0.5, 0.9)]
    best = best_records(records, 0.985)        # bar: 0.975
    assert best["spc"]["value"] == 0.2 and "pru" not in best
    text = format_summary(records, {"accuracy": 0.985})
    assert "no run reached" in text and "95.00% (20x)" in text
    write_csv(tmp_path / "r.csv", records, {"accuracy": 0.99, "layers": []})
    assert len(list(csv.DictReader(open(tmp_path / "r.csv")))) == 5
    pytest.importorskip("matplotlib")
    assert plot_results(records, {"accuracy": 0.99}, tmp_path / "p.png").exists()


def test_make_jobs_rejects_wrong_parameter():
    with pytest.raises(ConfigError):
        make_jobs("pru", [0.1], "lam")
    assert make_jobs("mm", [0.9], "sparsity")[0].run_id == "mm-sparsity0.9"
