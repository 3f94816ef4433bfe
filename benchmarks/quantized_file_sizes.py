"""Bytes of one quantized model file in each container and layer format (issue 16).

    python benchmarks/quantized_file_sizes.py Q.h5

Loads a quantized file (format 3 or 4) and saves the same weights, metadata and float16 biases
in file format 3 or 4 with layer format 1 (fixed-width fields, float32 codebooks) or 2 (varint
fields, float16 codebooks when exact), into a temporary folder; prints each size.
"""
from __future__ import annotations

import os
import sys
import tempfile

from minidnn.compress import codec
from minidnn.io import load, save


def sizes(path: str) -> dict[tuple[int, int], int]:
    """{(file format, layer format): bytes} of the model in ``path``."""
    model = load(path)
    if not model.quantized:
        raise SystemExit(f"{path}: not a quantized model file")
    out, original = {}, codec.EncodedLayer.to_bytes
    with tempfile.TemporaryDirectory() as tmp:
        for file_format in (3, 4):
            for layer_format in (1, 2):
                codec.EncodedLayer.to_bytes = \
                    lambda self, version=layer_format: original(self, version)
                try:
                    target = os.path.join(tmp, f"v{file_format}-l{layer_format}.h5")
                    save(model, target, metadata=model.metadata, quantized=model.quantized,
                         bias_dtype="float16", format_version=file_format)
                    out[(file_format, layer_format)] = os.path.getsize(target)
                finally:
                    codec.EncodedLayer.to_bytes = original
    return out


if __name__ == "__main__":
    for (f, layer), n in sizes(sys.argv[1]).items():
        print(f"file format {f}, layer format {layer}: {n:,} B")
