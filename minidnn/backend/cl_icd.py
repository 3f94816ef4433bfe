"""Makes pip-installed OpenCL runtimes visible to the OpenCL ICD loader.

PyPI's ``intel-opencl-rt`` (Intel's OpenCL CPU runtime, the ``[cpu]`` extra) installs
``libintelocl.so`` into the environment's ``lib/`` but ships an ``.icd`` file whose library path
is a placeholder from its build, so no loader finds it. Before pyopencl first lists platforms we
write a vendors folder holding an ``.icd`` that names the installed library, plus the ``.icd``
files the loader would have read anyway, and point ``OCL_ICD_VENDORS`` at it (honoured by
ocl-icd, which the pyopencl wheels bundle, and by the Khronos loader). Set
``MINIDNN_OPENCL_REGISTER=0`` to leave the loader's environment alone.
"""
from __future__ import annotations

import hashlib
import os
import site
import sys
import tempfile
from pathlib import Path

SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")
RUNTIME_LIBRARIES = ("libintelocl.so",)  # pip-installed runtimes whose .icd must be rewritten
_registered: Path | None = None


def pip_runtime_libraries() -> list[Path]:
    """OpenCL runtime libraries installed by pip into this environment's (or the user's) lib/."""
    prefixes = dict.fromkeys([sys.prefix, sys.exec_prefix, getattr(site, "USER_BASE", None)])
    found = []
    for prefix in filter(None, prefixes):
        for name in RUNTIME_LIBRARIES:
            lib = Path(prefix) / "lib" / name
            if lib.is_file():
                found.append(lib.resolve())
    return found


def _existing_icds(source: Path) -> dict[str, str]:
    """The .icd files the loader reads from ``source`` (a folder or one file): name -> text."""
    files = [source] if source.is_file() else sorted(source.glob("*.icd")) if source.is_dir() else []
    icds = {}
    for f in files:
        try:
            icds[f.name] = f.read_text()
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable entry is skipped, as the loader itself would
    return icds


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minidnn" / "opencl-vendors"


def _write_vendors(icds: dict[str, str]) -> Path:
    """A folder holding exactly ``icds``, named by their content; written once, atomically."""
    digest = hashlib.sha256(repr(sorted(icds.items())).encode()).hexdigest()[:16]
    fallback = Path(tempfile.gettempdir()) / f"minidnn-{os.getuid()}" / "opencl-vendors"
    for root in (_cache_root(), fallback):
        target = root / digest
        if target.is_dir():
            return target
        try:
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
            for name, text in icds.items():
                (staging / name).write_text(text)
            try:
                os.replace(staging, target)
            except OSError:  # another process wrote the same folder first
                for f in staging.iterdir():
                    f.unlink()
                staging.rmdir()
            return target
        except OSError:
            continue
    raise OSError("no writable cache folder for the OpenCL vendors list")


def register_pip_runtimes() -> Path | None:
    """Point the ICD loader at a vendors folder that includes pip-installed runtimes.

    Idempotent; returns the folder, or None when there is nothing to register (no pip runtime,
    or registration turned off). Must run before pyopencl first lists platforms.
    """
    global _registered
    if _registered is not None or os.environ.get("MINIDNN_OPENCL_REGISTER", "1") == "0":
        return _registered
    libraries = pip_runtime_libraries()
    if not libraries:
        return None
    source = Path(os.environ.get("OCL_ICD_VENDORS") or SYSTEM_VENDORS)
    icds = _existing_icds(source)
    known = {line.strip() for text in icds.values() for line in text.splitlines()}
    for lib in libraries:
        if str(lib) not in known:
            icds[f"minidnn-{lib.stem}.icd"] = f"{lib}\n"
    try:
        _registered = _write_vendors(icds)
    except OSError:
        return None  # the loader keeps its defaults; the runtime simply stays invisible
    os.environ["OCL_ICD_VENDORS"] = str(_registered)
    return _registered
