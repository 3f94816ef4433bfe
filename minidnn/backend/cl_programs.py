"""Loads the OpenCL sources in ``cl_kernels/``, builds each file once per context, caches Kernels.

PyOpenCL keeps compiled binaries in its on-disk cache, so a new process pays only a cache lookup.
``Kernel`` objects are fetched once and reused (fetching them per call costs a lock and a lookup).
Builds are quiet: the compiler's log is kept in ``build_logs`` (some runtimes, e.g. Intel's, log
on every successful build), shown when a build fails or when ``MINIDNN_VERBOSE_BUILD=1``.
"""
from __future__ import annotations

import os
import sys
import warnings
import zlib
from importlib import resources
from pathlib import Path

import pyopencl as cl

from ..errors import KernelError


def kernel_dir() -> Path:
    """Folder holding the ``.cl`` sources and the shared ``common.h`` header."""
    return Path(str(resources.files("minidnn.cl_kernels")))


# Variants of a source file, built as ``stem@variant``: the source with these lines in front.
# q8 / q16: the products read each weight through a per-layer codebook, ``codebook[codes[e]]``,
# with uchar / ushort codes (quantized weights on the device; see VALUE_ARGS in common.h).
# mr12: gemm.cl with 12-row register blocks (CPUs with AVX-512; see GemmOps).
VARIANTS = {"q8": "#define QCODES uchar\n", "q16": "#define QCODES ushort\n",
            "mr12": "#define GEMM_MR 12\n"}


class ProgramCache:
    """Per-context cache: source file stem -> built Program, (stem, kernel name) -> Kernel."""

    def __init__(self, context: cl.Context, options: tuple[str, ...] = ()) -> None:
        self.context = context
        self.options = ["-I", str(kernel_dir()), *options]
        self._programs: dict[str, cl.Program] = {}
        self._kernels: dict[tuple[str, str], cl.Kernel] = {}
        self.build_logs: dict[str, str] = {}

    def program(self, stem: str) -> cl.Program:
        """The built program of ``cl_kernels/<stem>.cl``; ``base@variant`` builds ``base.cl``
        with the lines of ``VARIANTS[variant]`` in front."""
        prog = self._programs.get(stem)
        if prog is None:
            base, _, variant = stem.partition("@")
            path = kernel_dir() / f"{base}.cl"
            if not path.is_file() or (variant and variant not in VARIANTS):
                raise KernelError(f"OpenCL source {path} (variant {variant!r}) is missing from "
                                  f"the installation")
            source = VARIANTS.get(variant, "") + path.read_text()
            # Headers are inlined by the compiler via -I, so PyOpenCL's cache key (the source)
            # would not see them change: put a checksum of their text into the source.
            headers = "".join(h.read_text() for h in sorted(kernel_dir().glob("*.h")))
            source = f"/* headers crc32 {zlib.crc32(headers.encode()):08x} */\n" + source
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", cl.CompilerWarning)
                    prog = cl.Program(self.context, source).build(options=self.options)
            except cl.RuntimeError as exc:
                raise KernelError(f"building {path.name} failed:\n{exc}") from exc
            self.build_logs[stem] = _build_log(prog)
            if self.build_logs[stem] and os.environ.get("MINIDNN_VERBOSE_BUILD") == "1":
                print(f"build log of {path.name}:\n{self.build_logs[stem]}", file=sys.stderr)
            self._programs[stem] = prog
        return prog

    def kernel(self, stem: str, name: str) -> cl.Kernel:
        """The Kernel ``name`` from ``cl_kernels/<stem>.cl``, built and fetched on first use."""
        key = (stem, name)
        k = self._kernels.get(key)
        if k is None:
            k = cl.Kernel(self.program(stem), name)
            self._kernels[key] = k
        return k


def _build_log(program: cl.Program) -> str:
    """The compiler's messages for ``program`` on each of its devices ('' when none)."""
    logs = []
    for device in program.get_info(cl.program_info.DEVICES):
        log = (program.get_build_info(device, cl.program_build_info.LOG) or "").strip()
        if log:
            logs.append(f"[{device.name.strip()}] {log}")
    return "\n".join(logs)
