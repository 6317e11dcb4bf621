#!/usr/bin/env bash
# Installs the py-libp2p interop peer: PyPI's `libp2p` 0.8.1 in its own virtual environment,
# .venv-pylibp2p (git-ignored), since it has the same package name as this project. The peer
# program is tests/interop/py/peer.py, run by that environment's python outside our tree.
# Idempotent: does nothing when the environment already has that version. Quiet on success;
# on failure prints pip's output and exits non-zero.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-pylibp2p"
version="0.8.1"
stamp="$venv/.install-stamp"
fail() { echo "install_py_peer: $*" >&2; exit 1; }

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "libp2p==$version" ]; then
    exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || fail "$python is not on PATH"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
rm -rf "$venv"
"$python" -m venv "$venv" >"$log" 2>&1 || { cat "$log" >&2; fail "could not create $venv"; }
# Run from / with no PYTHONPATH so that nothing of our own `libp2p` is in sight.
if ! (cd / && env -u PYTHONPATH "$venv/bin/python" -m pip install --quiet \
    --disable-pip-version-check "libp2p==$version") >"$log" 2>&1; then
    cat "$log" >&2
    fail "pip install libp2p==$version failed"
fi
if ! (cd / && env -u PYTHONPATH "$venv/bin/python" -c \
    "import libp2p, importlib.metadata as m; assert m.version('libp2p') == '$version'; \
     from libp2p import new_host") >"$log" 2>&1; then
    cat "$log" >&2
    fail "py-libp2p $version does not import in $venv"
fi
echo "libp2p==$version" >"$stamp"
