#!/usr/bin/env bash
# Run the whole test suite on a fresh machine, doing all set-up itself:
#   - a virtual environment in .venv with the project and its test/dev extras,
#   - the pinned js-libp2p interop peer (npm ci from tests/interop/js/package-lock.json),
#   - the go-libp2p interop peer (p2pd v0.32.1 out of hivemind 1.1.12's wheel, sha256-checked)
#     and the py-libp2p 0.8.1 interop peer (in its own .venv-pylibp2p),
#   - nftables for the NAT lab, when running as root on a machine with apt-get,
#   - miniupnpd (Debian's miniupnpd-nftables) and stund (stun-server) for the lab's
#     port-mapping routers, likewise,
#   - Debian's chromium for the documentation's browser test (tests/docs), likewise,
#   - Debian's redis-server for the hole-punch contract and Redis client tests, likewise.
# The documentation (docs/) is built by the tests themselves, with Sphinx and warnings as
# errors (tests/docs/conftest.py: sphinx-build -W --keep-going), into a temporary directory.
# Extra arguments are passed to pytest, e.g. `bash scripts/test.sh -k noise`.
set -euo pipefail
cd "$(dirname "$0")/.."

# .venv with the project and its test/dev extras (shared with scripts/demo.sh).
bash scripts/setup.sh test,dev

bash scripts/install_js_peer.sh
bash scripts/install_go_peer.sh
bash scripts/install_py_peer.sh

# The NAT lab (tests/natlab) needs nftables. Install it when we can (root, apt-get); if that
# fails, carry on: the lab tests then fail with the reason (or skip when not root).
if [ "$(id -u)" = 0 ] && ! command -v nft >/dev/null 2>&1 && [ ! -x /usr/sbin/nft ] \
    && command -v apt-get >/dev/null 2>&1; then
    if ! { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }; then
        echo "warning: could not install nftables; the NAT lab tests will report why" >&2
    fi
fi

# The lab's port-mapping routers run Debian's miniupnpd 2.3.1 (nftables backend) and its
# STUN test asks the lab's stund. Both are started by the tests themselves, by PID, inside
# lab namespaces; the packages' own services must never run: miniupnpd-nftables ships only
# the binary and its nft scripts (no service, no debconf questions -- those are in the
# separate `miniupnpd` package, which we do not install), and stun-server's init script
# exits unless START_DAEMON=true in /etc/default/stun. A policy-rc.d that refuses every
# start during the install makes sure of it (only if the machine has none; removed after).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && { ! [ -x /usr/sbin/miniupnpd ] || ! [ -x /usr/sbin/stund ]; }; then
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    fi
    if ! { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            miniupnpd-nftables stun-server >/dev/null; }; then
        echo "warning: could not install miniupnpd/stund; the port-mapping lab tests will report why" >&2
    fi
    if [ -n "$policy" ]; then rm -f "$policy"; fi
fi

# The test-plans hole-punch contract (tests/natlab/test_hole_punch_contract.py) and our Redis
# client's tests coordinate through a real Redis: Debian's redis-server, installed the same way
# (the tests start their own server on a free port; the package's service is not used).
if [ "$(id -u)" = 0 ] && ! command -v redis-server >/dev/null 2>&1 \
    && [ ! -x /usr/bin/redis-server ] && command -v apt-get >/dev/null 2>&1; then
    if ! { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; then
        echo "warning: could not install redis-server; the Redis tests will report why" >&2
    fi
fi

# The documentation's browser test (tests/docs) renders the built pages in Debian's headless
# chromium. Install it the same way; if that fails, the test reports why.
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ] \
    && command -v apt-get >/dev/null 2>&1; then
    if ! { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
        echo "warning: could not install chromium; the docs browser test will report why" >&2
    fi
fi

# Interop tests must run here, not skip: the set-up above provides everything they need.
export LIBP2P_REQUIRE_INTEROP=1
exec .venv/bin/python -m pytest "$@"
