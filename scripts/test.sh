#!/usr/bin/env bash
# Installs everything, then runs the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${KETCH_VENV:-$PWD/.venv}
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@" tests
