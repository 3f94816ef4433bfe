"""The ``minidnn`` command line: one module per subcommand, each parsing its options and calling
the library (``minidnn.workflows``, ``minidnn.compress.sweep``). Nothing in the library imports
this package."""
from __future__ import annotations

import argparse
import sys

from ..backend import resolve_backend
from ..errors import MinidnnError
from ..options import check_device_option
from ..text import printable
from . import (decompose, devices, evaluate, info, mm, plot, prune, prune_channels, quantize,
               sweep, train)

SUBCOMMANDS = (train, devices, info, evaluate, sweep, prune, mm, quantize, plot, prune_channels,
               decompose)
ERROR_CHARS = 2000  # an error message longer than this (file contents) is cut


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the usage itself is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (method choices read from the registry when called)."""
    parser = Parser(
        prog="minidnn", description="Learn compressed networks from scratch on OpenCL devices.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.register(sub)
    return parser


def _fail(message: str, code: int) -> int:
    """Print one error (control characters escaped, cut to ERROR_CHARS); return ``code``."""
    print(f"minidnn: {printable(message, ERROR_CHARS, keep_newlines=True)}", file=sys.stderr)
    return code


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments, cross-checked; argparse's SystemExit (usage error, --help) otherwise."""
    args = parser.parse_args(argv)
    try:
        check_device_option(getattr(args, "backend", "auto"), getattr(args, "device", None))
    except MinidnnError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends with one line on stderr and a non-zero status:
    2 for errors minidnn names (and usage errors), 1 for other I/O errors, 130 for Ctrl-C."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # log lines reach a redirected file at once
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # argparse has printed the usage error (or the help)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except MinidnnError as exc:
        return _fail(f"error: {exc}", exc.exit_code)
    except OSError as exc:
        return _fail(f"error: {exc}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


__all__ = ["main", "build_parser", "resolve_backend", "SUBCOMMANDS"]
