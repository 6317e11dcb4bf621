"""The page's shown script output: every block is marked and compared, and the comparison can
fail (the runs it compares with are tests/examples/test_demo.py's; see shown_output.py)."""

from __future__ import annotations

import re

import pytest

from tests.docs import shown_output
from tests.docs.conftest import ROOT
from tests.docs.shown_output import Block, Entry, PageError, match_setting, matches, pattern

# Where each setting's blocks are compared with a real run: (test file, test function).
DEMO, LAB = "tests/examples/test_demo.py", "tests/natlab/test_docs_output.py"
COMPARED = {
    "loopback": (DEMO, "test_the_docs_show_what_the_demo_prints_on_loopback"),
    "lab-eim": (DEMO, "test_the_docs_show_what_the_demo_prints_in_the_nat_lab"),
    "lab-symmetric": (DEMO, "test_the_docs_show_what_the_demo_prints_in_the_nat_lab"),
    "lab-port-mapping": (LAB, "test_the_docs_show_what_a_mapped_listener_prints"),
    "lab-double-nat": (
        LAB,
        "test_the_docs_show_what_a_listener_behind_a_carrier_grade_nat_prints",
    ),
}


def test_every_script_output_block_on_the_page_is_marked_and_compared() -> None:
    blocks = shown_output.blocks()  # PageError for an unmarked block
    settings = {block.setting for block in blocks}
    assert settings == COMPARED.keys(), settings
    for path, test in COMPARED.values():
        assert f"def {test}(" in (ROOT / path).read_text(encoding="utf-8"), (path, test)
    roles = {(b.setting, role) for b in blocks for role in b.entries}
    assert {("loopback", role) for role in shown_output.ROLES} <= roles, roles


PAGE = """Text.

.. output: loopback dialer

.. code-block:: text

   [   0.050 s] hole punch succeeded on attempt 1 in 12 ms after the relayed connection

{tail}
"""


def test_an_unmarked_block_or_a_marker_without_block_is_an_error() -> None:
    unmarked = ".. code-block:: text\n\n   [   1.000 s] something printed\n"
    with pytest.raises(PageError, match="needs a marker comment"):
        shown_output.blocks(PAGE.format(tail=unmarked))
    with pytest.raises(PageError, match="a marker with no text block"):
        shown_output.blocks(PAGE.format(tail=".. output: loopback relay\n\nProse.\n"))
    with pytest.raises(PageError, match="neither stamped nor continued"):
        shown_output.blocks(PAGE.format(tail="").replace("[   0.050 s] ", ""))
    snippet = ".. code-block:: text\n\n   $ .venv/bin/python docs/snippets/x.py\n   out\n"
    (block,) = shown_output.blocks(PAGE.format(tail=snippet))
    assert block.setting == "loopback"
    assert block.entries == {
        "dialer": [
            "[   0.050 s] hole punch succeeded on attempt 1 in 12 ms after the relayed connection"
        ]
    }


def test_headed_blocks_give_each_role_its_entries() -> None:
    headed = """.. output: lab-eim

.. code-block:: text

   dialer:
   [   0.061 s] direct connection to /ip4/198.51.100.2/tcp/21572 (relayed: False, limited: False)

   listener:
   [  10.559 s] reachability: private, expect hole punch — why
       /ip4/198.51.100.2/tcp/23247: private (why)
"""
    (block,) = shown_output.blocks(headed)
    assert block.setting == "lab-eim"
    assert block.entries["listener"] == [
        "[  10.559 s] reachability: private, expect hole punch — why\n"
        "    /ip4/198.51.100.2/tcp/23247: private (why)"
    ]
    assert len(block.entries["dialer"]) == 1


@pytest.mark.parametrize(
    ("shown", "same", "different"),
    [
        (  # the attempt is exact (issue 14: the docs said 1 where runs said 0)
            "[   0.046 s] hole punch succeeded on attempt 1 in 10 ms after the relayed connection",
            "[  12.001 s] hole punch succeeded on attempt 1 in 999 ms after the relayed connection",
            "[   0.046 s] hole punch succeeded on attempt 0 in 10 ms after the relayed connection",
        ),
        (  # ports vary, IP addresses do not
            "[   0.046 s] direct connection to /ip4/198.51.100.2/tcp/33529 (relayed: False)",
            "[   0.046 s] direct connection to /ip4/198.51.100.2/tcp/4002 (relayed: False)",
            "[   0.046 s] direct connection to /ip4/198.51.100.1/tcp/33529 (relayed: False)",
        ),
        (  # durations vary, the echoed bytes do not
            "[   0.048 s] echo over the direct connection: ok (21 bytes, 2.6 ms)",
            "[   0.048 s] echo over the direct connection: ok (21 bytes, 13 ms)",
            "[   0.048 s] echo over the direct connection: ok (22 bytes, 2.6 ms)",
        ),
        (  # times of day, bytes relayed and peer IDs vary; the limits do not
            "[   0.098 s] reserved on 12D3KooWKfFm… until 21:43:05 (limits: 120 s, 131072 bytes "
            "per direction); dial me at:\n    /ip4/127.0.0.1/tcp/4001/p2p/12D3KooWKfFm…",
            "[   0.098 s] reserved on 12D3KooWAbc until 01:02:03 (limits: 120 s, 131072 bytes "
            "per direction); dial me at:\n    /ip4/127.0.0.1/tcp/9/p2p/12D3KooWAbc",
            "[   0.098 s] reserved on 12D3KooWAbc until 01:02:03 (limits: 60 s, 131072 bytes "
            "per direction); dial me at:\n    /ip4/127.0.0.1/tcp/9/p2p/12D3KooWAbc",
        ),
        (  # the continuation lines are part of the entry: one more is a difference
            "[   0.100 s] x\n    /ip4/127.0.0.1/tcp/1",
            "[   0.200 s] x\n    /ip4/127.0.0.1/tcp/2",
            "[   0.200 s] x\n    /ip4/127.0.0.1/tcp/2\n    /ip4/127.0.0.2/tcp/2",
        ),
    ],
)
def test_shown_entry_patterns_can_fail(shown: str, same: str, different: str) -> None:
    assert matches(shown, same) is not None
    assert matches(shown, different) is None
    assert pattern(shown).fullmatch(same)
    assert not pattern(shown).fullmatch(different)


def test_a_race_between_the_two_plain_dials_may_go_either_way() -> None:
    direct = (
        "[   0.055 s] no punch needed: we dialed 12D3KooWA1YH… directly (it is reachable) "
        "in 13 ms: direct connection to /ip4/127.0.0.1/tcp/4002"
    )
    reversal = (
        "[   0.124 s] no punch needed: 12D3KooW9shA dialed us directly (we are reachable) "
        "in 28 ms: direct connection from /ip4/127.0.0.1/tcp/45110"
    )
    assert matches(direct, reversal) == [("12D3KooWA1YH", "12D3KooW9shA")]
    # The other way round: a shown reversal (peer IDs shortened), a run's direct dial.
    shown, real = reversal.replace("9shA", "9shA…"), direct.replace("…", "")
    assert matches(shown, real) == [("12D3KooW9shA", "12D3KooWA1YH")]
    punch = (
        "[   0.124 s] hole punch with 12D3KooW9shA succeeded on attempt 1 in 28 ms: direct "
        "connection to /ip4/127.0.0.1/tcp/45110"
    )
    assert matches(direct, punch) is None
    assert matches(reversal, punch) is None
    # The dialer's lines after it name the connection's direction.
    shown = (
        "[   0.055 s] direct connection to /ip4/127.0.0.1/tcp/4002 (relayed: False, limited: False)"
    )
    assert matches(shown, shown.replace(" to ", " from ").replace("4002", "45110")) == []
    assert matches(shown, shown.replace("relayed: False", "relayed: True")) is None
    result = "[   0.068 s] result: direct connection to /ip4/127.0.0.1/tcp/4002"
    assert matches(result, result.replace(" to ", " from ")) == []
    assert matches(result, result.replace(" to ", " with ")) is None


def test_every_race_alternative_names_a_line_on_the_page() -> None:
    # The table of racy outcomes must follow the scripts' wording: a pair that matches no
    # shown line any more has gone stale.
    shown = [e for b in shown_output.blocks() for es in b.entries.values() for e in es]
    races = [race for race, _ in shown_output.RACE_ALTERNATIVES]
    for first, second in zip(races[::2], races[1::2], strict=True):
        assert any(re.search(first, e) or re.search(second, e) for e in shown), (first, second)


def _run(*texts: tuple[float, str]) -> list[Entry]:
    return [Entry(seconds, text) for seconds, text in texts]


def test_peer_ids_are_bound_one_to_one_across_a_setting() -> None:
    shown = [
        Block(1, "s", {"dialer": ["[   0.100 s] relayed connection to 12D3KooWAAAA…"]}),
        Block(2, "s", {"listener": ["[   0.100 s] peer 12D3KooWAAAA… ready"]}),
    ]
    same = {
        "dialer": _run((0.1, "[   0.100 s] relayed connection to 12D3KooWXyz")),
        "listener": _run((0.1, "[   0.100 s] peer 12D3KooWXyz ready")),
    }
    assert match_setting(shown, same) == []
    other = {
        "dialer": _run((0.1, "[   0.100 s] relayed connection to 12D3KooWXyz")),
        "listener": _run((0.1, "[   0.100 s] peer 12D3KooWUvw ready")),
    }
    assert match_setting(shown, other)
    # Two IDs shown as different peers are two peers in the run too.
    two = [Block(1, "s", {"dialer": ["[   0.100 s] 12D3KooWAAAA… to 12D3KooWBBBB…"]})]
    assert match_setting(two, {"dialer": _run((0.1, "[   0.100 s] 12D3KooWXyz to 12D3KooWXyz"))})


def test_the_shown_order_holds_beyond_the_race_window() -> None:
    shown = [Block(1, "s", {"relay": ["[   0.100 s] opened", "[   0.200 s] closed"]})]
    in_order = _run((0.1, "[   0.100 s] opened"), (0.2, "[   0.200 s] closed"))
    assert match_setting(shown, {"relay": in_order}) == []
    close = _run((0.1, "[   0.100 s] closed"), (0.2, "[   0.200 s] opened"))
    assert match_setting(shown, {"relay": close}) == []  # 0.1 s apart: a race
    far = _run((0.1, "[   0.100 s] closed"), (2.0, "[   2.000 s] opened"))
    (problem,) = match_setting(shown, {"relay": far})
    assert "in the shown order" in problem
    missing = _run((0.1, "[   0.100 s] opened"))
    (problem,) = match_setting(shown, {"relay": missing})
    assert "no line of the run is" in problem
    # One real line cannot stand for two shown ones.
    twice = [Block(1, "s", {"relay": ["[   0.100 s] opened", "[   0.200 s] opened"]})]
    assert match_setting(twice, {"relay": _run((0.1, "[   0.100 s] opened"))})
