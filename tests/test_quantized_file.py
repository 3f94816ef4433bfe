"""Quantized model files (format version 3): round trips, size, and every bad input of a
quantized layer crafted at the file level with h5py (docs/format.md, issue 16 item 6)."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from minidnn import models as zoo
from minidnn.backend import NumpyBackend
from minidnn.cli import main as cli_main
from minidnn.compress.codec import HUFFMAN, PACKED, encode_layer
from minidnn.compress.quantize import QuantizedLayer, quantize_model
from minidnn.errors import ConfigError, ModelFileError
from minidnn.io import describe, file_report, load, save
from minidnn.io.h5 import seal, set_attrs
from minidnn.layers import BatchNorm2d, Conv2d, Flatten, Linear, ReLU
from minidnn.layers.model import Model

FC2 = "classifier.fc2.weight"


def _model(seed: int = 0):
    """A LeNet-5 at ~97% zeros with nonzero biases; fc1 held as CSR in memory."""
    model = zoo.build_model("lenet5").to(NumpyBackend())
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        host = p.host_dense()
        if p.prox:
            host = np.where(rng.random(host.shape) < 0.03, host, 0)
        else:
            host = rng.standard_normal(host.shape) * 0.1
        p.data = model.backend.from_host(host.astype(np.float32))
    model.classifier.fc1.weight.to_csr()
    return model


@pytest.fixture
def quantized(tmp_path):
    """(model, records, path of its quantized file)."""
    model = _model()
    records = quantize_model(model, 5, "conv1=8")
    path = tmp_path / "q.h5"
    save(model, path, quantized=records, bias_dtype="float16", format_version=3)
    return model, records, path


@pytest.fixture
def packed(tmp_path):
    """(model, records, path of its quantized file in format version 4)."""
    model = _model()
    records = quantize_model(model, 5, "conv1=8")
    path = tmp_path / "q4.h5"
    save(model, path, quantized=records, bias_dtype="float16")
    return model, records, path


def test_round_trip_is_bit_identical_and_keeps_the_form(quantized):
    model, records, path = quantized
    back = load(path)
    for (name, p), (_, q) in zip(model.named_parameters(), back.named_parameters()):
        a, b = p.host_dense(), q.host_dense()
        if p.prox:
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), name
            assert p.is_sparse == q.is_sparse, name
        else:
            np.testing.assert_allclose(a, b, rtol=2 ** -10, atol=1e-7)
    assert [r.name for r in back.quantized] == [r.name for r in records]
    for r, s in zip(records, back.quantized):
        assert np.array_equal(r.codebook, s.codebook) and np.array_equal(r.positions,
                                                                         s.positions)
    # saving the reloaded model again gives the same weights
    save(back, path.with_name("again.h5"), quantized=back.quantized, bias_dtype="float16",
         format_version=3)
    again = load(path.with_name("again.h5"))
    assert np.array_equal(again.classifier.fc1.weight.host_dense(),
                          back.classifier.fc1.weight.host_dense())


def test_version_3_only_when_quantized_and_small(quantized, tmp_path):
    model, _, path = quantized
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 3
        assert set(f["params"]) == {"codes", "values"}
        assert json.loads(f.attrs["architecture"])["module"] is None  # zoo: rebuilt by name
    save(model, tmp_path / "plain.h5")
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert f.attrs["format_version"] == 2
    report = file_report(path)
    payload = sum(row["file_bytes"] for row in report["layers"])
    assert report["file_bytes"] - payload < 2500     # the HDF5 container stays small (~2.3 KB)
    text = describe(path)
    assert "bits/value" in text and "bits/index" in text and "HDF5 container" in text


def test_save_refuses_stale_or_partial_records(quantized, tmp_path):
    model, records, _ = quantized
    with pytest.raises(ConfigError, match="missing"):
        save(model, tmp_path / "x.h5", quantized=records[:2])
    p = model.features.conv2.weight
    p.data = p.backend.from_host(p.host_dense() * 1.5)
    with pytest.raises(ModelFileError, match="no longer"):
        save(model, tmp_path / "x.h5", quantized=records)
    assert not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------------- crafted bad files
def _table(f) -> list:
    return json.loads(f["params"].attrs["table"])


def _blob(f, name: str) -> bytes:
    table = _table(f)
    start = sum(r[7] for r in table[:[r[0] for r in table].index(name)]
                if r[5] == "quantized")
    size = next(r[7] for r in table if r[0] == name)
    return f["params/codes"][start:start + size].tobytes()


def _put_blob(path: Path, name: str, blob: bytes, size: int | None = None) -> None:
    """Replace one layer's blob (table updated to ``size``, default its length), resealed."""
    with h5py.File(path, "r+") as f:
        table = _table(f)
        blobs = [(r[0], _blob(f, r[0])) for r in table if r[5] == "quantized"]
        codes = b"".join(blob if n == name else b for n, b in blobs)
        for r in table:
            if r[0] == name:
                r[7] = len(blob) if size is None else size
        del f["params/codes"]
        f["params"].create_dataset("codes", data=np.frombuffer(codes, np.uint8))
        set_attrs(f["params"], table=json.dumps(table))
        seal(f)


def _record_blob(record: QuantizedLayer, **kw) -> bytearray:
    """A layer format version 1 blob (fixed-width fields: the offsets below)."""
    return bytearray(encode_layer(record, **kw).to_bytes(version=1))


def _fc2(records) -> QuantizedLayer:
    return next(r for r in records if r.name == FC2)


def _stream_offsets(blob: bytes, ndim: int, k: int) -> tuple[int, int]:
    """(offset of the values length field, of the values stream) of a blob without COMPACT."""
    off = 19 + 4 * ndim + 4 * k
    return off, off + 4


def _bits_17(records):
    b = _record_blob(_fc2(records))
    b[2] = 17
    return b


def _bits_0(records):
    b = _record_blob(_fc2(records))
    b[2] = 0
    return b


def _past_codebook(records):
    r = _fc2(records)
    a = r.assignments.copy()
    a[0] = r.k                     # one past the codebook (still fits the bits)
    bad = QuantizedLayer(r.name, r.shape, r.bits, r.codebook, a, r.positions)
    return _record_blob(bad, values_codec=PACKED)


def _packed_short(records):
    r = _fc2(records)
    b = _record_blob(r, values_codec=PACKED, compact=False)
    lf, vs = _stream_offsets(b, len(r.shape), r.k)
    (nv,) = struct.unpack_from("<I", b, lf)
    del b[vs + nv - 1]             # one byte short
    struct.pack_into("<I", b, lf, nv - 1)
    return b


def _huffman_garbled(records):
    r = _fc2(records)
    b = _record_blob(r, values_codec=HUFFMAN, compact=False)
    lf, vs = _stream_offsets(b, len(r.shape), r.k)
    (nv,) = struct.unpack_from("<I", b, lf)
    for i in range(vs + nv // 2, vs + nv):
        b[i] ^= 0xA5               # the code bits no longer decode to nnz symbols
    return b


def _nan_codebook(records):
    r = _fc2(records)
    b = _record_blob(r, compact=False)
    struct.pack_into("<f", b, 19 + 4 * len(r.shape), float("nan"))
    return b


def _wrong_shape(records):
    r = _fc2(records)
    b = _record_blob(r)
    struct.pack_into("<I", b, 19, 5)   # dims[0]: 5 rows instead of 10
    struct.pack_into("<I", b, 23, 1000)
    return b


def _truncated(records):
    return _record_blob(_fc2(records))[:-3]


def _trailing(records):
    return _record_blob(_fc2(records)) + b"\0\0"


BAD_BLOBS = {
    "bits 17": (_bits_17, "bits 17 outside 1..16"),
    "bits 0": (_bits_0, "bits 0 outside 1..16"),
    "assignment past the codebook": (_past_codebook, "past the codebook"),
    "packed stream of the wrong length": (_packed_short, "expected for"),
    "Huffman stream that does not decode": (_huffman_garbled, "Huffman|decode|symbols|bits"),
    "NaN in the codebook": (_nan_codebook, "NaN"),
    "shape other than the parameter's": (_wrong_shape, "encodes shape"),
    "truncated blob": (_truncated, "truncated|bytes"),
    "trailing bytes": (_trailing, "trailing"),
}


@pytest.mark.parametrize("case", sorted(BAD_BLOBS))
def test_bad_quantized_layer_is_a_model_file_error(quantized, case):
    _, records, path = quantized
    make, message = BAD_BLOBS[case]
    _put_blob(path, FC2, bytes(make(records)))
    with pytest.raises(ModelFileError, match=message) as info:
        load(path)
    assert FC2 in str(info.value)
    assert cli_main(["info", str(path)]) == 2


def _edit_table(edit):
    def apply(f):
        table = _table(f)
        edit(table)
        set_attrs(f["params"], table=json.dumps(table))
    return apply


BAD_EDITS = {
    "sizes do not tile the codes": (_edit_table(lambda t: t[0].__setitem__(7, t[0][7] + 1)),
                                    "the dataset holds"),
    "unknown storage": (_edit_table(lambda t: t[0].__setitem__(5, "zip")), "invalid combination"),
    "entry too short": (_edit_table(lambda t: t[0].pop()), "must be a list"),
    "listed twice": (_edit_table(lambda t: t.__setitem__(1, list(t[0]))), "twice"),
    "huge declared shape": (_edit_table(lambda t: t[1].__setitem__(1, [1 << 20, 1 << 20])),
                            "declare"),
    "dense size wrong": (_edit_table(lambda t: t[1].__setitem__(7, t[1][7] - 1)),
                         "the dataset holds|values for shape"),
    "codes not uint8": (lambda f: (f["params"].__delitem__("codes"), f["params"].create_dataset(
        "codes", data=np.zeros(3, np.float32))), "dtype"),
    "extra member": (lambda f: f["params"].create_dataset("extra", data=np.zeros(2)),
                     "unexpected"),
    "NaN bias": (lambda f: f["params/values"].__setitem__(0, np.nan), "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_EDITS))
def test_bad_quantized_file_structure(quantized, case):
    _, _, path = quantized
    edit, message = BAD_EDITS[case]
    with h5py.File(path, "r+") as f:
        edit(f)
        seal(f)
    with pytest.raises(ModelFileError, match=message):
        load(path)


def test_unsealed_edit_of_a_code_byte_is_caught(quantized):
    _, _, path = quantized
    with h5py.File(path, "r+") as f:
        f["params/codes"][40] ^= 1
    with pytest.raises(ModelFileError, match="checksum"):
        load(path)


def test_quantize_command_and_options(tmp_path, quantized):
    model, _, _ = quantized
    src = tmp_path / "float.h5"
    save(model, src)
    out = tmp_path / "out" / "q.h5"
    assert cli_main(["quantize", str(src), "--bits", "4", "--per-layer", "conv1=6",
                     "--method", "dp", "--backend", "numpy", "--out", str(out)]) == 0
    back = load(out)
    assert back.metadata["quantize_bits"] == 4 and back.metadata["quantize_method"] == "dp"
    for r in back.quantized:       # codebooks rounded to float16 by default
        assert np.array_equal(r.codebook.astype(np.float16).astype(np.float32), r.codebook)
    assert max(r.k for r in back.quantized if r.name != "features.conv1.weight") <= 16
    for argv in (["--bits", "0"], ["--bits", "17"], ["--method", "median"],
                 ["--finetune-steps", "-1"], ["--finetune-lr", "nan"],
                 ["--retrain-steps", "-2"], ["--retrain-lr", "0"],
                 ["--codebook-dtype", "float8"]):
        assert cli_main(["quantize", str(src), "--out", str(tmp_path / "y.h5"), *argv]) == 2
    assert cli_main(["quantize", str(src), "--out", str(tmp_path), "--bits", "4"]) == 2
    assert cli_main(["quantize", str(src), "--out", str(tmp_path / "z.h5"),
                     "--per-layer", "conv7=3"]) == 2
    assert cli_main(["quantize", str(src), "--out", str(tmp_path / "z.h5"),
                     "--finetune-steps", "5"]) == 2  # fine-tuning needs --data
    assert cli_main(["quantize", str(src), "--out", str(tmp_path / "z.h5"),
                     "--retrain-steps", "5"]) == 2   # so does retraining
    assert not (tmp_path / "y.h5").exists() and not (tmp_path / "z.h5").exists()


def test_unused_biases_are_zeroed_without_changing_outputs():
    from minidnn.compress.unused import zero_unused_biases
    model = _model()
    p = model.classifier.fc2.weight
    w = p.host_dense()
    w[:, :400] = 0                                   # fc1 outputs 0..399 are read by nothing
    p.data = p.backend.from_host(w)
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    before = model.backend.to_host(model.forward(model.backend.from_host(x)))
    assert zero_unused_biases(model) >= 400
    after = model.backend.to_host(model.forward(model.backend.from_host(x)))
    assert np.array_equal(before, after)
    assert not model.classifier.fc1.bias.host_dense()[:400].any()


# ---------------------------------------------------------------------- format version 4
def _record_parts(path: Path) -> tuple[dict, bytes, bytes]:
    """(header, codes pool, the rest) of a version 4 file's /model record."""
    with h5py.File(path, "r") as f:
        data = f["model"][()].tobytes()
    (n,) = struct.unpack_from("<I", data)
    header = json.loads(zlib.decompress(data[4:4 + n], -15))
    start = 4 + n
    return header, data[start:start + header["codes"]], data[start + header["codes"]:]


def _put_record(path: Path, record: bytes, dtype=np.uint8) -> None:
    """Replace /model with ``record`` (resealed)."""
    with h5py.File(path, "r+") as f:
        del f["model"]
        f.create_dataset("model", data=np.frombuffer(record, np.uint8).astype(dtype))
        seal(f)


def _assemble(header: dict, codes: bytes, rest: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    text = c.compress(json.dumps(header).encode()) + c.flush()
    return struct.pack("<I", len(text)) + text + codes + rest


def _put_blob_v4(path: Path, name: str, blob: bytes) -> None:
    """Replace one layer's blob in a version 4 file (table and pool size updated)."""
    header, codes, rest = _record_parts(path)
    parts, at = [], 0
    for row in header["params"]:
        if row[5] == "quantized":
            parts.append(blob if row[0] == name else codes[at:at + row[7]])
            at += row[7]
            row[7] = len(parts[-1])
    header["codes"] = sum(map(len, parts))
    _put_record(path, _assemble(header, b"".join(parts), rest))


def test_version_4_round_trip_and_container(packed, tmp_path):
    model, records, path = packed
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 4 and set(f) == {"model"}
        assert set(f.attrs) == {"format", "format_version", "checksum"}
        assert f["model"].id.get_create_plist().get_layout() == h5py.h5d.COMPACT
    back = load(path)
    for (name, p), (_, q) in zip(model.named_parameters(), back.named_parameters()):
        if p.prox:
            assert np.array_equal(p.host_dense().view(np.uint32), q.host_dense().view(np.uint32))
            assert p.is_sparse == q.is_sparse, name
    assert back.metadata == {} and [r.name for r in back.quantized] == [r.name for r in records]
    v3 = tmp_path / "v3.h5"
    save(model, v3, quantized=records, bias_dtype="float16", format_version=3)
    assert path.stat().st_size < v3.stat().st_size - 1200   # the container is what shrank
    a, b = file_report(path), file_report(v3)
    assert [r["quantized"] for r in a["layers"]] == [r["quantized"] for r in b["layers"]]
    assert cli_main(["info", str(path)]) == 0
    with pytest.raises(ConfigError, match="format_version"):
        save(model, tmp_path / "x.h5", format_version=4)      # only a quantized model


class _BNNet(Model):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv = Conv2d(1, 4, 3)
        self.bn = BatchNorm2d(4)
        self.relu = ReLU()
        self.flat = Flatten()
        self.fc = Linear(4 * 6 * 6, 3)


def test_version_4_keeps_buffers_and_metadata(tmp_path):
    model = _BNNet().to(NumpyBackend())
    model.train()
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    model.forward(model.backend.from_host(x))       # running statistics become nonzero
    records = quantize_model(model, 3)
    save(model, tmp_path / "bn.h5", quantized=records, metadata={"note": "\u00e9"})
    back = load(tmp_path / "bn.h5")
    assert back.metadata == {"note": "\u00e9"} and type(back).__name__ != "_BNNet"
    buffers = dict(model.named_buffers())
    assert buffers
    for name, b in back.named_buffers():
        assert np.array_equal(model.backend.to_host(buffers[name]), back.backend.to_host(b))
    assert np.array_equal(model.predict(x), back.predict(x))


@pytest.mark.parametrize("case", sorted(BAD_BLOBS))
def test_bad_quantized_layer_in_version_4(packed, case):
    _, records, path = packed
    make, message = BAD_BLOBS[case]
    _put_blob_v4(path, FC2, bytes(make(records)))
    with pytest.raises(ModelFileError, match=message) as info:
        load(path)
    assert FC2 in str(info.value)


def _edit_header(edit):
    def apply(path):
        header, codes, rest = _record_parts(path)
        edit(header)
        _put_record(path, _assemble(header, codes, rest))
    return apply


def _edit_bytes(edit):
    def apply(path):
        with h5py.File(path, "r") as f:
            data = f["model"][()].tobytes()
        _put_record(path, edit(data))
    return apply


BAD_RECORDS = {
    "truncated record": (_edit_bytes(lambda d: d[:-1]), "truncated"),
    "trailing bytes": (_edit_bytes(lambda d: d + b"\0"), "trailing"),
    "header does not inflate": (_edit_bytes(lambda d: d[:4] + b"\xff" * 8 + d[12:]),
                                "inflate|DEFLATE"),
    "header length past the end": (_edit_bytes(lambda d: struct.pack("<I", 1 << 30) + d[4:]),
                                   "truncated"),
    "unknown header key": (_edit_header(lambda h: h.__setitem__("extra", 1)), "exactly the keys"),
    "missing header key": (_edit_header(lambda h: h.pop("metadata")), "exactly the keys"),
    "checkpoint kind": (_edit_header(lambda h: h.__setitem__("kind", "checkpoint")),
                        "holds a model"),
    "metadata not an object": (_edit_header(lambda h: h.__setitem__("metadata", [1])),
                               "'metadata' must be"),
    "unknown values codec": (_edit_header(lambda h: h["values"].__setitem__(1, "lz4")),
                             "'values' must be"),
    "codes pool one byte short": (_edit_header(lambda h: h.__setitem__("codes", h["codes"] - 1)),
                                  "the table gives|values pool|truncated|trailing"),
    "bad table entry": (_edit_header(lambda h: h["params"][0].pop()), "must be a list"),
    "bad buffer entry": (_edit_header(lambda h: h.__setitem__("buffers", [["b", [2], "u8"]])),
                         "bad buffer entry"),
    "bad architecture": (_edit_header(lambda h: h["architecture"].__setitem__("zoo", 3)),
                         "architecture"),
    "record not uint8": (lambda p: _put_record(p, b"\0" * 8, np.float32), "dtype"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_version_4_record(packed, case):
    _, _, path = packed
    edit, message = BAD_RECORDS[case]
    edit(path)
    with pytest.raises(ModelFileError, match=message):
        load(path)
    assert cli_main(["info", str(path)]) == 2


def test_version_4_values_pool_is_checked(packed):
    from minidnn.io.packed import _deflate, _shuffled
    model, _, path = packed
    header, codes, rest = _record_parts(path)
    dtype, codec, size = header["values"]
    count = sum(r[7] for r in header["params"] if r[5] == "dense")
    vals = np.full(count, np.nan, np.float16)
    pool = _deflate(_shuffled(vals))
    header["values"] = [dtype, "deflate", len(pool)]
    _put_record(path, _assemble(header, codes, pool + rest[size:]))
    with pytest.raises(ModelFileError, match="NaN"):
        load(path)
    pool = _deflate(_shuffled(np.zeros(count + 1, np.float16)))   # inflates one value too many
    header["values"] = [dtype, "deflate", len(pool)]
    _put_record(path, _assemble(header, codes, pool + rest[size:]))
    with pytest.raises(ModelFileError, match="longer than|values pool"):
        load(path)


def test_plot_groups_files_by_the_method_that_made_their_weights(tmp_path):
    from minidnn.cli.plot import file_records
    model = _model()
    meta = {"accuracy": 0.99, "method": "pru", "retrain_steps": 100, "quantize_bits": 5,
            "quantize_method": "dp"}
    save(model, tmp_path / "q.h5", quantized=quantize_model(model, 5), metadata=meta)
    save(model, tmp_path / "f.h5", metadata={"accuracy": 0.991, "method": "spc"})
    q, f = file_records([str(tmp_path / "q.h5"), str(tmp_path / "f.h5")])
    assert q["method"] == "Pru (Retrain) + Q" and q["label"] == "dp 5 bits"
    assert f["method"] == "SpC, float" and q["file_bytes"] < f["file_bytes"]
    save(model, tmp_path / "p.h5", metadata={"accuracy": 0.9, "method": "pru+retrain",
                                             "retrain_steps": 800})
    assert file_records([str(tmp_path / "p.h5")])[0]["method"] == "Pru (Retrain), float"
