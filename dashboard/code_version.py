"""Whether the Atlas's code on disk is still the code this server started with.

Streamlit reads a page's script from disk on every run but keeps the modules it imported: after a ``git pull`` into
a running dashboard, a new page called an old module and failed (``module 'dashboard.state' has no attribute
'IN_URL'``). The app compares the code's fingerprint with the one taken when this module was first imported (once
per server process) and asks for a restart when they differ.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("core", "dashboard", "pages")


def fingerprint(root: Path = ROOT, folders: tuple[str, ...] = FOLDERS) -> tuple[int, int]:
    """(how many .py files, the newest one's modification time in ns) under ``folders``: a file edited, added or
    removed changes it. About a millisecond for the Atlas's ~200 files."""
    count, newest = 0, 0
    stack = [root / folder for folder in folders]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:  # a folder removed meanwhile: its files are gone, which the count shows
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                stack.append(Path(entry.path))
            elif entry.name.endswith(".py"):
                count += 1
                newest = max(newest, entry.stat().st_mtime_ns)
    return count, newest


STARTED = fingerprint()


def changed_since_start() -> bool:
    return fingerprint() != STARTED
