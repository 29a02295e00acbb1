#!/usr/bin/env bash
# Installs everything, then runs the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${KETCH_VENV:-$PWD/.venv}
# Arguments are pytest's: paths or -k select a part (bash scripts/test.sh tests/cli -x); none: everything.
selected=0
for arg in "$@"; do
  case "$arg" in tests*|*/*.py|*::*) selected=1 ;; esac
done
if [ "$selected" = 1 ]; then
  exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
fi
# The whole suite starts with the linters: ruff and mypy, configured in pyproject.toml.
echo "test.sh: ruff check"
"$VENV/bin/ruff" check src tests benchmarks
echo "test.sh: mypy"
"$VENV/bin/mypy"
status=0
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@" tests || status=$?
# The container, image and build suites again, as an ordinary user made for the run (rootless ketch);
# what only root may do is marked root_only and skipped there, with its reason.
echo "test.sh: the container, image and build suites as a user"
"$VENV/bin/python" -m tests.rootless.as_user -q tests/containers tests/image tests/building || status=$?
exit "$status"
