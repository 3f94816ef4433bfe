"""Output files of long runs: checked before the work starts, rescued when the final write fails.

``check_output_path`` fails at once for an output that could never be written (a folder, a
read-only or missing place), so a run does not train for hours and then lose its model.
``write_or_rescue`` writes a result; when that fails (a full disk, say) it writes the result to
the temp folder instead and raises ``FileWriteError`` saying where it is.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable

from .errors import FileWriteError

__all__ = ["check_output_path", "check_output_folder", "check_outputs", "write_or_rescue",
           "rescue_path"]


def _probe_folder(folder: Path, what: str) -> None:
    """FileWriteError unless a file can be created (and removed) in ``folder``."""
    probe = folder / f".minidnn-probe.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise FileWriteError(f"{what}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """The folder, created if missing; FileWriteError unless files can be written in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileWriteError(f"{what} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileWriteError(f"{what} {folder}: cannot create it ({exc.strerror or exc})") from None
    _probe_folder(folder, f"{what} {folder}")
    return folder


def check_output_path(path: str | os.PathLike, what: str = "output file") -> Path:
    """The path, once it is known that a file can be written there: not a folder nor a special
    file, its folder created if missing and writable. FileWriteError names the problem."""
    path = Path(path)
    if path.is_dir():
        raise FileWriteError(f"{what} {path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise FileWriteError(f"{what} {path}: exists and is not a regular file")
    check_output_folder(path.parent if str(path.parent) else Path("."), f"{what} {path}: folder")
    return path


def check_outputs(paths: dict[str, str | os.PathLike | None]) -> None:
    """Before any work: each output file given ({option: path or None}) can be written."""
    for option, path in paths.items():
        if path is not None:
            check_output_path(path, option)


def rescue_path(path: str | os.PathLike) -> Path:
    """Where a result that could not be written to ``path`` is kept: the temp folder."""
    path = Path(path)
    return Path(tempfile.gettempdir()) / f"minidnn-rescued-{os.getpid()}-{path.name}"


def write_or_rescue(write: Callable[[Path], None], path: str | os.PathLike,
                    what: str = "model") -> Path:
    """``write(path)``; if it fails with an OSError, ``write(rescue_path(path))`` and raise
    FileWriteError naming both (the result is kept unless that write fails too)."""
    path = Path(path)
    try:
        write(path)
        return path
    except OSError as exc:
        reason = str(exc)
    fallback = rescue_path(path)
    try:
        write(fallback)
    except OSError as exc:
        raise FileWriteError(f"{reason}; writing the {what} to {fallback} instead failed too "
                             f"({exc}): the {what} is lost") from None
    raise FileWriteError(f"{reason}; the {what} was saved to {fallback} instead") from None
