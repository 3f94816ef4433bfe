"""Weight sharing (k-means, optimal DP), codebook fine-tuning and the quantized-layer codec."""
from __future__ import annotations

import functools
import itertools
import struct

import numpy as np
import pytest

from minidnn.compress.codec import (DEFLATE, HUFFMAN, HUFFMAN_MAX_LEN, PACKED, EncodedLayer,
                                    _table_header, canonical_codes, decode_layer, deflate_encode,
                                    encode_layer, gap_symbols, huffman_decode, huffman_encode,
                                    huffman_lengths, pack_bits, positions_from_gaps, unpack_bits)
from minidnn.compress.quantize import (CentroidOptimizer, QuantizedLayer, apply_records,
                                       dp_quantize_1d, finetune_codebooks, kmeans_1d,
                                       layer_bits, quantize_model, segment_layout)
from minidnn.data import ArrayDataset
from minidnn.errors import ConfigError, MinidnnError, ModelFileError
from minidnn.layers import SoftmaxCrossEntropy
from test_compress import Tiny
from test_compress import synthetic as synthetic_split


# ---------------------------------------------------------------------- helpers
def synthetic(n: int = 256) -> ArrayDataset:
    """The three-class template data of test_compress (its training split)."""
    return synthetic_split(n)[0]


def sparse_tiny(backend, seed: int = 0, form: str = "mask", density: float = 0.4) -> Tiny:
    """A Tiny model with ~``density`` of its weights kept (dense+mask, or CSR)."""
    model = Tiny(seed).to(backend)
    rng = np.random.default_rng(seed + 1)
    for _, p in model.prox_parameters():
        w = p.host_dense() * (rng.random(p.shape) < density)
        p.data = backend.from_host(w.astype(np.float32))
        if form == "csr":
            p.to_csr()
        else:
            p.set_mask((w != 0).astype(np.float32))
    return model


def sse(x, codebook, assignments) -> float:
    d = np.asarray(x, np.float64) - codebook[assignments].astype(np.float64)
    return float(d @ d)


def brute_force_sse(x, k) -> float:
    """Least squared error over every partition of the sorted unique values into <= k runs."""
    u, w = np.unique(np.asarray(x, np.float64), return_counts=True)
    best = np.inf
    for parts in range(1, min(k, u.size) + 1):
        for cuts in itertools.combinations(range(1, u.size), parts - 1):
            b = (0, *cuts, u.size)
            total = 0.0
            for lo, hi in zip(b[:-1], b[1:]):
                mean = np.average(u[lo:hi], weights=w[lo:hi])
                total += float(w[lo:hi] @ (u[lo:hi] - mean) ** 2)
            best = min(best, total)
    return best


def record(rng, shape=(20, 30), density=0.1, bits=4) -> QuantizedLayer:
    dense = rng.standard_normal(shape).astype(np.float32) * (rng.random(shape) < density)
    pos = np.flatnonzero(dense)
    c, a = kmeans_1d(dense.ravel()[pos], 1 << bits)
    return QuantizedLayer("w", shape, bits, c, a, pos)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------- 1-D quantizers
@pytest.mark.parametrize("trial", range(40))
def test_dp_is_optimal_against_brute_force(trial):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 10))
    pool = rng.standard_normal(5) if trial % 2 else rng.standard_normal(n)
    x = rng.choice(pool, n).astype(np.float32)       # odd trials: repeated values
    k = int(rng.integers(1, 5))
    codebook, a = dp_quantize_1d(x, k)
    assert codebook.dtype == np.float32 and codebook.size <= k
    assert np.all(np.diff(codebook) > 0)
    want = brute_force_sse(x.astype(np.float32), k)
    # float32 centroids: within rounding of the optimum
    assert sse(x, codebook, a) <= want + 1e-6 * (1 + want) + 1e-10


def test_dp_beats_or_ties_kmeans_on_skewed_weights():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(2000) * 0.02, rng.standard_normal(50) * 0.3])
    for k in (2, 4, 8, 16):
        c_dp, a_dp = dp_quantize_1d(x, k)
        c_km, a_km = kmeans_1d(x, k)
        assert sse(x, c_dp, a_dp) <= sse(x, c_km, a_km) * (1 + 1e-9)


def test_dp_with_fewer_unique_values_than_levels_is_exact():
    x = np.array([0.5, -0.25, 0.5, 0.125], np.float32)
    c, a = dp_quantize_1d(x, 8)
    assert same_bits(c[a], x)


def test_kmeans_properties():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(3000) * 0.1).astype(np.float32)
    c, a = kmeans_1d(x, 16)
    assert c.dtype == np.float32 and 1 <= c.size <= 16 and np.all(np.diff(c) > 0)
    assert np.all(np.bincount(a, minlength=c.size) > 0)          # no empty cluster kept
    # converged Lloyd: every value is at its nearest centroid, each centroid its cluster mean
    nearest = np.abs(x[:, None].astype(np.float64) - c[None, :]).argmin(axis=1)
    assert np.array_equal(nearest, a)
    means = np.bincount(a, weights=x) / np.bincount(a)
    np.testing.assert_allclose(c, means, rtol=1e-5, atol=1e-7)
    # linear initialisation: deterministic, and the extremes keep a centroid near them
    c2, a2 = kmeans_1d(x, 16)
    assert same_bits(c, c2) and np.array_equal(a, a2)
    assert c[0] < np.quantile(x, 0.01) and c[-1] > np.quantile(x, 0.99)


def test_quantizers_edge_cases():
    for quantize in (kmeans_1d, dp_quantize_1d):
        c, a = quantize(np.zeros(0), 4)
        assert c.size == 0 and a.size == 0
        c, a = quantize(np.full(7, 0.25), 4)
        assert same_bits(c, np.array([0.25], np.float32)) and not a.any()
        c, a = quantize(np.array([-1e-3, 1e-3], np.float32), 1)   # mean 0: kept nonzero
        assert c.size == 1 and c[0] != 0
        with pytest.raises(ConfigError):
            quantize(np.ones(3), 0)


# ---------------------------------------------------------------------- models
@pytest.mark.parametrize("form", ["mask", "csr"])
@pytest.mark.parametrize("method", ["kmeans", "dp"])
def test_quantize_model_keeps_zeros_and_bits(np32, form, method):
    model = sparse_tiny(np32, form=form)
    before = {n: p.host_dense() for n, p in model.prox_parameters()}
    records = quantize_model(model, bits=3, per_layer_bits="conv1=2", method=method)
    assert [r.name for r in records] == list(before)
    for r, (name, p) in zip(records, model.prox_parameters()):
        w = p.host_dense()
        assert p.is_sparse == (form == "csr")
        assert np.array_equal(w == 0, before[name] == 0)        # zeros stay, nonzeros stay
        assert r.bits == (2 if name.endswith("conv1.weight") else 3)
        assert r.k <= 1 << r.bits and 0 not in r.codebook
        assert set(np.unique(w[w != 0])) <= set(r.codebook)
        assert same_bits(w, r.dense())
        assert np.array_equal(r.positions, np.flatnonzero(before[name]))
        if form == "csr":
            row_ptr, col_idx = r.csr()
            assert np.array_equal(row_ptr, np.asarray(p.csr.row_ptr))
            assert np.array_equal(col_idx, np.asarray(p.csr.col_idx))


def test_layer_bits_spec_and_validation(np32):
    model = Tiny().to(np32)
    bits = layer_bits(model, 5, "conv1=8,fc2=6")
    assert bits == {"net.conv1.weight": 8, "net.fc1.weight": 5, "net.fc2.weight": 6}
    assert layer_bits(model, 4, {"fc1": 16})["net.fc1.weight"] == 16
    for bad in (0, 17, -1, 2.5, True, "5"):
        with pytest.raises(ConfigError):
            layer_bits(model, bad)
    for spec in ("conv1=0", "fc1=17", "nope=4", "fc1=x"):
        with pytest.raises(ConfigError) as info:
            layer_bits(model, 5, spec)
        assert isinstance(info.value, MinidnnError)
    with pytest.raises(ConfigError):
        quantize_model(model, 5, method="median")


# ---------------------------------------------------------------------- segment_sum / gradient
def test_segment_sum_numpy(np32):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 9, 500)
    a[a == 4] = 5                                       # an empty segment in the middle
    v = rng.standard_normal(500).astype(np.float32)
    order, offsets = segment_layout(a, 11)              # and empty ones at the end
    got = np32.segment_sum(v, order, offsets)
    np.testing.assert_allclose(got, np.bincount(a, weights=v, minlength=11), rtol=1e-5,
                               atol=1e-5)
    assert got[4] == 0 and got[9] == 0 and got[10] == 0
    empty = np32.segment_sum(np.zeros(0, np.float32), *segment_layout(np.zeros(0, int), 3))
    assert np.array_equal(empty, np.zeros(3))


def test_segment_sum_parity(np32, clb):
    rng = np.random.default_rng(3)
    for n, k in ((1, 1), (37, 4), (5000, 32), (20000, 300), (0, 2)):
        a = rng.integers(0, k, n)
        v = rng.standard_normal(n).astype(np.float32)
        order, offsets = segment_layout(a, k)
        want = np32.segment_sum(v, order, offsets)
        out = clb.zeros((k,))
        got = clb.segment_sum(clb.from_host(v), clb.from_host(order), clb.from_host(offsets),
                              out=out)
        assert got is out
        np.testing.assert_allclose(clb.to_host(got), want, rtol=1e-4, atol=1e-4)


def _loss_and_grads(model, x, y):
    b = model.backend
    loss_fn = SoftmaxCrossEntropy(b)
    model.train()
    loss = loss_fn.forward(model.forward(b.from_host(x)), b.from_host(y, np.int32))
    model.zero_grad()
    model.backward(loss_fn.backward())
    return float(b.to_host(loss)[0])


def test_centroid_gradient_is_sum_of_member_gradients(np64):
    """The segment_sum of the weight gradient equals d loss / d centroid by central
    differences (moving a centroid moves all its members)."""
    data = synthetic(64)
    model = sparse_tiny(np64, form="csr")
    records = quantize_model(model, bits=2)
    opt = CentroidOptimizer(model, records)
    _loss_and_grads(model, data.images, data.labels)
    for bd in opt.bindings:
        r = bd.record
        grad = np.asarray(bd.weight.grad)
        g = np64.segment_sum(grad, *segment_layout(r.assignments, r.k))
        np.testing.assert_allclose(g, np.bincount(r.assignments, weights=grad, minlength=r.k),
                                   rtol=1e-10, atol=1e-12)
        for c in range(r.k):
            losses = []
            for h in (1e-5, -1e-5):
                cb = r.codebook.astype(np.float64).copy()
                cb[c] += h
                bd.weight.csr.values[...] = cb[r.assignments]
                bd.weight.values_changed()
                model.train()
                loss = SoftmaxCrossEntropy(np64).forward(
                    model.forward(data.images.astype(np.float64)), data.labels)
                losses.append(float(loss[0]))
            bd.weight.csr.values[...] = r.codebook.astype(np.float64)[r.assignments]
            bd.weight.values_changed()
            assert g[c] == pytest.approx((losses[0] - losses[1]) / 2e-5, rel=1e-4, abs=1e-7)


def test_centroid_step_parity(np32, clb):
    """One fine-tuning step (segment_sum -> Adam -> gather) on NumPy and OpenCL agrees."""
    data = synthetic(64)
    results = []
    for backend in (np32, clb):
        model = sparse_tiny(backend, form="mask")
        records = quantize_model(model, bits=3)
        opt = CentroidOptimizer(model, records, lr=1e-2)
        _loss_and_grads(model, data.images, data.labels)
        opt.step()
        out = opt.finish()
        results.append(([r.codebook for r in out], [p.host_dense() for p in model.parameters()]))
        for r, (_, p) in zip(out, model.prox_parameters()):
            assert same_bits(p.host_dense(), r.dense())   # weights are exactly the codebook
            assert not p.is_sparse and p.mask is not None  # dense+mask form restored
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_finetuning_lowers_the_loss_and_keeps_the_quantization(np32):
    data = synthetic(256)
    model = sparse_tiny(np32, form="mask", density=0.6)
    records = quantize_model(model, bits=1, method="dp")
    before = _loss_and_grads(model, data.images, data.labels)
    tuned, hist = finetune_codebooks(model, records, data, steps=60, lr=1e-2, batch_size=32,
                                     log=lambda s: None)
    after = _loss_and_grads(model, data.images, data.labels)
    assert after < before
    assert hist.steps[-1] == 60
    for r, t, (_, p) in zip(records, tuned, model.prox_parameters()):
        assert np.array_equal(r.assignments, t.assignments) and t.k == r.k
        assert not same_bits(r.codebook, t.codebook)
        assert same_bits(p.host_dense(), t.dense())
    # records apply to a fresh copy of the pattern bit for bit
    other = sparse_tiny(np32, form="csr", density=0.6)
    apply_records(other, tuned)
    for (_, p), t in zip(other.prox_parameters(), tuned):
        assert same_bits(p.host_dense(), t.dense())


# ---------------------------------------------------------------------- codec: streams
@pytest.mark.parametrize("width", [1, 3, 5, 8, 13, 16])
def test_pack_round_trip(width):
    rng = np.random.default_rng(width)
    for n in (0, 1, 7, 8, 9, 1001):
        s = rng.integers(0, 1 << width, n)
        data = pack_bits(s, width)
        assert len(data) == -(-n * width // 8)
        assert np.array_equal(unpack_bits(data, width, n), s)


def test_huffman_round_trips():
    rng = np.random.default_rng(4)
    streams = [
        (rng.integers(0, 32, 4000), 32),                       # near uniform
        (rng.geometric(0.4, 5000) % 32, 32),                   # skewed
        (np.full(100, 7), 8),                                  # one symbol
        (np.array([0, 1]), 2), (np.array([1]), 2),
        (rng.integers(0, 2, 3), 2),
        (np.zeros(0, np.int64), 16),
        (rng.integers(0, 40000, 50000), 1 << 16),              # big alphabet
    ]
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    streams.append((rng.permutation(np.repeat(np.arange(30), fib)), 32))  # needs length limit
    for s, alphabet in streams:
        lengths = huffman_lengths(np.bincount(s, minlength=alphabet))
        assert lengths.max(initial=0) <= HUFFMAN_MAX_LEN
        data = huffman_encode(s, alphabet)
        assert np.array_equal(huffman_decode(data, alphabet), s)
    # the length limit costs little: within 1% of the unlimited entropy bound here
    counts = np.array(fib, np.float64)
    p = counts / counts.sum()
    bound = -(p * np.log2(p)).sum()
    avg = (huffman_lengths(np.array(fib)) * p).sum()
    assert bound <= avg < bound + 1


def test_canonical_codes_are_prefix_free():
    lengths = huffman_lengths(np.array([50, 20, 20, 5, 3, 1, 1, 0]))
    codes = canonical_codes(lengths)
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths) if n]
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    assert sum(2.0 ** -lengths[lengths > 0]) == 1.0


def test_gap_symbols_round_trip_with_fillers():
    numel = 5000
    positions = np.array([0, 1, 2, 40, 41, 1000, 4999])
    for ib in (1, 2, 3, 5, 8):
        s = gap_symbols(positions, ib)
        assert s.max() <= (1 << ib) - 1
        assert np.array_equal(positions_from_gaps(s, ib, positions.size, numel), positions)
    assert positions_from_gaps(gap_symbols(np.zeros(0, int), 3), 3, 0, 10).size == 0


# ---------------------------------------------------------------------- codec: layers
@pytest.mark.parametrize("bits", [1, 2, 5, 8, 16])
def test_layer_round_trip_is_bit_identical(bits):
    rng = np.random.default_rng(bits)
    for shape, density in (((20, 30), 0.1), ((50, 20, 5, 5), 0.05), ((10,), 1.0),
                           ((3, 4), 0.0), ((1, 100000), 0.0002)):
        dense = rng.standard_normal(shape).astype(np.float32) * (rng.random(shape) < density)
        pos = np.flatnonzero(dense)
        c, a = kmeans_1d(dense.ravel()[pos], 1 << bits)
        r = QuantizedLayer("w", shape, bits, c, a, pos)
        for codecs, compact in itertools.product(
                ((None, None), (PACKED, PACKED), (HUFFMAN, HUFFMAN), (DEFLATE, DEFLATE)),
                (None, False, True)):
            enc = encode_layer(r, None, *codecs, compact=compact)
            assert bool(enc.live) == bool(compact) or compact is None
            blob = enc.to_bytes()
            assert len(blob) == enc.nbytes
            back = decode_layer(blob, "w")
            assert same_bits(back.dense(), r.dense())
            assert same_bits(back.codebook, r.codebook)
            assert np.array_equal(back.assignments, r.assignments)
            assert np.array_equal(back.positions, r.positions)


def test_layer_encoding_picks_the_smaller_codec():
    rng = np.random.default_rng(5)
    r = record(rng, (200, 300), 0.05, 5)
    auto = encode_layer(r)
    for codecs in ((PACKED, PACKED), (HUFFMAN, HUFFMAN), (PACKED, HUFFMAN), (DEFLATE, DEFLATE)):
        assert auto.nbytes <= encode_layer(r, auto.index_bits, *codecs).nbytes
    for ib in (2, 4, 8):
        assert auto.nbytes <= encode_layer(r, ib).nbytes
    for compact in (False, True):
        assert auto.nbytes <= encode_layer(r, compact=compact).nbytes


def test_compact_positions_pay_off_when_rows_and_columns_are_dead():
    rng = np.random.default_rng(8)
    dense = np.zeros((200, 300), np.float32)
    rows, cols = rng.choice(200, 20, replace=False), rng.choice(300, 40, replace=False)
    dense[np.ix_(rows, cols)] = rng.standard_normal((20, 40)) * (rng.random((20, 40)) < 0.4)
    pos = np.flatnonzero(dense)
    c, a = kmeans_1d(dense.ravel()[pos], 16)
    r = QuantizedLayer("w", dense.shape, 4, c, a, pos)
    enc = encode_layer(r)
    assert enc.live and enc.nbytes < encode_layer(r, compact=False).nbytes
    assert same_bits(decode_layer(enc.to_bytes()).dense(), r.dense())


def _blob_of(enc: EncodedLayer, version: int = 2, **changes) -> bytes:
    fields = {f: getattr(enc, f) for f in enc.__dataclass_fields__}
    fields.update(changes)
    return EncodedLayer(**fields).to_bytes(version)


@pytest.mark.parametrize("version", [1, 2])
def test_bad_layers_raise_model_file_error(version):
    _blob = functools.partial(_blob_of, version=version)  # noqa: N806 - the layer format
    rng = np.random.default_rng(6)
    r = record(rng, (20, 30), 0.2, 3)
    huff = encode_layer(r, 4, HUFFMAN, HUFFMAN)
    packed = encode_layer(r, 4, PACKED, PACKED, compact=False)
    compact = encode_layer(r, 4, PACKED, PACKED, compact=True)
    deflated = encode_layer(r, 4, DEFLATE, DEFLATE)
    lengths = huffman_lengths(np.bincount(r.assignments, minlength=8))
    payload = huff.values[len(_table_header(lengths, r.nnz)):]

    def table(lengths, n=r.nnz):
        return _table_header(np.asarray(lengths), n) + payload
    bad = {
        "bits 0": _blob(packed, bits=0), "bits 17": _blob(packed, bits=17),
        "index bits 0": _blob(packed, index_bits=0), "index bits 17": _blob(packed, index_bits=17),
        "codec": _blob(packed, values_codec=7),
        "codebook too long": _blob(packed, codebook=np.linspace(1, 2, 9).astype(np.float32)),
        "assignment past the codebook": _blob(packed, codebook=packed.codebook[:2]),
        "nan in codebook": _blob(packed, codebook=np.full(8, np.nan, np.float32)),
        "zero in codebook": _blob(packed, codebook=np.where(
            np.arange(packed.codebook.size) == 0, 0, packed.codebook).astype(np.float32)),
        "packed values short": _blob(packed, values=packed.values[:-1]),
        "packed values long": _blob(packed, values=packed.values + b"\0"),
        "packed indices short": _blob(packed, indices=packed.indices[:-1]),
        "nnz off": _blob(packed, nnz=packed.nnz + 1),
        "nnz past numel": _blob(packed, nnz=601),
        "index symbols off": _blob(huff, index_symbols=huff.index_symbols - 1),
        "huffman values truncated": _blob(huff, values=huff.values[:-2]),
        "huffman values extra byte": _blob(huff, values=huff.values + b"\0"),
        "huffman table over-subscribed": _blob(huff, values=table(np.ones(8))),
        "huffman table incomplete": _blob(huff, values=table(np.full(8, 4))),
        "huffman table past alphabet": _blob(huff, values=table(np.full(16, 4))),
        "huffman one symbol, long code": _blob(huff, values=table([2])),
        "huffman table truncated": _blob(huff, values=huff.values[:7]),
        "huffman table malformed": _blob(huff, values=struct.pack("<IH", r.nnz, 7) + bytes(9)),
        "huffman table padding": _blob(huff, values=table(lengths)[:-len(payload) - 1] + bytes(
            [table(lengths)[-len(payload) - 1] | 1]) + payload),
        "huffman count too big": _blob(huff, values=struct.pack("<I", 10**9) + huff.values[4:]),
        "huffman count off": _blob(huff, values=table(lengths, r.nnz - 1)),
        "shape": _blob(packed, shape=(0, 600)),
        "positions past the tensor": _blob(packed, shape=(20, 29)),
        "deflate garbage": _blob(deflated, values=b"\xff" * 20),
        "deflate truncated": _blob(deflated, values=deflated.values[:-3]),
        "deflate too long": _blob(deflated, values=deflate_encode(np.zeros(r.nnz + 9), 3)),
        "deflate too short": _blob(deflated, values=deflate_encode(np.zeros(r.nnz - 3), 3)),
        "deflate trailing": _blob(deflated, values=deflated.values + b"\0"),
        "compact: flags": _with_byte(packed.to_bytes(version), 6 if version == 1 else 5, 4),
        "compact: bitmap says too few live rows": _blob(compact, live=pack_bits(np.concatenate(
            [np.ones(19), np.ones(30)]), 1)),
        "compact: bitmap short": _blob(compact, live=compact.live[:-1]),
    }
    for what, blob in bad.items():
        with pytest.raises(ModelFileError):
            decode_layer(blob, what)
    good = huff.to_bytes(version)
    for cut in range(len(good)):                      # every truncation
        with pytest.raises(ModelFileError):
            decode_layer(good[:cut])
    with pytest.raises(ModelFileError):
        decode_layer(good + b"\0")
    with pytest.raises(ModelFileError):
        decode_layer(bytes([3]) + good[1:])            # unknown layer format version


def _with_byte(blob: bytes, at: int, value: int) -> bytes:
    return blob[:at] + bytes([value]) + blob[at + 1:]


def test_layer_format_2_is_smaller_and_reads_both_versions():
    rng = np.random.default_rng(9)
    r = record(rng, (50, 20, 5, 5), 0.05, 5)
    half = QuantizedLayer("w", r.shape, r.bits, r.codebook.astype(np.float16).astype(np.float32),
                          r.assignments, r.positions)
    for rec in (r, half):
        enc = encode_layer(rec)
        v1, v2 = enc.to_bytes(1), enc.to_bytes()
        assert v2[0] == 2 and len(v2) == enc.nbytes
        for blob in (v1, v2):
            assert same_bits(decode_layer(blob).dense(), rec.dense())
        saved = 16 + 2 * rec.k if rec is half else 16     # header fields, float16 codebook
        assert len(v2) <= len(v1) - saved
    assert encode_layer(half).flags & 2 and not encode_layer(r).flags & 2
    enc = encode_layer(half)
    blob = enc.to_bytes()
    at = blob.index(enc.codebook.astype("<f2").tobytes())
    bad = {"varint runs off": bytes(blob[:6]) + b"\xff" * 7,
           "huge codebook": _blob_of(enc, codebook=np.ones(70000, np.float32)),
           "float16 NaN in the codebook": blob[:at] + b"\x00\x7e" + blob[at + 2:],
           "unknown flag": _with_byte(blob, 5, 8)}
    for what, blob in bad.items():
        with pytest.raises(ModelFileError):
            decode_layer(blob, what)


def test_nonzero_padding_and_trailing_filler_are_rejected():
    s = np.array([1, 2, 3])
    data = bytearray(pack_bits(s, 3))
    data[-1] |= 1
    with pytest.raises(ModelFileError):
        unpack_bits(bytes(data), 3, 3)
    with pytest.raises(ModelFileError):
        positions_from_gaps(np.array([0, 3]), 2, 1, 100)      # ends in a filler
    with pytest.raises(ModelFileError):
        positions_from_gaps(np.array([0, 1]), 2, 3, 100)      # fewer nonzeros than said
    with pytest.raises(ModelFileError):
        huffman_decode(huffman_encode(s, 4)[:6] + b"\xff" * 3, 4)   # bits that do not decode


@pytest.mark.parametrize("compact", [False, True])
def test_corrupted_layers_never_decode_to_garbage(compact):
    """Flipped bytes: either a ModelFileError, or a layer that passes every check."""
    rng = np.random.default_rng(7)
    r = record(rng, (30, 40), 0.1, 4)
    good = encode_layer(r, compact=compact).to_bytes()
    assert good[0] == 2
    for trial in range(300):
        blob = bytearray(good)
        for i in rng.integers(0, len(blob), 1 + trial % 3):
            blob[i] ^= int(rng.integers(1, 256))
        try:
            back = decode_layer(bytes(blob))
        except ModelFileError:
            continue
        assert back.assignments.max(initial=0) < back.k and 0 not in back.codebook
        assert np.all(np.isfinite(back.codebook))
        assert np.all(np.diff(back.positions) > 0) and back.positions[-1] < back.numel


def test_segment_sum_default_from_the_core_matches_numpy(np32):
    """Backend's default segment_sum (a CSR product with ones) on a core-only backend."""
    from test_backend_core import CoreOnlyBackend
    core = CoreOnlyBackend()
    rng = np.random.default_rng(4)
    for n, k in ((1, 1), (37, 4), (5000, 32), (0, 2)):
        a = rng.integers(0, k, n)
        v = rng.standard_normal(n).astype(np.float32)
        order, offsets = segment_layout(a, k)
        want = np32.segment_sum(v, order, offsets)
        np.testing.assert_allclose(core.segment_sum(v, order, offsets), want, rtol=1e-5,
                                   atol=1e-5)


def test_round_codebook_to_float16_merges_and_keeps_zeros_out(np32):
    from minidnn.compress.quantize import round_codebook
    c = np.array([-1e-9, 1.0, 1.0 + 2 ** -14, 2.0, 3e-9], np.float32)   # two round alike
    r = QuantizedLayer("w", (2, 4), 3, c, np.array([0, 1, 2, 3, 4], np.int32),
                       np.array([0, 2, 3, 5, 7]))
    q = round_codebook(r)
    assert q.k == 4 and 0 not in q.codebook and np.all(np.diff(q.codebook) > 0)
    assert np.array_equal(q.codebook.astype(np.float16).astype(np.float32), q.codebook)
    assert q.values()[1] == q.values()[2] == 1.0 and q.values()[0] < 0 < q.values()[4]
    np.testing.assert_allclose(q.values(), r.values(), rtol=2 ** -11, atol=1e-7)
    big = QuantizedLayer("w", (1, 1), 1, np.array([1e6], np.float32), np.zeros(1, np.int32),
                         np.array([0]))
    assert round_codebook(big) is big                 # past float16: kept in float32


# ---------------------------------------------------------------------- quantization-aware retraining
def test_nearest_centroid_matches_searchsorted(np32, clb):
    rng = np.random.default_rng(11)
    for n, k in ((0, 3), (1, 1), (1000, 2), (20000, 300)):
        mids = np.sort(rng.standard_normal(max(k - 1, 0))).astype(np.float32)
        v = rng.standard_normal(n).astype(np.float32)
        if n > 10 and mids.size:
            v[:mids.size] = mids[:n]                       # ties go left, as searchsorted
        want = np.searchsorted(mids, v)
        for b in (np32, clb):
            out = b.zeros((n,), np.int32)
            got = b.nearest_centroid(b.from_host(v), b.from_host(mids), out=out)
            assert got is out and np.array_equal(b.to_host(got), want)
    from test_backend_core import CoreOnlyBackend
    core = CoreOnlyBackend()
    out = np.zeros(5, np.int32)
    core.nearest_centroid(np.arange(5, dtype=np.float32), np.array([0.5, 2.5], np.float32), out)
    assert out.tolist() == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("where", ["numpy", "opencl"])
def test_retraining_moves_assignments_and_keeps_the_quantization(where, np32):
    from minidnn.compress.quantize import nonzero_values, retrain_assignments
    if where == "opencl":
        from conftest import OPENCL_DEVICES, opencl_backend_for
        if not OPENCL_DEVICES:
            pytest.skip("no usable OpenCL device")
        b = opencl_backend_for(OPENCL_DEVICES[0])
    else:
        b = np32
    data = synthetic(256)
    model = sparse_tiny(b, form="mask", density=0.6)
    floats = nonzero_values(model)
    records = quantize_model(model, bits=2, method="kmeans")
    before = _loss_and_grads(model, data.images, data.labels)
    out = retrain_assignments(model, records, floats, data, steps=60, lr=1e-2, batch_size=32,
                              log=lambda s: None)
    after = _loss_and_grads(model, data.images, data.labels)
    assert after < before
    moved = sum(int(np.count_nonzero(r.assignments != t.assignments))
                for r, t in zip(records, out))
    assert moved > 0
    for r, t, (_, p) in zip(records, out, model.prox_parameters()):
        assert same_bits(r.codebook, t.codebook) and np.array_equal(r.positions, t.positions)
        assert same_bits(p.host_dense(), t.dense()) and p.mask is not None   # form restored
        assert t.assignments.max() < t.k
