#!/usr/bin/env bash
# Quick start 2: run the whole test suite (unit, AppTest, real server + headless Chromium).
# Installs what it needs: the virtualenv and, for the browser tests, Debian's chromium (never a downloaded browser).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup-env.sh
if [ ! -x /usr/bin/chromium ]; then
    echo "[setup] installing Debian's chromium for the browser tests" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
export PYTHONUNBUFFERED=1 ATLAS_TEST_ARTIFACTS="${ATLAS_TEST_ARTIFACTS:-$ROOT/test-artifacts}"
exec .venv/bin/python -m pytest "$@"
