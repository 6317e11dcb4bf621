#!/usr/bin/env bash
# Installs the go-libp2p interop peer: p2pd, the go-libp2p-daemon built with go-libp2p v0.32.1,
# as shipped inside hivemind 1.1.12's wheel on PyPI. Only the wheel is downloaded (no
# dependencies, hivemind itself is not installed); the binary and its control protocol's
# .proto are unzipped into .interop-cache/go (git-ignored) and the binary's sha256 checked.
# Idempotent: does nothing when the binary is there with the pinned hash. Quiet on success;
# on failure says what went wrong and exits non-zero.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.interop-cache/go"
binary="$dest/p2pd"
proto="$dest/p2pd.proto"
wheel_name="hivemind-1.1.12-py3-none-manylinux2014_x86_64.whl"
# sha256 of hivemind/hivemind_cli/p2pd in that wheel.
pinned="42f8f48e62583b97cdba3c31439c08029fb2b9fc506b5bdd82c46b7cc1d279d8"
fail() { echo "install_go_peer: $*" >&2; exit 1; }

if [ -x "$binary" ] && [ -f "$proto" ] \
    && [ "$(sha256sum "$binary" | cut -d' ' -f1)" = "$pinned" ]; then
    exit 0
fi

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
    || fail "p2pd from hivemind's wheel runs on Linux x86-64 only, this is $(uname -s)-$(uname -m)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)" || fail "python3 is not on PATH"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
    -d "$work" hivemind==1.1.12 >"$work/log" 2>&1; then
    cat "$work/log" >&2
    fail "pip download hivemind==1.1.12 failed"
fi
[ -f "$work/$wheel_name" ] || fail "pip did not download $wheel_name: $(ls "$work")"
# Only the two members we need, with Python's zipfile (no unzip needed on a fresh machine).
if ! "$python" - "$work/$wheel_name" "$work/x" >"$work/log" 2>&1 <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for member in ("hivemind/hivemind_cli/p2pd", "hivemind/proto/p2pd.proto"):
        wheel.extract(member, sys.argv[2])
PY
then
    cat "$work/log" >&2
    fail "could not extract p2pd from $wheel_name"
fi
got="$(sha256sum "$work/x/hivemind/hivemind_cli/p2pd" | cut -d' ' -f1)"
[ "$got" = "$pinned" ] || fail "p2pd's sha256 is $got, expected $pinned"
mkdir -p "$dest"
install -m 0755 "$work/x/hivemind/hivemind_cli/p2pd" "$binary.tmp"
mv -f "$binary.tmp" "$binary"
install -m 0644 "$work/x/hivemind/proto/p2pd.proto" "$proto"
