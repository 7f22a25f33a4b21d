"""Process-wide tuning for the CPU engine: keep freed tensor memory inside the process (glibc's allocator).

Why: the attacks and training loops allocate and free the same activation-sized blocks (0.1–30 MB) hundreds of
times a second. glibc's defaults hand such blocks back to the kernel on ``free`` (``munmap``, or trimming the top of
the heap), so the next allocation of the same size page-faults and the kernel zeroes it again: a PGD-10 call on 360
digits took ≈ 29,000 minor page faults (≈ 115 MB zeroed), the quick ensemble ≈ 340,000. With a fixed mmap
threshold of 32 MB (glibc's maximum) and a trim threshold of 256 MB, freed blocks are reused instead: 0 and ≈ 800
faults, and the quick ensemble 11 % faster (bench/bench_allocator.py; the gain in time depends on the workload and
is within this machine's noise for some). PyTorch's CPU tuning guide reaches the same end with jemalloc or tcmalloc via
``LD_PRELOAD``; this needs no extra library.

The cost: a process keeps up to 256 MB of freed memory per allocator arena instead of returning it at once.

``tune_allocator()`` is called by the entry points (``python -m core``, the dashboard, the benchmarks); it is
idempotent. It does nothing off glibc (macOS, Windows, musl), when ``ATLAS_ALLOCATOR=system``, or when the user set
glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (theirs win).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc refuses anything above HEAP_MAX_SIZE / 2 = 32 MB on 64-bit
TRIM_THRESHOLD = 256 * 2**20

_state: str | None = None


def tune_allocator() -> str:
    """Apply the allocator settings once per process; return what was done, in words (for logs and tests)."""
    global _state
    if _state is None:
        _state = _tune()
    return _state


def _tune() -> str:
    if os.environ.get("ATLAS_ALLOCATOR", "").lower() == "system":
        return "skipped: ATLAS_ALLOCATOR=system"
    if any(os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return "skipped: glibc settings given in the environment"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return f"skipped: not glibc ({platform.system()} {platform.libc_ver()[0] or 'unknown libc'})"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success, 0 when glibc refuses the value.
    refused = [name for name, param, value in (("mmap", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                               ("trim", M_TRIM_THRESHOLD, TRIM_THRESHOLD))
               if not mallopt(param, value)]
    if refused:
        return f"partly applied: glibc refused the {' and '.join(refused)} threshold"
    return f"applied: mmap threshold {MMAP_THRESHOLD >> 20} MB, trim threshold {TRIM_THRESHOLD >> 20} MB"
