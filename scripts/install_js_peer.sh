#!/usr/bin/env bash
# Installs the pinned js-libp2p interop peer (tests/interop/js) from its lockfile.
# Idempotent: skips `npm ci` when node_modules already matches package-lock.json and this
# Node version. Quiet on success; on failure prints npm's output and exits non-zero.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/interop/js" && pwd)"
fail() { echo "install_js_peer: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node is not on PATH (the js interop peer needs Node >= 20)"
command -v npm >/dev/null || fail "npm is not on PATH"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || fail "Node >= 20 is needed, found $(node --version)"
[ -f "$dir/package-lock.json" ] || fail "$dir/package-lock.json is missing"

stamp_file="$dir/node_modules/.install-stamp"
stamp="$(node --version) $(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
    exit 0
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# libp2p 3.x declares node >= 22; on Node 20 npm only warns (EBADENGINE) and
# peer.mjs polyfills what is missing. --loglevel=error hides those warnings.
if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    cat "$log" >&2
    fail "npm ci failed in $dir"
fi
# Smoke check: the modules load and the polyfill suffices on this Node.
if ! (cd "$dir" && node --input-type=module -e \
    "import './polyfill.mjs'; await import('libp2p'); await import('@libp2p/tcp')") >"$log" 2>&1; then
    cat "$log" >&2
    fail "installed modules do not load under $(node --version)"
fi
echo "$stamp" >"$stamp_file"
