#!/usr/bin/env bash
# Install the reference implementation used by bench/bench_attacks.py (torchattacks) into bench/.reference.
# Bench-only: never a project dependency, never imported by core/ or tests/. --no-deps so it cannot pull in or
# replace anything in the project's environment (torch, numpy, ... come from .venv); --target keeps it out of
# .venv's site-packages. The bench script puts bench/.reference on sys.path only when it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_BIN="${PIP:-.venv/bin/pip}"
"$PIP_BIN" install --no-deps --upgrade --target bench/.reference torchattacks==3.5.1
PYTHONPATH=bench/.reference .venv/bin/python -c "import torchattacks; print('torchattacks', torchattacks.__version__, 'imports OK')"
