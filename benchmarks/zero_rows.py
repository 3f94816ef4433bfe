"""Structured zeros of saved models: per conv/linear weight, how many rows (conv filters,
linear neurons' incoming weights) and columns (input channels / input features) are entirely
zero, beside the zero fraction. Group l2,1 (``--method gl21``) zeroes whole rows; the l1
methods leave scattered zeros, and their whole rows are the ones that died by chance.

    python benchmarks/zero_rows.py runs/lenet300-gl21.h5 runs/lenet300-l0.h5
"""
from __future__ import annotations

import argparse

import numpy as np

from minidnn.io import load


def structured_zeros(path: str) -> list[tuple[str, int, int, int, int, float]]:
    """(weight name, zero rows, rows, zero columns, columns, zero fraction) per conv/linear
    weight of the model file at ``path``."""
    model = load(path)
    out = []
    for name, p in model.prox_parameters():
        w = p.host_dense()
        rows = w.reshape(w.shape[0], -1)
        cols = np.moveaxis(w, 1, 0).reshape(w.shape[1], -1)
        out.append((name, int(np.all(rows == 0, axis=1).sum()), rows.shape[0],
                    int(np.all(cols == 0, axis=1).sum()), cols.shape[0], float(np.mean(w == 0))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="model files (.h5)")
    args = ap.parse_args()
    for path in args.files:
        print(path)
        print(f"  {'weight':<28} {'zero rows':>12} {'zero columns':>14} {'zeros':>8}")
        for name, zr, r, zc, c, z in structured_zeros(path):
            print(f"  {name:<28} {zr:>6}/{r:<5} {zc:>7}/{c:<6} {100 * z:>7.2f}%")


if __name__ == "__main__":
    main()
