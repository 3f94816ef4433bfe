"""``minidnn info``: describe a saved model file."""
from __future__ import annotations

from .. import io  # looked up at call time (tests substitute describe)


def register(sub) -> None:
    i = sub.add_parser("info", help="describe a saved model: architecture, per-layer sparsity, size")
    i.add_argument("path")
    i.set_defaults(func=run)


def run(args) -> int:
    print(io.describe(args.path))
    return 0
