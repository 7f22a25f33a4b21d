#!/usr/bin/env bash
# Quick start 1: launch the dashboard on the shipped models (no download, no GPU needed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/caller-paths.sh"
cd "$ROOT"
bash scripts/setup-env.sh
exec .venv/bin/python -m streamlit run dashboard/app.py --server.headless true "$@"
