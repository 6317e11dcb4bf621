#!/usr/bin/env bash
# Run the whole test suite on a fresh machine, doing all set-up itself:
#   - a virtual environment in .venv with the project and its test/dev extras,
#   - the pinned js-libp2p interop peer (npm ci from tests/interop/js/package-lock.json).
# Extra arguments are passed to pytest, e.g. `bash scripts/test.sh -k noise`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
# multiaddr pulls in trio-typing, whose stale "trio-stubs" would shadow trio's own (current)
# annotations for mypy. Nothing imports it at run time; remove it from this dev environment.
.venv/bin/python -m pip uninstall --quiet --yes trio-typing >/dev/null 2>&1 || true

bash scripts/install_js_peer.sh

# Interop tests must run here, not skip: the set-up above provides everything they need.
export LIBP2P_REQUIRE_INTEROP=1
exec .venv/bin/python -m pytest "$@"
