"""Shared fixtures: every test gets its own ATLAS_HOME so nothing touches ./var."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.runtime import tune_allocator  # noqa: E402

# The code under test runs with the allocator settings of the product's entry points (core/runtime.py).
tune_allocator()


@pytest.fixture(autouse=True)
def atlas_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "atlas-home"
    monkeypatch.setenv("ATLAS_HOME", str(home))
    monkeypatch.delenv("ATLAS_DATA", raising=False)
    return home


@pytest.fixture
def subprocess_env(atlas_home: Path) -> dict[str, str]:
    """Environment for `python -m core` subprocesses: same ATLAS_HOME, repo on the path, few threads."""
    env = dict(os.environ)
    env["ATLAS_HOME"] = str(atlas_home)
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture
def restore_plugins() -> Iterator[None]:
    """The architectures and plugin records as they were before the test (it loads a plugin in this process)."""
    from core.models import ARCHS, plugins

    archs, reports = dict(ARCHS), dict(plugins._REPORTS)
    yield
    for report in plugins._REPORTS.values():
        if report.module and report.module not in {r.module for r in reports.values()}:
            sys.modules.pop(report.module, None)
    ARCHS.clear()
    ARCHS.update(archs)
    plugins._REPORTS.clear()
    plugins._REPORTS.update(reports)
