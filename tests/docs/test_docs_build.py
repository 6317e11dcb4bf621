"""The documentation builds with warnings as errors and says what it promises."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import libp2p
from libp2p.host.autonat import Reachability
from libp2p.host.reachability import Expectation, Filtering
from libp2p.identify import NatMapping
from libp2p.relay.circuit_v2 import HolePunchFailure
from tests.docs.conftest import DOCS


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_every_name_of_the_libp2p_package_is_linked_from_the_api_index(
    built_docs: Path,
) -> None:
    page = (built_docs / "api" / "index.html").read_text()
    # Links that Sphinx resolved: <a class="reference internal" href=...><code>...Name</code>.
    linked = set(
        re.findall(r'class="reference internal"[^>]*>\s*<code[^>]*>(?:<span[^>]*>)?(\w+)', page)
    )
    missing = sorted(set(libp2p.__all__) - linked)
    assert not missing, f"not linked from docs/api/index.rst: {missing}"


def test_troubleshooting_covers_every_failure_reason_report_state_and_nat_type(
    built_docs: Path,
) -> None:
    page = (built_docs / "nat-traversal.html").read_text()
    tables = re.findall(r'<table class="[^"]*troubleshooting[^"]*".*?</table>', page, re.S)
    assert len(tables) == 3, "three troubleshooting tables expected"
    failures, report, nat = (
        [text_of(cell).strip() for cell in re.findall(r"<tr[^>]*>\s*<td[^>]*>(.*?)</td>", t, re.S)]
        for t in tables
    )
    assert set(failures) == {reason.value for reason in HolePunchFailure}
    assert len(failures) == len(set(failures))
    # The report's table is keyed on "status / expect": every status and every expectation
    # has a row, and only pairs the report can give (public exactly when direct).
    pairs = [tuple(cell.split(" / ")) for cell in report]
    assert all(len(pair) == 2 for pair in pairs), report
    assert {status for status, _ in pairs} == {s.value for s in Reachability}
    assert {expect for _, expect in pairs} == {e.value for e in Expectation}
    assert all((status == "public") == (expect == "direct") for status, expect in pairs), pairs
    # The NAT type's table: every mapping and every filtering, once each.
    assert sorted(nat) == sorted(
        [f"mapping {m.value}" for m in NatMapping] + [f"filtering {f.value}" for f in Filtering]
    )


def test_every_snippet_is_included_in_a_page() -> None:
    sources = "".join(p.read_text() for p in DOCS.rglob("*.rst"))
    snippets = sorted(p.name for p in (DOCS / "snippets").glob("*.py"))
    assert snippets
    for name in snippets:
        assert f"literalinclude:: snippets/{name}" in sources, name
