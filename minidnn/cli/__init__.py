"""The ``minidnn`` command line: one module per subcommand, each parsing its options and calling
the library (``minidnn.workflows``, ``minidnn.compress.sweep``). Nothing in the library imports
this package."""
from __future__ import annotations

import argparse
import sys

from ..backend import resolve_backend
from ..errors import MinidnnError
from . import devices, evaluate, info, mm, plot, prune, sweep, train

SUBCOMMANDS = (train, devices, info, evaluate, sweep, prune, mm, plot)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (method choices read from the registry when called)."""
    parser = argparse.ArgumentParser(
        prog="minidnn", description="Learn compressed networks from scratch on OpenCL devices.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; a MinidnnError is one line on stderr, exit 2."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # log lines reach a redirected file at once
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MinidnnError as exc:
        print(f"minidnn: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["main", "build_parser", "resolve_backend", "SUBCOMMANDS"]
