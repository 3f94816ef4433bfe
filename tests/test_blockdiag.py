"""Permuted block-diagonal weights (MPDCompress, issue 18): layouts, products against the dense
masked matrix, gradient checks, the MPD masks, training in block form, model files, the CLI.
(The block kernels' parity with NumPy on every device is in the table of test_opencl_nn_ops.)"""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from gradcheck import check_layer
from minidnn.blockdiag import BlockDiagMatrix, BlockLayout
from minidnn.compress.methods import get_method, sweep_variants
from minidnn.compress.mpd import MPDSettings, apply_mpd, blocks_value, plan_blocks
from minidnn.compress.sparsify import freeze_zeros, to_inference_form
from minidnn.errors import ConfigError, ModelFileError
from minidnn.io import load, load_checkpoint, save, save_checkpoint
from minidnn.io.h5 import seal
from minidnn.layers import Conv2d, Linear
from minidnn.models import build_model
from minidnn.optim import Adam
from minidnn.train import Trainer


# ---------------------------------------------------------------- layouts
def test_layout_is_seeded_balanced_and_covers_one_block_per_row():
    a = BlockLayout.random(30, 47, 4, np.random.default_rng(3))
    b = BlockLayout.random(30, 47, 4, np.random.default_rng(3))
    assert np.array_equal(a.row_perm, b.row_perm) and np.array_equal(a.col_perm, b.col_perm)
    assert a.block_shape == (8, 12)                     # ceil(30/4), ceil(47/4)
    mask = a.dense_mask()
    assert int(mask.sum()) == a.nnz == sum(r * c for r, c in zip([7, 8, 7, 8], [11, 12, 12, 12]))
    # permuted by the layout, the mask is block-diagonal
    p = mask[np.ix_(a.row_perm, a.col_perm)]
    for blk in range(4):
        r0, r1 = a.row_starts[blk], a.row_starts[blk + 1]
        c0, c1 = a.col_starts[blk], a.col_starts[blk + 1]
        assert p[r0:r1, c0:c1].all() and p[r0:r1].sum() == (r1 - r0) * (c1 - c0)


def test_layout_host_round_trip_and_channel_units():
    rng = np.random.default_rng(0)
    lay = BlockLayout.random(12, 6 * 9, 3, rng, unit=9)      # 6 channels of 3x3 taps
    dense = rng.standard_normal((12, 54)).astype(np.float32) * lay.dense_mask()
    assert np.array_equal(lay.to_dense(lay.from_dense(dense)), dense)
    per_channel = lay.dense_mask().reshape(12, 6, 9)
    assert np.all((per_channel == 0).all(axis=2) | (per_channel == 1).all(axis=2))
    assert lay.block_shape == (4, 18)


@pytest.mark.parametrize("rows,cols,blocks,unit", [(10, 20, 0, 1), (10, 20, 11, 1),
                                                   (30, 20, 21, 1), (10, 18, 3, 9),
                                                   (10, 20, True, 1), (10, 20, 2.0, 1)])
def test_bad_block_counts_are_config_errors(rows, cols, blocks, unit):
    with pytest.raises(ConfigError):
        BlockLayout.random(rows, cols, blocks, np.random.default_rng(0), unit)


# ---------------------------------------------------------------- products and gradients
@pytest.mark.parametrize("rows,cols,blocks,m", [(30, 47, 4, 9), (10, 100, 10, 3), (6, 6, 6, 2)])
def test_products_equal_the_masked_dense_matrix(np64, rng, rows, cols, blocks, m):
    lay = BlockLayout.random(rows, cols, blocks, rng)
    w = rng.standard_normal((rows, cols)) * lay.dense_mask()
    bd = BlockDiagMatrix.from_host(np64, lay, lay.from_dense(w))
    x, dy = rng.standard_normal((1, m, cols)), rng.standard_normal((1, m, rows))
    np.testing.assert_allclose(bd.matmul_t(x)[0], x[0] @ w.T, rtol=1e-12, atol=1e-12)
    grad = np.zeros(bd.blocks.shape)
    bd.outer_grad(dy, x, grad, accumulate=False)
    np.testing.assert_allclose(lay.to_dense(grad), (dy[0].T @ x[0]) * lay.dense_mask(),
                               rtol=1e-12, atol=1e-12)
    assert not np.any(grad * (1 - lay.padding_mask()))   # the padding gets no gradient
    np.testing.assert_allclose(bd.matmul(dy)[0], dy[0] @ w, rtol=1e-12, atol=1e-12)


def test_gradcheck_linear_with_blocks(np64, rng):
    layer = Linear(13, 8, rng=rng).to(np64)
    layer.weight.to_blockdiag(BlockLayout.random(8, 13, 3, rng))
    check_layer(layer, rng.standard_normal((5, 13)), rng)


@pytest.mark.parametrize("unit", [1, 9])
def test_gradcheck_conv_with_blocks(np64, rng, unit):
    conv = Conv2d(4, 6, 3, padding=1, rng=rng).to(np64)
    conv.weight.to_blockdiag(BlockLayout.random(6, 36, 2, rng, unit))
    check_layer(conv, rng.standard_normal((2, 4, 5, 5)), rng)


# ---------------------------------------------------------------- MPD masks and training
def test_plan_validates_against_each_layer(np32):
    model = build_model("lenet5").to(np32)
    assert set(plan_blocks(model, MPDSettings(blocks=10))) == {
        "features.conv1.weight", "features.conv2.weight", "classifier.fc1.weight",
        "classifier.fc2.weight"}
    assert "features.conv1.weight" not in plan_blocks(model, MPDSettings(convs=False))
    plan = plan_blocks(model, MPDSettings(conv_form="channels", blocks_per_layer="conv1=1"))
    assert "features.conv1.weight" not in plan
    layouts = apply_mpd(model, MPDSettings(conv_form="channels"))
    assert layouts["features.conv1.weight"].unit == 1     # 1 input channel: on the matrix
    assert layouts["features.conv2.weight"].unit == 25    # 20 input channels: on channels
    with pytest.raises(ConfigError, match="conv2"):      # 50 output channels, 51 blocks
        plan_blocks(build_model("lenet5").to(np32),
                    MPDSettings(conv_form="channels", blocks_per_layer="conv2=51"))
    with pytest.raises(ConfigError, match="fc2"):       # 10 outputs
        plan_blocks(model, MPDSettings(blocks=11))
    for bad in (MPDSettings(blocks=0), MPDSettings(conv_form="taps"),
                MPDSettings(blocks_per_layer="fc1=0"), MPDSettings(blocks_per_layer="nope=2")):
        with pytest.raises(ConfigError):
            plan_blocks(model, bad)
    assert blocks_value(10.0) == 10
    with pytest.raises(ConfigError):
        blocks_value(2.5)


def test_mpd_is_reproducible_and_trains_in_block_form(np32, rng):
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    outs, losses = [], []
    for _ in range(2):
        model = build_model("lenet300", seed=1).to(np32)
        layouts = apply_mpd(model, MPDSettings(blocks=10, seed=4))
        assert all(p.is_blockdiag for _, p in model.prox_parameters())
        trainer = Trainer(model, Adam(model.named_parameters(), lr=1e-3))
        losses.append([float(np.asarray(trainer.train_step(x, y)).reshape(-1)[0]) for _ in range(5)])
        outs.append(model.classifier.fc1.weight.host_dense())
        for name, p in model.prox_parameters():
            assert np.array_equal(p.host_dense() != 0, layouts[name].dense_mask() != 0)
            assert not np.any(np.asarray(p.values) * (1 - layouts[name].padding_mask()))
    assert np.array_equal(outs[0], outs[1])
    assert losses[0][-1] < losses[0][0]


def test_freeze_and_inference_keep_the_blocks(np32):
    model = build_model("lenet300").to(np32)
    apply_mpd(model, MPDSettings(blocks=5))
    p = model.classifier.fc1.weight
    np.asarray(p.values)[0, 0, :3] = 0.0                  # zeros inside a block
    freeze_zeros(model, "csr")
    assert p.is_blockdiag and p.mask.shape == p.values.shape
    to_inference_form(model, 0.5)
    assert p.is_blockdiag and p.mask is None


# ---------------------------------------------------------------- model files
def _mpd_model(backend, arch="lenet300", blocks=10, **kw):
    model = build_model(arch).to(backend)
    apply_mpd(model, MPDSettings(blocks=blocks, **kw))
    return model


def test_file_round_trip_and_size(np32, tmp_path, rng):
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    dense_path, path = tmp_path / "dense.h5", tmp_path / "mpd.h5"
    save(build_model("lenet300").to(np32), dense_path)
    model = _mpd_model(np32)
    save(model, path)
    loaded = load(path, backend=np32)
    assert all(p.is_blockdiag for _, p in loaded.prox_parameters())
    model.eval()
    np.testing.assert_array_equal(loaded(x), model(x))
    assert dense_path.stat().st_size / path.stat().st_size > 8   # header included
    with h5py.File(path) as f:
        g = f["params/classifier.fc1.weight"]
        assert set(g) == {"blocks", "row_perm", "col_perm"}   # no per-weight index
        stored = sum(g[k].id.get_storage_size() for k in g)
    assert 9 < 300 * 784 * 4 / stored < 12.5, stored  # ~ dense / B (padding, perms; gzip)


def test_checkpoint_round_trip_with_optimizer_state(np32, tmp_path, rng):
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int32)
    model = _mpd_model(np32, "lenet5", blocks=4)
    opt = Adam(model.named_parameters(), lr=1e-3)
    Trainer(model, opt).train_step(x, y)
    save_checkpoint(tmp_path / "c.h5", model, opt)
    other = _mpd_model(np32, "lenet5", blocks=4)
    opt2 = Adam(other.named_parameters(), lr=1e-3)
    load_checkpoint(tmp_path / "c.h5", other, opt2)
    a = np.asarray(Trainer(model, opt).train_step(x, y))
    b = np.asarray(Trainer(other, opt2).train_step(x, y))
    assert np.array_equal(a, b)


def _corrupt(path, edit):
    """Edit fc2's group and reseal the checksum, so the semantic checks are what is tested."""
    with h5py.File(path, "r+") as f:
        edit(f["params/classifier.fc2.weight"])
        seal(f)


@pytest.mark.parametrize("edit,match", [
    (lambda g: g["row_perm"].__setitem__(0, g["row_perm"][1]), "permutation"),
    (lambda g: g.attrs.__setitem__("blocks", 1000), "do not fit"),
    (lambda g: g.attrs.__setitem__("blocks", 5), "shape"),
    (lambda g: g["blocks"].__setitem__((0, 0, 0), np.nan), "finite|NaN"),
    (lambda g: g.attrs.__setitem__("unit", 7), "unit"),
    (lambda g: g.__delitem__("col_perm"), "col_perm"),
    (lambda g: g.attrs.__setitem__("groups", 2), "groups"),
])
def test_bad_block_files_are_model_file_errors(np32, tmp_path, edit, match):
    path = tmp_path / "m.h5"
    save(_mpd_model(np32, blocks=7), path)                 # fc2: 100 x 300 -> 7 blocks
    _corrupt(path, edit)
    with pytest.raises(ModelFileError, match=match):
        load(path, backend=np32)


def test_nonzero_padding_is_refused(np32, tmp_path):
    path = tmp_path / "m.h5"
    save(_mpd_model(np32, blocks=7), path)                 # fc2 blocks: 15 x 43, some short
    with h5py.File(path, "r+") as f:
        ds = f["params/classifier.fc2.weight/blocks"]
        data = ds[...]
        data[:, -1, -1] = 1.0
        ds[...] = data
        seal(f)
    with pytest.raises(ModelFileError, match="padding"):
        load(path, backend=np32)


# ---------------------------------------------------------------- the method and the CLI
def test_registered_for_sweeps_over_blocks():
    method = get_method("mpd")
    assert method.params == ("blocks",) and "mpd" in sweep_variants()


@pytest.mark.parametrize("args,message", [
    (["--method", "mpd", "--blocks", "0"], "blocks"),
    (["--method", "mpd", "--blocks", "11"], "fc3"),
    (["--method", "spc", "--blocks", "4"], "--method mpd"),
    (["--method", "mpd", "--target-sparsity", "0.9"], "l1 method"),
    (["--method", "mpd", "--blocks-per-layer", "fc9=2"], "fc9"),
])
def test_cli_rejects_bad_block_options(tmp_path, args, message):
    run = subprocess.run([sys.executable, "-m", "minidnn.cli", "train", "lenet300", "--steps", "1",
                          "--backend", "numpy", "--out", str(tmp_path / "m.h5"), *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


def test_inference_plan_fuses_block_linear_layers(np32, rng):
    from minidnn.inference import BlockLinearStep, InferencePlan, regular_logits
    model = _mpd_model(np32, blocks=4)
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    plan = InferencePlan(model, 5)
    assert sum(isinstance(s, BlockLinearStep) for s in plan.steps) == 3
    np.testing.assert_allclose(plan.logits(x), regular_logits(model, x, 5), rtol=1e-5,
                               atol=1e-5)


def test_method_run_trains_at_the_swept_blocks(np32, rng):
    from minidnn.compress.methods import MethodRun
    from minidnn.compress.sweep import SweepSpec
    from minidnn.data import dataset_from_arrays
    from minidnn.train_config import TrainConfig
    images = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    data = dataset_from_arrays(images, rng.integers(0, 10, 64))
    spec = SweepSpec(model="lenet300", data="arrays", train=TrainConfig(batch_size=16),
                     mpd=MPDSettings(blocks_per_layer="fc3=1"))
    model = build_model("lenet300").to(np32)
    records, _ = get_method("mpd").run(MethodRun(spec, model, data, data, 3, None,
                                                 lambda s: None, "blocks", 4.0))
    assert records[0]["method"] == "mpd" and records[0]["blocks"] == 4
    assert not model.classifier.fc3.weight.is_blockdiag          # the per-layer override
    fc1 = next(r for r in records[0]["layers"] if r["name"] == "fc1")
    assert fc1["nnz"] == 300 * 784 // 4


def test_inference_plan_runs_block_convs_as_direct_sparse_convs(np32, rng):
    from minidnn.inference import InferencePlan, SparseConvStep, regular_logits
    model = _mpd_model(np32, "lenet5", blocks=4)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    plan = InferencePlan(model, 3)
    assert sum(isinstance(s, SparseConvStep) for s in plan.steps) == 2
    np.testing.assert_allclose(plan.logits(x), regular_logits(model, x, 3), rtol=1e-4,
                               atol=1e-5)


def test_train_mpd_with_l1_inside_the_blocks(np32, mnist_dir, tmp_path):
    """--method mpd --lam: SpC within the blocks (more zeros than 1 - 1/B), the block form kept
    through saving; the result records the block settings."""
    from minidnn.workflows import TrainSpec, train_model
    out = tmp_path / "m.h5"
    result = train_model(TrainSpec(model="lenet300", method="mpd", backend="numpy", steps=30,
                                   lam=20.0, mpd=MPDSettings(blocks=4),
                                   data_root=str(mnist_dir.parent), out=str(out)),
                         log=lambda s: None)
    assert result["mpd"] == {"blocks": 4, "blocks_per_layer": None, "conv": "channels"}
    assert result["zeros"] > 0.76
    model = load(out, backend=np32)
    assert all(p.is_blockdiag for _, p in model.prox_parameters())
