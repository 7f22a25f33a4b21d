"""House rules that a test can hold: core never imports streamlit; the CLI's --help is instant."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_streamlit() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "core").rglob("*.py") if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_core_files_stay_reviewable() -> None:
    too_long = {str(p.relative_to(ROOT)): n for p in (ROOT / "core").rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420}
    assert too_long == {}


def test_help_is_fast_and_imports_no_torch(subprocess_env: dict) -> None:
    probe = "import sys, runpy; sys.argv=['core','--help']\ntry:\n runpy.run_module('core', run_name='__main__')\n" \
            "except SystemExit: pass\nprint('torch' in sys.modules)"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "build-defaults" in out.stdout
    assert out.stdout.strip().endswith("False"), "--help must not import torch"
    assert elapsed < 5.0
