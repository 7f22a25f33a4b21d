"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

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


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict]:
    """Time several peers in alternating order per repeat, so machine noise falls on all of them alike."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for rep in range(repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    out: dict[str, dict] = {k: {"best_s": min(v), "median_s": statistics.median(v), "n": repeats, "samples": v}
                            for k, v in samples.items()}
    return out


def paired_ratio(t: dict[str, dict], peer: str, ours: str) -> float:
    """Median over repeats of peer time ÷ our time in the same repeat: a neighbour's burst slows both members of a
    pair, so this moves less than the ratio of the two medians."""
    return statistics.median(p / o for p, o in zip(t[peer]["samples"], t[ours]["samples"]))
