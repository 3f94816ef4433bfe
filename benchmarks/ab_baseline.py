"""An older commit's kernels and backend op group, built beside this checkout's, for A/B runs.

bench_gemm_ab.py and bench_wgrad_ab.py time an op group of an older commit (its ``.cl`` file,
the headers of that commit and its Python module, read from git) against this checkout's in
one process, on the same OpenCL context, so both sides see the same machine load.
"""
from __future__ import annotations

import importlib.util
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

import pyopencl as cl

ROOT = Path(__file__).resolve().parent.parent


def git_show(ref: str, path: str) -> str:
    """The text of ``path`` at commit ``ref`` of this repository."""
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def build_old_program(rt, stem: str, ref: str, source_file: str) -> None:
    """Build ``cl_kernels/<source_file>`` of ``ref`` with ``ref``'s headers in ``rt``'s context
    and register it in ``rt``'s program cache as ``stem``."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", ref,
                            "cl_kernels/"], check=True, capture_output=True,
                           text=True).stdout.split()
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            if name.endswith(".h"):
                Path(folder, Path(name).name).write_text(git_show(ref, name))
        source = f"/* {stem} {ref} */\n" + git_show(ref, f"cl_kernels/{source_file}")
        with warnings.catch_warnings():   # Intel's runtime logs on every build
            warnings.simplefilter("ignore", cl.CompilerWarning)
            rt.programs._programs[stem] = cl.Program(rt.context, source).build(
                options=["-I", folder])


def load_old_module(ref: str, module: str) -> ModuleType:
    """``minidnn/backend/<module>.py`` of ``ref``, imported as a private module of the
    ``minidnn.backend`` package (its relative imports resolve to this checkout's)."""
    spec = importlib.util.spec_from_loader(f"minidnn.backend._{module}_ab_old", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "minidnn.backend"
    exec(compile(git_show(ref, f"minidnn/backend/{module}.py"), f"{ref}:{module}.py", "exec"),
         mod.__dict__)
    return mod


class OldRuntime:
    """A backend's runtime whose launches of program ``stem`` go to the old program
    ``old_stem``, and whose scratch buffers (with ``own_scratch``) are the old group's own."""

    def __init__(self, rt, stem: str, old_stem: str, own_scratch: bool = False) -> None:
        self._rt, self._stem, self._old_stem = rt, stem, old_stem
        self._own_scratch = own_scratch

    def __getattr__(self, name: str):
        return getattr(self._rt, name)

    def launch(self, stem: str, name: str, *args) -> None:
        self._rt.launch(self._old_stem if stem == self._stem else stem, name, *args)

    def scratch(self, role: str, nfloats: int):
        return self._rt.scratch(("old." if self._own_scratch else "") + role, nfloats)
