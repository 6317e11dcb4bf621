#!/usr/bin/env bash
# The demo on a fresh machine: set up .venv (scripts/setup.sh), then run the relay, the
# listener and the dialer of examples/nat as three processes, their output labelled and
# interleaved, ending with the dialer's result (see scripts/demo.py).
#   bash scripts/demo.sh          # on loopback
#   sudo bash scripts/demo.sh --lab   # behind two real NATs (network namespaces, nftables)
# Other arguments go to scripts/demo.py (e.g. --nat-b symmetric with --lab).
set -euo pipefail
cd "$(dirname "$0")/.."

lab=0
for arg in "$@"; do
    if [ "$arg" = --lab ]; then lab=1; fi
done
if [ "$lab" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "demo: --lab builds network namespaces and NATs, which needs root:" \
        "run \`sudo bash scripts/demo.sh --lab\` (or the demo without --lab, on loopback)" >&2
    exit 1
fi
if [ "$lab" = 1 ]; then
    bash scripts/setup.sh --nftables
else
    bash scripts/setup.sh
fi
exec .venv/bin/python scripts/demo.py "$@"
