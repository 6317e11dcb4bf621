#!/usr/bin/env bash
# Set up a fresh machine for the project's commands (scripts/test.sh, scripts/demo.sh):
# a virtual environment in .venv with the project installed in editable mode.
#   bash scripts/setup.sh              # the library and its runtime dependencies
#   bash scripts/setup.sh test,dev     # ... with these extras (what scripts/test.sh uses)
#   bash scripts/setup.sh --nftables   # ... and nftables for the NAT lab (root, apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS=""
NFTABLES=0
for arg in "$@"; do
    case "$arg" in
        --nftables) NFTABLES=1 ;;
        *) EXTRAS=$arg ;;
    esac
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
# multiaddr pulls in trio-typing, whose stale "trio-stubs" would shadow trio's own (current)
# annotations for mypy. Nothing imports it at run time; remove it from this dev environment.
.venv/bin/python -m pip uninstall --quiet --yes trio-typing >/dev/null 2>&1 || true

# The NAT lab needs nftables. Install it when we can (root, apt-get); if that fails, carry on:
# the lab then says what is missing.
if [ "$NFTABLES" = 1 ] && [ "$(id -u)" = 0 ] && ! command -v nft >/dev/null 2>&1 \
    && [ ! -x /usr/sbin/nft ] && command -v apt-get >/dev/null 2>&1; then
    if ! { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }; then
        echo "warning: could not install nftables; the NAT lab will report why" >&2
    fi
fi
