"""Weight sharing on a sparse LeNet-5: encoded bytes per layer, codecs compared, accuracy.

For each method (k-means, DP) and bit width: quantize the saved model's nonzeros, evaluate,
encode every layer (``minidnn.compress.codec``, which keeps the smallest of packed, Huffman and
DEFLATE per stream) and report its bytes; then fine-tune the centroids for
``--finetune-steps`` and evaluate again. One table compares, per layer and stream, canonical
Huffman alone with the raw packed stream and with zlib / bz2 / lzma alone (each given the
packed bytes and one byte per symbol; the smaller is shown; for the indices each codec at its
own best index width and form). The whole-model payload is the encoded
layers plus the biases (float32, and float16 for reference); the HDF5 container is not counted.

    python benchmarks/bench_quantize.py --model /tmp/q/lenet5.h5 [--data-root DIR]
        [--bits 3 4 5 6] [--methods kmeans dp] [--per-layer conv1=8] [--finetune-steps 300]
        [--finetune-lr 1e-4] [--backend auto] [--json out.json]
"""
from __future__ import annotations

import argparse
import bz2
import json
import lzma
import time
import zlib

import numpy as np

from minidnn.backend import resolve_backend
from minidnn.compress.codec import (CODECS, INDEX_BITS_SEARCH, EncodedLayer, compact_positions,
                                    decode_layer, encode_layer, gap_symbols, huffman_encode,
                                    pack_bits)
from minidnn.compress.quantize import (QuantizedLayer, dp_quantize_1d, finetune_codebooks,
                                       kmeans_1d, quantize_model)
from minidnn.data.locate import load_mnist
from minidnn.io import load
from minidnn.train import Trainer

GENERAL = {"zlib": lambda b: zlib.compress(b, 9), "bz2": lambda b: bz2.compress(b, 9),
           "lzma": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)}


def stream_sizes(symbols: np.ndarray, width: int) -> dict[str, int]:
    """Bytes of one symbol stream: packed, Huffman, and each general codec (best of packed
    bytes or one byte per symbol as its input)."""
    packed = pack_bits(symbols, width)
    sizes = {"packed": len(packed), "huffman": len(huffman_encode(symbols, 1 << width))}
    per_symbol = symbols.astype(np.uint8 if width <= 8 else "<u2").tobytes()
    for name, compress in GENERAL.items():
        sizes[name] = min(len(compress(packed)), len(compress(per_symbol)))
    return sizes


def bias_bytes(model, dtype) -> int:
    """Bytes of every parameter that is not a quantized weight (biases), in ``dtype``."""
    return sum(p.numel * np.dtype(dtype).itemsize for n, p in model.named_parameters()
               if not p.prox)


def encode_all(records: list[QuantizedLayer]) -> list[EncodedLayer]:
    """Encode each record and check the round trip is bit-identical."""
    out = []
    for r in records:
        enc = encode_layer(r)
        back = decode_layer(enc.to_bytes(), r.name)
        assert back.dense().tobytes() == r.dense().tobytes(), f"{r.name}: round trip differs"
        out.append(enc)
    return out


def codec_table(records: list[QuantizedLayer]) -> list[dict]:
    """Per layer and stream: bytes under every codec. Index streams: each codec at its own
    best index_bits (1..12) and form (whole matrix or compact; a compact form's bitmaps are
    counted), so no codec is judged on a stream shaped for another."""
    rows = []
    for r in records:
        rows.append({"layer": r.label, "stream": "values", "width": r.bits,
                     "symbols": r.nnz, **stream_sizes(r.assignments, r.bits)})
        best: dict[str, int] = {}
        for positions, live in ((r.positions, b""), compact_positions(r)):
            for ib in INDEX_BITS_SEARCH:
                sizes = stream_sizes(gap_symbols(positions, ib), ib)
                for codec, size in sizes.items():
                    best[codec] = min(best.get(codec, size + len(live)), size + len(live))
        rows.append({"layer": r.label, "stream": "indices", "width": 0, "symbols": r.nnz,
                     **best})
    return rows


def time_dp(model) -> list[dict]:
    """Seconds of DP and k-means at 32 levels on each layer's nonzeros (best of 3)."""
    rows = []
    for name, p in model.prox_parameters():
        w = p.host_dense().ravel()
        x = w[w != 0]
        row = {"layer": name.split(".")[-2], "nnz": int(x.size),
               "unique": int(np.unique(x).size)}
        for label, fn in (("dp", dp_quantize_1d), ("kmeans", kmeans_1d)):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                c, a = fn(x, 32)
                best = min(best, time.perf_counter() - t0)
            d = x.astype(np.float64) - c[a]
            row[f"{label}_s"], row[f"{label}_sse"] = best, float(d @ d)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a sparse model file (minidnn train --out)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--bits", type=int, nargs="+", default=[3, 4, 5, 6])
    ap.add_argument("--methods", nargs="+", default=["kmeans", "dp"])
    ap.add_argument("--per-layer", default=None, help="bits overrides, e.g. conv1=8")
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--finetune-lr", type=float, default=1e-4)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--json", default=None, help="write every figure to this file")
    args = ap.parse_args()

    backend = resolve_backend(args.backend)
    train_ds, test_ds = load_mnist(args.data_root)
    base = load(args.model, backend)
    base_acc = Trainer(base, None).evaluate(test_ds)["accuracy"]
    nnz = {n.split(".")[-2]: int((p.host_dense() != 0).sum()) for n, p in base.prox_parameters()}
    print(f"{args.model}: {sum(nnz.values())} nonzeros {nnz}, test accuracy "
          f"{100 * base_acc:.2f}% on {backend.device_name}")
    print(f"biases: {bias_bytes(base, np.float32)} B float32, {bias_bytes(base, np.float16)} B "
          f"float16")
    results = {"model": args.model, "accuracy": base_acc, "nnz": nnz,
               "bias_bytes_f32": bias_bytes(base, np.float32),
               "bias_bytes_f16": bias_bytes(base, np.float16), "runs": []}

    print("\nDP vs k-means at 32 levels (seconds, best of 3; squared error)")
    results["timing"] = time_dp(base)
    for t in results["timing"]:
        print(f"  {t['layer']:>6} nnz {t['nnz']:>6} unique {t['unique']:>6}  dp {t['dp_s']:.3f} s "
              f"sse {t['dp_sse']:.5f}   kmeans {t['kmeans_s']:.3f} s sse {t['kmeans_sse']:.5f}")

    for method in args.methods:
        for bits in args.bits:
            model = load(args.model, backend)
            records = quantize_model(model, bits, args.per_layer, method)
            acc_q = Trainer(model, None).evaluate(test_ds)["accuracy"]
            encoded = encode_all(records)
            layers = [{"layer": r.label, "nnz": r.nnz, "bits": r.bits, "k": r.k,
                       "index_bits": e.index_bits, "compact": bool(e.live),
                       "codecs": [CODECS[e.values_codec], CODECS[e.indices_codec]],
                       **e.stream_bytes, "total": e.nbytes} for r, e in zip(records, encoded)]
            run = {"method": method, "bits": bits, "accuracy_quantized": acc_q,
                   "layers": layers, "layer_bytes": sum(e.nbytes for e in encoded),
                   "codecs": codec_table(records)}
            if args.finetune_steps:
                t0 = time.perf_counter()
                tuned, _ = finetune_codebooks(model, records, train_ds, args.finetune_steps,
                                              lr=args.finetune_lr, log=lambda s: None)
                run["finetune_seconds"] = time.perf_counter() - t0
                run["accuracy_finetuned"] = Trainer(model, None).evaluate(test_ds)["accuracy"]
                run["layer_bytes_finetuned"] = sum(e.nbytes for e in encode_all(tuned))
            run["payload_bytes"] = run["layer_bytes"] + results["bias_bytes_f32"]
            run["payload_bytes_f16_biases"] = run["layer_bytes"] + results["bias_bytes_f16"]
            results["runs"].append(run)
            report(run, args.finetune_steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def report(run: dict, steps: int) -> None:
    """Print one run: accuracy, per-layer bytes, the codec comparison."""
    tuned = (f", after {steps} fine-tuning steps {100 * run['accuracy_finetuned']:.2f}%"
             if "accuracy_finetuned" in run else "")
    print(f"\n== {run['method']} {run['bits']} bits: accuracy "
          f"{100 * run['accuracy_quantized']:.2f}%{tuned}; layers {run['layer_bytes']} B, "
          f"payload with float32 biases {run['payload_bytes']} B "
          f"(float16 biases {run['payload_bytes_f16_biases']} B)")
    print(f"  {'layer':>6} {'nnz':>6} {'bits':>4} {'k':>3} {'ibits':>5} {'codebook':>8} "
          f"{'values':>7} {'indices':>7} {'header':>6} {'total':>6}  codecs (values/indices)")
    for r in run["layers"]:
        print(f"  {r['layer']:>6} {r['nnz']:>6} {r['bits']:>4} {r['k']:>3} {r['index_bits']:>5} "
              f"{r['codebook']:>8} {r['values']:>7} {r['indices']:>7} {r['header']:>6} "
              f"{r['total']:>6}  {'/'.join(r['codecs'])}{', compact' if r['compact'] else ''}")
    print(f"  {'stream':>14} {'symbols':>7} {'packed':>7} {'huffman':>7} {'zlib':>7} {'bz2':>7} "
          f"{'lzma':>7}")
    for c in run["codecs"]:
        print(f"  {c['layer'] + ' ' + c['stream']:>14} {c['symbols']:>7} {c['packed']:>7} "
              f"{c['huffman']:>7} {c['zlib']:>7} {c['bz2']:>7} {c['lzma']:>7}")
    totals = {k: sum(c[k] for c in run["codecs"]) for k in ("packed", "huffman", "zlib", "bz2",
                                                             "lzma")}
    print("  " + "  ".join(f"{k} {v} B" for k, v in totals.items()) + "  (all streams)")


if __name__ == "__main__":
    main()
