"""``minidnn info``: describe a saved model file."""
from __future__ import annotations

from .. import io  # looked up at call time (tests substitute describe)
from ..compress.flops import flops_report
from ..errors import ModelFileError


def register(sub) -> None:
    i = sub.add_parser("info", help="describe a saved model: architecture, per-layer sparsity, "
                                    "size, FLOPs per layer")
    i.add_argument("path")
    i.set_defaults(func=run)


def flops_text(path: str) -> str:
    """The per-layer FLOPs table of the file's model (rebuilt on NumPy), or why there is none
    (a weights-only file cannot be rebuilt without its class)."""
    try:
        model = io.load(path)
    except ModelFileError as exc:
        return f"FLOPs not counted: {str(exc).splitlines()[0]}"
    return flops_report(model)


def run(args) -> int:
    print(io.describe(args.path))
    print()
    print(flops_text(args.path))
    return 0
