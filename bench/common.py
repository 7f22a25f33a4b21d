"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.runtime import tune_allocator  # noqa: E402

# Every benchmark measures the product as it runs: with the allocator settings of its entry points.
tune_allocator()


def emit(lines: list[str], out: Path | None) -> None:
    """Print a Markdown section and, with ``out``, append it to that file (bench/RESULTS.md)."""
    text = "\n".join(lines)
    print(text)
    if out is not None:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
