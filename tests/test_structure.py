"""The code's structure: no import cycle anywhere in the package (imports inside functions
included), the library never imports the command line, no function over 60 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where each top-level package of the installed minidnn lives in the repository (setup.cfg)
PACKAGES = {"minidnn": ROOT / "minidnn", "minidnn.models": ROOT / "models",
            "minidnn.cl_kernels": ROOT / "cl_kernels"}
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    """{dotted module name: file} for every module of the installed package."""
    found = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix] + parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        for target in targets:
            while target and target not in modules:  # 'minidnn.io.load' -> 'minidnn.io'
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_library_never_imports_the_command_line():
    graph = _graph()
    users = sorted(m for m, deps in graph.items() if not m.startswith("minidnn.cli")
                   and any(d == "minidnn.cli" or d.startswith("minidnn.cli.") for d in deps))
    assert users == []


def _own_imports(nodes) -> list[str]:
    """The minidnn modules imported by statements ``nodes`` (relative or absolute)."""
    own = []
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("minidnn")):
                own.append(n.module or ".")
            elif isinstance(n, ast.Import):
                own += [a.name for a in n.names if a.name.startswith("minidnn")]
    return own


def test_no_swallowed_import_error():
    """ImportError is caught only around optional third-party packages (pyopencl, matplotlib),
    never around minidnn's own modules, so a broken module cannot silently vanish."""
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Try):
                continue
            caught = " ".join(ast.unparse(h.type) for h in node.handlers if h.type is not None)
            if "ImportError" in caught:
                assert _own_imports(node.body) == [], \
                    f"{name}:{node.lineno} catches ImportError around minidnn's own imports"


@pytest.mark.parametrize("name,path", sorted(_modules().items()))
def test_functions_are_short(name, path):
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{name}: " + ", ".join(long)


@pytest.mark.parametrize("folder,package", [("models", "minidnn.models"),
                                            ("cl_kernels", "minidnn.cl_kernels")])
def test_zoo_and_kernels_have_one_import_path(folder, package):
    """From the repository root, models/ and cl_kernels/ import only as minidnn's packages."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", f"import {folder}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode != 0 and f"import {package}, not {folder}" in done.stderr
    ok = subprocess.run([sys.executable, "-c", f"import {package}"], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
