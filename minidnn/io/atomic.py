"""Atomic replacement of a file by bytes held in memory, with plain Python I/O.

The bytes go to a hidden temp file beside the target (``.NAME.PID-XXXXXXXX.tmp``), which is
fsynced, given the mode of the file it replaces, renamed over the target, and the folder is
fsynced. Temp files of this naming left by a killed writer are removed on the next write of the
same target. Every failure is a ``FileWriteError`` naming the target and the reason; the target
is then untouched.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path

from ..errors import FileWriteError

WRITE_BLOCK = 1 << 24        # bytes per os.write call
SPACE_MARGIN = 1 << 16       # free bytes kept beyond the file's size
STALE_SECONDS = 3600         # a temp file untouched this long is stale even if its writer runs


def temp_path(path: Path) -> Path:
    """A fresh temp file name beside ``path``, naming this process."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _temp_pattern(name: str) -> re.Pattern:
    """Our temp names for ``name``: with a writer pid, or the older ``.NAME.XXXXXXXX.tmp``."""
    return re.compile(rf"\.{re.escape(name)}\.(?:(\d+)-)?[0-9a-f]{{8}}\.tmp")


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return True


def _is_stale(entry: os.DirEntry, pid: str | None) -> bool:
    """Whether a temp file's writer is gone (pid not running here) or it is long untouched."""
    try:
        age = time.time() - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    if age > STALE_SECONDS:
        return True
    return pid is not None and int(pid) != os.getpid() and not _pid_running(int(pid))


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete the temp files of an earlier, interrupted write of ``path``; returns them."""
    pattern = _temp_pattern(path.name)
    removed = []
    with contextlib.suppress(OSError), os.scandir(path.parent or ".") as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and entry.is_file(follow_symlinks=False) and _is_stale(entry, match[1]):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def check_free_space(folder: Path, size: int, target: Path) -> None:
    """FileWriteError when ``folder``'s file system has clearly too little room for ``size``."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return  # unknown: the write itself will tell
    free = st.f_bavail * st.f_frsize
    if free < size + SPACE_MARGIN:
        raise FileWriteError(f"{target}: not enough space left on the device to write "
                             f"{size:,} bytes ({free:,} bytes free in {folder})")


def _existing_mode(path: Path) -> int | None:
    """Permission bits of the regular file at ``path``; None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise FileWriteError(f"{path}: is a folder, not a file")
    return stat.S_IMODE(st.st_mode)


def _write_all(fd: int, data: memoryview) -> None:
    for start in range(0, len(data), WRITE_BLOCK):
        block = data[start:start + WRITE_BLOCK]
        while len(block):
            block = block[os.write(fd, block):]


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def write_atomically(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Replace ``path`` by ``data`` all at once: readers see the old file or the new one."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    data = memoryview(data).cast("B")
    mode = _existing_mode(path)
    remove_stale_temps(path)
    check_free_space(folder, len(data), path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # new files: the umask
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # an overwritten file keeps its permissions
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FileWriteError(f"{path}: cannot write ({_reason(exc)})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(folder)
