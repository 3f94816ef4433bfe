"""Backend parity of the nn primitives: one table of (primitive, shapes) run on NumPy (the
reference) and on every OpenCL device found, comparing every output and gradient at float32
tolerance. Each OpenCL case runs twice and must give bit-identical results (determinism)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

# work-item tiles of the OpenCL forward / input-gradient kernels: every key of cl_conv.TILES
# (test_every_conv_tile_is_in_the_table checks; not imported here: pyopencl is optional)
CONV_TILES = ("c16r1", "c8r2")


# ---------------------------------------------------------------- case runners
# A runner takes (backend, rng, **params), builds its inputs from rng (the same data on every
# backend), calls the primitives and returns {name: device array} of everything to compare.

def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_conv_lowering(be, rng, shape, kh, kw, stride, pad, groups, gpu_path=False):
    x = _normal(rng, shape)
    rows = be.im2row(be.from_host(x), kh, kw, stride, pad, groups)
    drows = _normal(rng, rows.shape)
    runtime = getattr(be, "runtime", None)  # OpenCL only
    is_cpu = runtime.is_cpu if runtime is not None else None
    if gpu_path and runtime is not None:
        runtime.is_cpu = False  # take the kernel path meant for GPUs on this device too
    try:
        dx = be.row2im(be.from_host(drows), shape, kh, kw, stride, pad, groups)
    finally:
        if runtime is not None:
            runtime.is_cpu = is_cpu
    return {"rows": rows, "dx": dx}


def run_direct_conv(be, rng, shape, out_channels, k, pad, groups, bias, tile):
    """conv2d, conv2d_input_grad and conv2d_weight_grad (stride 1; k: size or (kh, kw)); the
    weight gradient into zeros, accumulated onto random values, and overwriting them. tile: the
    work-item tile of the OpenCL forward / input-gradient kernels (cl_conv.TILES)."""
    ops = getattr(be, "conv", None)  # OpenCL only
    if ops is None:
        return _direct_conv(be, rng, shape, out_channels, k, pad, groups, bias)
    before, ops.tile = ops.tile, tile
    try:
        return _direct_conv(be, rng, shape, out_channels, k, pad, groups, bias)
    finally:
        ops.tile = before


def _direct_conv(be, rng, shape, out_channels, k, pad, groups, bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = be.from_host(_normal(rng, shape))
    w = be.from_host(_normal(rng, (out_channels, shape[1] // groups, kh, kw)))
    b = be.from_host(_normal(rng, (out_channels,))) if bias else None
    y = be.conv2d(x, w, b, pad, groups)
    dy = be.from_host(_normal(rng, y.shape))
    dw, dw_acc, dw_set = be.zeros(w.shape), be.from_host(_normal(rng, w.shape)), \
        be.from_host(_normal(rng, w.shape))
    be.conv2d_weight_grad(x, dy, kh, kw, pad, groups, dw)
    be.conv2d_weight_grad(x, dy, kh, kw, pad, groups, dw_acc, accumulate=True)
    be.conv2d_weight_grad(x, dy, kh, kw, pad, groups, dw_set, accumulate=False)
    return {"y": y, "dx": be.conv2d_input_grad(dy, w, shape, pad, groups), "dw": dw,
            "dw_acc": dw_acc, "dw_set": dw_set}


def run_channel_bias(be, rng, shape, accumulate):
    c = shape[1]
    x, bias, acc = be.from_host(_normal(rng, shape)), be.from_host(_normal(rng, (c,))), \
        be.from_host(_normal(rng, (c,)))
    be.add_channel_bias(x, bias)
    be.channel_sum(x, acc, accumulate=accumulate)
    return {"x_plus_bias": x, "channel_sum": acc}


def run_elementwise(be, rng, op, shape):
    a, b = _normal(rng, shape), _normal(rng, shape)
    da, db = be.from_host(a), be.from_host(b)
    if op == "relu":
        return {"y": be.relu(da)}
    if op == "relu_backward":
        return {"dx": be.relu_backward(db, be.relu(da))}
    if op == "add":
        out = be.add(da, db)
        be.add(da, db, out=db)  # aliased output
        return {"new": out, "in_place": db}
    if op == "add_relu":
        return {"y": be.add_relu(da, db)}
    if op == "mul":
        out = be.mul(da, db)
        be.mul(da, db, out=da)
        return {"new": out, "in_place": da}
    if op == "axpy":
        be.axpy(-0.75, da, db)
        return {"y": db}
    if op == "scale":
        be.scale(da, 1.5)
        return {"a": da}
    if op == "soft_threshold":
        new = be.soft_threshold(da, 0.5)
        be.soft_threshold(db, 0.25, out=db)
        return {"new": new, "in_place": db}
    if op == "apply_mask":
        be.apply_mask(da, be.from_host((b > 0).astype(np.float32)))
        return {"w": da}
    if op == "div_sqrt":
        db = be.from_host(b * b)  # a second moment: b >= 0
        new = be.div_sqrt(da, db, 1e-3)
        be.div_sqrt(da, db, 0.0, out=db)
        return {"new": new, "in_place": db}
    raise ValueError(op)


def run_dropout(be, rng, shape, p, seed, counter):
    return {"mask": be.dropout_mask(shape, p, seed, counter)}


def run_maxpool(be, rng, shape, k, stride, pad, ties=False):
    x = rng.integers(-3, 4, shape).astype(np.float32) if ties else _normal(rng, shape)
    y, argmax = be.maxpool2d(be.from_host(x), k, stride, pad)
    dy = be.from_host(_normal(rng, y.shape))
    dx = be.maxpool2d_backward(dy, argmax, shape)
    return {"y": y, "argmax": argmax, "dx": dx}


def run_avgpool(be, rng, shape, k, stride, pad):
    y = be.avgpool2d(be.from_host(_normal(rng, shape)), k, stride, pad)
    dx = be.avgpool2d_backward(be.from_host(_normal(rng, y.shape)), shape, k, stride, pad)
    return {"y": y, "dx": dx}


def run_softmax(be, rng, n, k, ties=False):
    z = rng.integers(0, 3, (n, k)).astype(np.float32) if ties else _normal(rng, (n, k), 3.0)
    logits = be.from_host(z)
    labels = be.from_host(rng.integers(0, k, n).astype(np.int32))
    loss, grad = be.softmax_cross_entropy(logits, labels)
    return {"loss": loss, "grad": grad, "correct": be.count_correct(logits, labels)}


def run_batchnorm(be, rng, shape, offset=0.5):
    c = shape[1]
    x = _normal(rng, shape, 2.0) + np.float32(offset)
    gamma, beta = _normal(rng, (c,)), _normal(rng, (c,))
    rm, rv = _normal(rng, (c,), 0.1), (1.0 + rng.random(c)).astype(np.float32)
    dgamma, dbeta = _normal(rng, (c,)), _normal(rng, (c,))
    d = {k: be.from_host(v) for k, v in dict(gamma=gamma, beta=beta, rm=rm, rv=rv,
                                             dgamma=dgamma, dbeta=dbeta).items()}
    y, xhat, inv_std = be.batchnorm_train(be.from_host(x), d["gamma"], d["beta"], d["rm"],
                                          d["rv"], 0.1, 1e-5)
    dx = be.batchnorm_backward(be.from_host(_normal(rng, shape)), xhat, inv_std, d["gamma"],
                               d["dgamma"], d["dbeta"])
    y_eval = be.batchnorm_eval(be.from_host(x), d["gamma"], d["beta"], d["rm"], d["rv"], 1e-5)
    return {"y": y, "xhat": xhat, "inv_std": inv_std, "running_mean": d["rm"],
            "running_var": d["rv"], "dx": dx, "dgamma": d["dgamma"], "dbeta": d["dbeta"],
            "y_eval": y_eval}


def run_batchnorm_relu(be, rng, shape):
    """batchnorm_relu_train / _backward (a BatchNorm then ReLU fused in training)."""
    c = shape[1]
    x = _normal(rng, shape, 2.0) + 0.3
    gamma, beta = _normal(rng, (c,)), _normal(rng, (c,))
    d = {k: be.from_host(v) for k, v in dict(
        gamma=gamma, beta=beta, rm=_normal(rng, (c,), 0.1),
        rv=(1.0 + rng.random(c)).astype(np.float32), dgamma=_normal(rng, (c,)),
        dbeta=_normal(rng, (c,))).items()}
    y, xhat, inv_std = be.batchnorm_relu_train(be.from_host(x), d["gamma"], d["beta"], d["rm"],
                                               d["rv"], 0.1, 1e-5)
    dx = be.batchnorm_relu_backward(be.from_host(_normal(rng, shape)), y, xhat, inv_std,
                                    d["gamma"], d["dgamma"], d["dbeta"])
    return {"y": y, "xhat": xhat, "inv_std": inv_std, "running_mean": d["rm"],
            "running_var": d["rv"], "dx": dx, "dgamma": d["dgamma"], "dbeta": d["dbeta"]}


def run_reduce(be, rng, n):
    a = _normal(rng, (n,))
    a[rng.random(n) < 0.3] = 0.0
    da = be.from_host(a)
    return {"sum": be.sum(da), "zeros": be.count_zeros(da)}


def run_optimizer(be, rng, opt, n, mask, threshold, weight_decay, steps=3, **kw):
    w = be.from_host(_normal(rng, (n,)))
    m = be.from_host((rng.random(n) > 0.4).astype(np.float32)) if mask else None
    state = {k: be.zeros((n,)) for k in ("s1", "s2")}
    for step in range(1, steps + 1):
        g = be.from_host(_normal(rng, (n,)))
        if opt == "sgd":
            be.sgd_update(w, g, state["s1"] if kw.get("velocity", True) else None, 0.1,
                          kw.get("momentum", 0.9), kw.get("nesterov", False), weight_decay,
                          threshold, m)
        elif opt == "rmsprop":
            be.rmsprop_update(w, g, state["s1"], 0.01, 0.99, 1e-8, weight_decay, threshold, m)
        else:
            be.adam_update(w, g, state["s1"], state["s2"], 0.01, 0.9, 0.999, 1e-8, step,
                           weight_decay, threshold, m)
    return {"w": w, **state}


def run_block_product(be, rng, rows, cols, blocks, m, unit=1):
    """Permuted block-diagonal weight (issue 18): block_pack and the three products
    (block_matmul forward and transposed, the gradient through pack + batched GEMM), and the
    forward with the bias + ReLU epilogue."""
    from minidnn.blockdiag import BlockDiagMatrix, BlockLayout
    layout = BlockLayout.random(rows, cols, blocks, np.random.default_rng(5), unit)
    bd = BlockDiagMatrix.from_host(be, layout, _normal(rng, (blocks,) + layout.block_shape))
    x, dy = be.from_host(_normal(rng, (1, m, cols))), be.from_host(_normal(rng, (1, m, rows)))
    grad = be.zeros(bd.blocks.shape)
    y = bd.matmul_t(x)
    bd.outer_grad(dy, x, grad, accumulate=False)
    bd.outer_grad(dy, x, grad, accumulate=True)
    bias = be.from_host(_normal(rng, (rows,)))
    fused = be.block_matmul(x, bd.col_index, bd.transposed(), bd.row_index, rows, bias=bias,
                            relu=True)                     # the epilogue of inference plans
    return {"y": y, "dx": bd.matmul(dy), "grad": grad, "fused": fused,
            "pack": be.block_pack(x, bd.col_index, layout.block_shape[1])}


# ---------------------------------------------------------------- the table
IMG = (5, 3, 7, 9)  # odd sizes on purpose
ELEMENTWISE_OPS = ("relu", "relu_backward", "add", "add_relu", "mul", "axpy", "scale", "div_sqrt",
                   "soft_threshold", "apply_mask")

# (id, runner, params, (rtol, atol))
CASES: list[tuple[str, Callable, dict, tuple[float, float]]] = [
    *[(f"conv_lowering-{s}-k{kh}x{kw}-s{st}-p{p}-g{g}{'-gpu_path' * gp}", run_conv_lowering,
       dict(shape=s, kh=kh, kw=kw, stride=st, pad=p, groups=g, gpu_path=gp), (1e-5, 1e-5))
      for gp in (False, True) for s, kh, kw, st, p, g in [
          (IMG, 3, 3, 1, 1, 1), (IMG, 3, 3, 2, 0, 1), (IMG, 5, 5, 1, 2, 1), (IMG, 5, 5, 2, 2, 3),
          (IMG, 1, 1, 2, 0, 3), (IMG, 1, 1, 1, 0, 1), ((5, 4, 7, 9), 3, 3, 2, 1, 2),
          ((5, 4, 9, 7), 1, 3, 1, 1, 2), ((2, 6, 12, 12), 5, 5, 1, 0, 2), (IMG, 2, 4, 1, 1, 1),
          (IMG, 3, 2, 2, 1, 1), (IMG, 7, 7, 1, 3, 1), (IMG, 4, 4, 1, 2, 3)]],
    # ragged pixel blocks (W not a multiple of 8), channel blocks (not multiples of 16),
    # groups, the constant widths 3 and 5 and any other width, pixels at the padding
    # every tile of the forward / input-gradient kernels (rows of odd count: the 2-row tile's
    # half-empty last block)
    *[(f"direct_conv-{t}-{s}-o{o}-k{k}-p{p}-g{g}-b{int(b)}", run_direct_conv,
       dict(shape=s, out_channels=o, k=k, pad=p, groups=g, bias=b, tile=t), (1e-4, 1e-4))
      for t in CONV_TILES for s, o, k, p, g, b in [
          (IMG, 5, 3, 1, 1, True), ((2, 16, 16, 16), 16, 3, 1, 1, False),
          ((2, 6, 9, 20), 34, 3, 1, 2, True), ((3, 5, 13, 13), 20, 5, 0, 1, True),
          ((2, 4, 12, 18), 8, 5, 2, 2, False), ((2, 3, 10, 11), 17, 1, 0, 1, True),
          ((2, 6, 11, 9), 4, 7, 3, 2, True), (IMG, 4, 3, 0, 1, False),
          ((1, 2, 3, 3), 3, 3, 2, 1, True), ((2, 3, 4, 2), 2, 2, 1, 1, True),
          # rectangular filters (CP strips, mixed widths), more images than one chunk holds
          ((2, 4, 9, 12), 6, (3, 1), 0, 2, True), ((2, 3, 8, 10), 5, (1, 3), 0, 1, False),
          ((2, 3, 9, 17), 9, (3, 5), 1, 1, True), ((2, 4, 10, 9), 12, (5, 3), 2, 1, False),
          ((2, 2, 7, 13), 3, (2, 4), 1, 1, True), ((40, 3, 16, 16), 10, 3, 1, 1, True),
          # rows a multiple of 8 wide (border pieces as aligned loads), padding 0, 1 and 2
          ((2, 3, 9, 8), 6, 3, 0, 1, False), ((2, 3, 6, 8), 4, 3, 2, 1, True),
          ((2, 5, 8, 16), 7, 5, 2, 1, True), ((1, 2, 5, 16), 3, (3, 5), 1, 1, False),
          ((2, 4, 5, 24), 8, 5, 0, 2, True),
          # weight gradient walked row by row (rows with pieces wholly inside): aligned border
          # pieces (32 wide, pad 1 and 2), ragged channel blocks, rows not a multiple of 8,
          # many one-image chunks
          ((3, 4, 6, 32), 12, 3, 1, 1, False), ((2, 4, 5, 32), 6, 5, 2, 2, True),
          ((2, 3, 4, 37), 9, 3, 0, 1, True), ((2, 2, 5, 29), 3, 5, 1, 1, False),
          ((20, 2, 4, 40), 16, 3, 1, 1, False)]],
    *[(f"channel_bias-{s}-acc{a}", run_channel_bias, dict(shape=s, accumulate=a), (1e-4, 1e-4))
      for s, a in [(IMG, True), (IMG, False), ((5, 10), True), ((5, 12), False),
                   ((5, 3, 4, 4), True), ((300, 13), True), ((5, 3, 1, 1), False),
                   ((70, 3, 5, 7), True)]],
    *[(f"{op}-{s}", run_elementwise, dict(op=op, shape=s), (1e-6, 1e-6))
      for op in ELEMENTWISE_OPS for s in [(1,), (13,), (8,), IMG]],
    *[(f"dropout-{s}-p{p}-seed{seed}-c{c}", run_dropout, dict(shape=s, p=p, seed=seed, counter=c),
       (0.0, 0.0))
      for s, p, seed, c in [(IMG, 0.5, 0, 0), ((13,), 0.1, 7, 3), ((1000, 3), 0.3, 2**33 + 5, 99)]],
    *[(f"maxpool-{s}-k{k}-s{st}-p{p}{'-ties' * t}", run_maxpool,
       dict(shape=s, k=k, stride=st, pad=p, ties=t), (1e-6, 1e-6))
      for s, k, st, p, t in [
          (IMG, 2, 2, 0, False), (IMG, 2, 2, 0, True), ((2, 3, 10, 22), 2, 2, 0, True),
          ((2, 3, 8, 8), 2, 2, 0, False), (IMG, 3, 2, 1, False), (IMG, 3, 1, 1, True),
          (IMG, 2, 1, 0, True), (IMG, 5, 2, 2, False), (IMG, 3, 3, 0, False)]],
    *[(f"avgpool-{s}-k{k}-s{st}-p{p}", run_avgpool, dict(shape=s, k=k, stride=st, pad=p),
       (1e-5, 1e-6))
      for s, k, st, p in [(IMG, 2, 2, 0), (IMG, 3, 1, 1), (IMG, 3, 2, 1), (IMG, 5, 2, 2),
                          (IMG, 1, 1, 0)]],
    *[(f"softmax-{n}x{k}{'-ties' * t}", run_softmax, dict(n=n, k=k, ties=t), (1e-5, 1e-6))
      for n, k, t in [(5, 10, False), (300, 7, False), (5, 1, False), (40, 4, True)]],
    *[(f"batchnorm-{s}", run_batchnorm, dict(shape=s), (1e-4, 1e-4))
      for s in [IMG, (5, 10), (300, 4), (5, 3, 1, 1), (2, 3, 16, 16), (70, 3, 5, 7)]],
    # the per-tile statistics: several planes per tile with a ragged last tile and P not a
    # multiple of 8 (130 x 3 x 63), long planes (P = 1600, past the 32-float steps), planes of
    # 2 x 2 (VGG16's last stage), a BatchNorm1d with many channels, and a mean far from zero
    # (two-pass tiles merged by Chan's update: no cancellation)
    *[(f"batchnorm-{s}-offset{o}", run_batchnorm, dict(shape=s, offset=o), (1e-4, 1e-4))
      for s, o in [((130, 3, 7, 9), 0.5), ((64, 2, 40, 40), -1.0), ((32, 70, 2, 2), 0.5),
                   ((128, 300), 0.5), ((40, 4, 8, 8), 100.0)]],
    *[(f"batchnorm-relu-{s}", run_batchnorm_relu, dict(shape=s), (1e-4, 1e-4))
      for s in [IMG, (300, 4), (130, 3, 7, 9), (32, 70, 2, 2)]],
    *[(f"reduce-{n}", run_reduce, dict(n=n), (1e-4, 1e-3))
      for n in [1, 13, 1000, 100003]],
    *[(f"{opt}-n{n}-mask{mk}-thr{thr}-wd{wd}{''.join(f'-{k}{v}' for k, v in kw.items())}",
       run_optimizer, dict(opt=opt, n=n, mask=mk, threshold=thr, weight_decay=wd, **kw),
       (1e-5, 1e-5))
      for opt, n, mk, thr, wd, kw in [
          ("sgd", 13, False, 0.0, 0.0, {}), ("sgd", 1037, True, 1e-2, 1e-2, {"nesterov": True}),
          ("sgd", 1037, False, 1e-2, 0.0, {"momentum": 0.0}),
          ("sgd", 21, True, 0.0, 0.0, {"velocity": False}),
          ("rmsprop", 13, False, 0.0, 0.0, {}), ("rmsprop", 1037, True, 1e-3, 1e-2, {}),
          ("adam", 13, False, 0.0, 0.0, {}), ("adam", 1037, True, 1e-3, 1e-2, {}),
          ("adam", 64, False, 5e-3, 0.0, {})]],
    *[(f"block-{r}x{c}-B{nb}-m{m}-u{u}", run_block_product,
       dict(rows=r, cols=c, blocks=nb, m=m, unit=u), (1e-4, 1e-4))
      for r, c, nb, m, u in [(30, 47, 4, 9, 1), (300, 784, 10, 33, 1), (10, 100, 10, 5, 1),
                             (50, 500, 10, 17, 25), (7, 5, 1, 3, 1), (6, 6, 6, 2, 1)]],
]


@pytest.mark.parametrize("runner,params,tol", [pytest.param(r, p, t, id=i)
                                               for i, r, p, t in CASES])
def test_matches_numpy(clb, np32, runner, params, tol):
    want = {k: np32.to_host(v) for k, v in runner(np32, np.random.default_rng(1), **params).items()}
    got = {k: clb.to_host(v) for k, v in runner(clb, np.random.default_rng(1), **params).items()}
    again = {k: clb.to_host(v) for k, v in runner(clb, np.random.default_rng(1), **params).items()}
    rtol, atol = tol
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        assert got[name].dtype == ref.dtype, name
        np.testing.assert_allclose(got[name], ref, rtol=rtol, atol=atol, err_msg=name)
        np.testing.assert_array_equal(again[name], got[name], err_msg=f"{name} not deterministic")


def test_every_conv_tile_is_in_the_table(clb):
    """The parity table runs the direct convolution with every tile the backend can choose."""
    from minidnn.backend.cl_conv import TILE_BY_PLATFORM, TILE_DEFAULT, TILES
    assert set(CONV_TILES) == set(TILES)
    assert clb.conv.tile in TILES and TILE_DEFAULT in TILES
    assert set(TILE_BY_PLATFORM.values()) <= set(TILES)


def test_direct_weight_gradient_up_to_a_channel_limit(clb, np32):
    """The direct weight gradient is chosen for narrow layers (ResNet-32's 16 -> 16) on every
    runtime, up to the runtime's channel-pair limit (on the CPU runtimes measured: VGG16's
    512 -> 512), and not past it; NumPy's is the lowering itself."""
    from minidnn.backend.cl_conv import WGRAD_MAX_PAIRS
    limit = clb.conv.wgrad_max_pairs
    platform = clb.runtime.device.platform.name.strip()
    assert limit >= 4096
    assert clb.conv2d_weight_grad_direct(16, 16, 1) and clb.conv2d_weight_grad_direct(32, 64, 2)
    assert clb.conv2d_weight_grad_direct(limit, 1, 1)
    assert not clb.conv2d_weight_grad_direct(limit + 1, 1, 1)
    assert clb.conv2d_weight_grad_direct(2 * limit, 2, 2)  # pairs per group
    if clb.runtime.is_cpu and platform in WGRAD_MAX_PAIRS:
        assert limit == WGRAD_MAX_PAIRS[platform]
        assert clb.conv2d_weight_grad_direct(512, 512, 1)
    assert np32.conv2d_weight_grad_direct(512, 512, 1)


def test_pooled_and_direct_buffers_hold_their_data(clb):
    """Small buffers come from the memory pool, large ones directly; both round-trip, and a
    freed pooled buffer handed out again is refilled, not stale."""
    big_n = clb.runtime.POOL_MAX_BYTES // 4 + 1024
    big = clb.zeros((big_n,))
    from pyopencl.tools import PooledBuffer
    assert not isinstance(big.base_data, PooledBuffer)
    assert isinstance(clb.zeros((1000,)).base_data, PooledBuffer)
    host = clb.to_host(big)
    assert host.shape == (big_n,) and not host.any()
    for _ in range(3):
        small = clb.from_host(np.arange(1000, dtype=np.float32))
        np.testing.assert_array_equal(clb.to_host(small), np.arange(1000, dtype=np.float32))
        del small
        again = clb.zeros((1000,))
        assert not clb.to_host(again).any()
