#!/usr/bin/env python3
"""Regenerate (or check) the protobuf modules committed beside every ``.proto`` in ``libp2p/``
(and in ``tests/interop/go/``, the go-libp2p daemon's control protocol our interop tests speak).

Why a script: generated code depends on the generator version (``protoc`` embeds a minimum
protobuf runtime in every ``_pb2.py``), so everyone must use the same pinned generator, and CI
must be able to tell when a committed ``_pb2.py``/``.pyi`` no longer matches its ``.proto``.

How: every ``*.proto`` under those folders is compiled in one ``python -m grpc_tools.protoc`` run
(grpcio-tools, pinned below) with ``-I <repo root>``, so generated imports are absolute
(``from libp2p.crypto.pb import crypto_pb2``). mypy-protobuf (also pinned) writes the ``.pyi``
stubs. Output goes to a temporary directory first; normal mode then copies files that differ
into the tree, ``--check`` mode only reports them and exits with status 1.

Usage::

    python scripts/gen_protos.py           # regenerate in place
    python scripts/gen_protos.py --check   # exit 1 and list stale files
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: The generator versions the committed code was produced with (keep in sync with pyproject).
PINNED = {"grpcio-tools": "1.85.1", "mypy-protobuf": "5.1.0"}

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "libp2p"
#: Folders whose ``.proto`` files are compiled (and checked) in place.
PROTO_DIRS = (PACKAGE_DIR, REPO_ROOT / "tests" / "interop" / "go")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")


def _installed_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for dist in PINNED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _mypy_plugin() -> str:
    """Locate ``protoc-gen-mypy``: next to this interpreter first, then on ``PATH``."""
    candidates = [Path(sys.executable).parent / "protoc-gen-mypy"]
    found = shutil.which("protoc-gen-mypy")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise SystemExit("error: protoc-gen-mypy not found (pip install mypy-protobuf==5.1.0)")


def find_protos() -> list[Path]:
    """Every ``.proto`` under :data:`PROTO_DIRS`, as paths relative to the repo root, sorted."""
    return sorted(p.relative_to(REPO_ROOT) for d in PROTO_DIRS for p in d.rglob("*.proto"))


def expected_outputs(protos: list[Path]) -> list[Path]:
    """The generated files (relative to the repo root) that ``protos`` should produce."""
    out: list[Path] = []
    for proto in protos:
        stem = proto.with_suffix("")
        out.extend(stem.parent / (stem.name + suffix) for suffix in GENERATED_SUFFIXES)
    return out


def orphaned_outputs(protos: list[Path]) -> list[Path]:
    """Generated files in the tree whose ``.proto`` no longer exists."""
    wanted = set(expected_outputs(protos))
    orphans: list[Path] = []
    for suffix in GENERATED_SUFFIXES:
        for path in (p for d in PROTO_DIRS for p in d.rglob("*" + suffix)):
            rel = path.relative_to(REPO_ROOT)
            if rel not in wanted:
                orphans.append(rel)
    return sorted(orphans)


def generate(protos: list[Path], out_dir: Path) -> None:
    """Run the pinned protoc over ``protos`` and write ``_pb2.py``/``_pb2.pyi`` into ``out_dir``."""
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{REPO_ROOT}",
        f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        *(str(p) for p in protos),
    ]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"error: protoc failed with exit status {result.returncode}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write anything; exit 1 if any generated file is stale or missing",
    )
    args = parser.parse_args(argv)

    versions = _installed_versions()
    print("generator: " + ", ".join(f"{dist}=={ver}" for dist, ver in versions.items()))
    mismatched = {d: v for d, v in versions.items() if v != PINNED[d]}
    if mismatched:
        wanted = " ".join(f"{d}=={PINNED[d]}" for d in mismatched)
        print(f"error: the pinned generator is required: pip install {wanted}", file=sys.stderr)
        return 2

    protos = find_protos()
    if not protos:
        print("no .proto files found")
        return 0

    stale: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="gen_protos.") as tmp:
        tmp_dir = Path(tmp)
        generate(protos, tmp_dir)
        for rel in expected_outputs(protos):
            fresh = (tmp_dir / rel).read_bytes()
            target = REPO_ROOT / rel
            if target.is_file() and target.read_bytes() == fresh:
                continue
            stale.append(rel)
            if not args.check:
                target.write_bytes(fresh)

    orphans = orphaned_outputs(protos)
    if args.check:
        if stale or orphans:
            for rel in stale:
                print(f"stale: {rel}")
            for rel in orphans:
                print(f"orphaned (no .proto): {rel}")
            print("run: python scripts/gen_protos.py", file=sys.stderr)
            return 1
        print(f"{len(protos)} .proto file(s) up to date")
        return 0

    for rel in stale:
        print(f"wrote {rel}")
    for rel in orphans:
        print(f"warning: {rel} has no .proto; delete it if it is obsolete", file=sys.stderr)
    print(f"{len(protos)} .proto file(s) compiled, {len(stale)} file(s) updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
