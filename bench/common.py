"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def emit(lines: list[str], out: Path | None) -> None:
    """Print a Markdown section and, with ``out``, append it to that file (bench/RESULTS.md)."""
    text = "\n".join(lines)
    print(text)
    if out is not None:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
