"""docs/tutorial.md runs as written: its python blocks, in fresh processes, in order."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OPENCL_DEVICES

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
NEW_PROCESS = "# new process"


def tutorial_scripts(markdown: str) -> list[str]:
    """The ```python blocks joined into scripts; a block starting '# new process' starts the
    next script (a process that shares nothing with the ones before but the folder)."""
    scripts: list[list[str]] = [[]]
    for block in re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M):
        if block.startswith(NEW_PROCESS) and scripts[-1]:
            scripts.append([])
        scripts[-1].append(block)
    return ["\n".join(blocks) for blocks in scripts if blocks]


def test_tutorial_blocks_are_found():
    scripts = tutorial_scripts(TUTORIAL.read_text())
    assert len(scripts) == 2
    assert "class TinyNet" in scripts[0] and "mdn.save(" in scripts[0]
    assert "TinyNet" not in scripts[1].split("print(")[0]   # the new process never names it


@pytest.mark.skipif(not OPENCL_DEVICES, reason="the tutorial runs inference on an OpenCL device")
def test_tutorial_runs(tmp_path, mnist_dir):
    env = dict(os.environ, MINIDNN_DATA=str(mnist_dir))
    outputs = []
    for i, script in enumerate(tutorial_scripts(TUTORIAL.read_text())):
        path = tmp_path / f"tutorial_{i}.py"
        path.write_text(script)
        done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, \
            f"script {i} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    assert (tmp_path / "tiny.h5").is_file()
    accuracy = re.search(r"TinyNet on .*: ([0-9.]+)% of 1,000 test images", outputs[1])
    assert accuracy and float(accuracy.group(1)) > 80.0, outputs[1][-2000:]
    assert "rebuilt from the module tree" in outputs[1] and "CSR" in outputs[1]


def test_readme_five_lines_use_the_public_api():
    """The README's short version (not run: it trains on a device) names only what exists."""
    import minidnn as mdn
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Your own network.*?^```python\n(.*?)^```", readme, flags=re.S | re.M)
    assert block and len(block.group(1).strip().splitlines()) == 5
    used = {node.attr for node in ast.walk(ast.parse(block.group(1)))
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "mdn"}
    assert used and used <= set(mdn.__all__), used - set(mdn.__all__)
