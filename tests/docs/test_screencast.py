"""The screencasts on the docs page: recorded from real runs, rendered from their casts, and
playing in a real browser (Debian's headless Chromium), legible on a phone.

``docs/_static/screencast-*.cast`` are recordings of ``scripts/demo.py --cast`` (re-record with
``scripts/screencast.py record``); each ``NAME.svg`` (the terminal as recorded) and
``NAME-narrow.svg`` (the phone layout, lines wrapped to 48 columns) beside one must be exactly
what ``scripts/screencast.py`` renders from it, so they cannot drift apart. In the browser, at
a phone's width and a desktop's, the page must show one layout of each screencast (the narrow
one on the phone, across the screen, its text at least 11 px high; the wide one on the
desktop), and that SVG must load and its CSS animations be running and moving on.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts.screencast import (
    CHAR_WIDTH,
    COLOURS,
    NARROW_COLUMNS,
    PAD,
    narrow_path,
    narrow_rows,
    read_cast,
    render_narrow_svg,
    render_svg,
    wrap,
)
from tests.docs.test_docs_browser import PAGE, chromium, run_chromium, site

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "docs" / "_static"
CASTS = sorted(STATIC.glob("screencast-*.cast"))
SVG = "{http://www.w3.org/2000/svg}"

# Text on a phone smaller than this (CSS px) is hard to read; the wide layout shown 345 px
# wide, as it was on a 420 px phone, made it 4.7 px.
LEGIBLE_PX = 11.0

__all__ = ["chromium", "site"]  # fixtures used below

# The page in an iframe of a given width: for every screencast <object>, whether it is shown,
# where, how large its text is drawn, and (for those shown) whether its SVG loaded and plays.
PLAY_PROBE = """<!DOCTYPE html>
<html><head><title>screencast probe</title></head><body style="margin:0">
<iframe id="page" src="%(page)s" style="width:%(width)spx;height:1500px;border:0"></iframe>
<pre id="result">pending</pre>
<script>
function sample(doc, win) {
  var objects = doc.querySelectorAll("object.screencast");
  return Array.prototype.map.call(objects, function (obj) {
    var box = obj.getBoundingClientRect();
    var out = {
      data: obj.getAttribute("data"),
      display: win.getComputedStyle(obj).display,
      left: box.left, right: box.right, shown: box.width,
      loaded: false
    };
    var svg = obj.contentDocument;
    if (!svg || !svg.querySelector("text.line")) { return out; }
    var lines = svg.querySelectorAll("text.line");
    var animations = svg.getAnimations();
    var widest = 0;
    Array.prototype.forEach.call(lines, function (line) {
      var b = line.getBBox();
      widest = Math.max(widest, b.x + b.width);
    });
    out.loaded = true;
    out.viewbox = svg.documentElement.viewBox.baseVal.width;
    out.font = parseFloat(svg.defaultView.getComputedStyle(lines[0]).fontSize);
    out.widest = widest;
    out.lines = lines.length;
    out.animations = animations.length;
    out.running = animations.filter(function (a) { return a.playState === "running"; }).length;
    out.time = animations.length ? animations[0].currentTime : null;
    return out;
  });
}
window.addEventListener("load", function () {
  var frame = document.getElementById("page");
  var doc = frame.contentDocument, win = frame.contentWindow;
  var first = sample(doc, win), polls = 0;
  // Sampled again until every shown screencast's clock has moved on by a second, or for at
  // most 8 s (Chromium's virtual time: no real waiting).
  function moved(later) {
    return later.every(function (o, i) {
      return o.display === "none" || (o.loaded && first[i].time !== null && o.time !== null
                                      && o.time >= first[i].time + 1000);
    });
  }
  function poll() {
    var later = sample(doc, win);
    if (moved(later) || ++polls >= 80) {
      document.getElementById("result").textContent = JSON.stringify({
        first: first, later: later, polls: polls, viewport: doc.documentElement.clientWidth
      });
    } else {
      setTimeout(poll, 100);
    }
  }
  setTimeout(poll, 100);
});
</script></body></html>
"""


def test_there_are_screencasts_and_each_svg_is_rendered_from_its_cast() -> None:
    assert {p.stem for p in CASTS} >= {"screencast-loopback", "screencast-lab"}, CASTS
    for cast in CASTS:
        recording = read_cast(cast)
        svg = cast.with_suffix(".svg")
        narrow = narrow_path(svg)
        assert narrow.name == f"{cast.stem}-narrow.svg"
        for path, render in ((svg, render_svg), (narrow, render_narrow_svg)):
            assert path.is_file(), f"{path.name} is missing: run `python scripts/screencast.py svg`"
            assert path.read_text(encoding="utf-8") == render(recording), (
                f"{path.name} is not what scripts/screencast.py renders from {cast.name}: "
                f"run `python scripts/screencast.py svg {cast.relative_to(ROOT)}`"
            )
        # A real, successful run: it ends with the dialer's result, a direct connection.
        assert re.search(r"result: direct connection (to|from) /ip4/", recording.lines[-1][1]), cast


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("cast", CASTS, ids=lambda p: p.stem)
def test_the_narrow_layout_wraps_every_line_and_keeps_all_of_it(cast: Path) -> None:
    recording = read_cast(cast)
    rows = narrow_rows(recording)
    assert len(rows) > len(recording.lines)  # long lines were wrapped, none cut
    grouped = []
    for when, text in recording.lines:
        own = narrow_rows(replace(recording, lines=[(when, text)]))
        grouped += [(row.head, row.tail) for row in own]
        label, sep, rest = text.partition(" | ")
        if sep and label.strip() in COLOURS:
            # The label on the first row, in its colour; its bar down the continuation rows.
            assert own[0].head == label + sep, (text, own[0])
            assert {row.colour for row in own} == {COLOURS[label.strip()]}, own
            assert all(row.head == " " * len(label) + " | " for row in own[1:]), own
        else:
            assert all(row.head == "" for row in own), own
            rest = text
        # Continuation rows are indented two spaces more than the line's text.
        lead = len(rest) - len(rest.lstrip(" "))
        assert all(row.tail.startswith(" " * (lead + 2)) for row in own[1:]), own
        assert all(row.tail.strip() for row in own[1:]), own  # no blank continuations
        # Nothing lost, nothing added: only spaces at the breaks.
        assert _squash("".join(row.tail for row in own)) == _squash(rest), text
    assert grouped == [(row.head, row.tail) for row in rows]
    for row in rows:
        assert len(row.head + row.tail) <= NARROW_COLUMNS, row

    # The SVG: one text element per row, as wide as its columns, tall enough for all of them
    # (it never scrolls: the page does).
    root = ET.fromstring(render_narrow_svg(recording))
    texts = root.findall(f".//{SVG}text[@class='line']")
    assert len(texts) == len(rows)
    width = float(root.get("viewBox", "").split()[2])
    assert width == round(2 * PAD + NARROW_COLUMNS * CHAR_WIDTH)
    assert "translateY(-" not in (root.findtext(f"{SVG}style") or "")


def test_wrap_breaks_between_words_and_cuts_only_what_does_not_fit_a_row() -> None:
    assert wrap("short enough", 20) == ["short enough"]
    assert wrap("one two three four five", 10) == ["one two", "  three", "  four", "  five"]
    # A multiaddr breaks before one of its components, a peer ID where the row ends.
    assert wrap("to /ip4/198.51.100.10/tcp/31843/p2p/12D3KooWNm7yk9VMYZ", 24) == [
        "to /ip4/198.51.100.10",
        "  /tcp/31843/p2p",
        "  /12D3KooWNm7yk9VMYZ",
    ]
    assert wrap("peer 12D3KooWNm7yk9VMYZfmAbfyT9bN26NDLL15", 16) == [
        "peer 12D3KooWNm7",
        "  yk9VMYZfmAbfyT",
        "  9bN26NDLL15",
    ]
    # An indented line keeps its indentation; its continuations go two further.
    assert wrap("    /ip4/192.0.2.66/tcp/23924: private", 20) == [
        "    /ip4/192.0.2.66",
        "      /tcp/23924:",
        "      private",
    ]


@given(
    st.tuples(
        st.text(alphabet=" ", max_size=70),
        st.lists(st.text(alphabet="ab/1 ", max_size=70), max_size=6).map(" ".join),
    ).map("".join),
    st.integers(min_value=8, max_value=60),
)
def test_wrap_never_exceeds_the_columns_and_loses_nothing_but_spaces(
    text: str, columns: int
) -> None:
    rows = wrap(text, columns)
    assert all(len(row) <= columns for row in rows), rows
    assert _squash("".join(rows)) == _squash(text)
    assert all(row.strip() for row in rows[1:]), rows  # no empty continuation rows
    assert len(rows) <= max(len(text), 1)


@pytest.fixture(scope="module")
def probes(built_docs: Path) -> dict[int, str]:
    """The probe pages, one per width, in the built docs (which ``site`` serves)."""
    names = {}
    for width in (360, 420, 1280):
        names[width] = f"_screencast_probe{width}.html"
        (built_docs / names[width]).write_text(PLAY_PROBE % {"page": PAGE, "width": width})
    return names


@pytest.mark.parametrize("width", [360, 420, 1280])
def test_the_page_plays_one_layout_of_each_screencast_legibly(
    site: str, chromium: str, built_docs: Path, probes: dict[int, str], tmp_path: Path, width: int
) -> None:
    page = (built_docs / PAGE).read_text(encoding="utf-8")
    assert 'class="screencast screencast-narrow"' in page, "the page has no phone layout"
    dom = run_chromium(
        chromium, tmp_path / "profile", "--window-size=1400,1600", "--virtual-time-budget=10000",
        "--dump-dom", site + probes[width],
    )  # fmt: skip
    match = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert match, dom[:2000]
    assert match.group(1) != "pending", "the page did not finish loading"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    first, later = probe["first"], probe["later"]
    phone = width <= 640
    shown = [o for o in later if o["display"] != "none"]
    hidden = [o for o in later if o["display"] == "none"]
    # One layout of each screencast: the narrow one on a phone, the wide one on a desktop.
    assert len(shown) == len(hidden) >= 2, probe
    assert all(o["data"].endswith("-narrow.svg") == phone for o in shown), probe
    assert all(o["data"].endswith("-narrow.svg") != phone for o in hidden), probe
    assert all(o["shown"] == 0 for o in hidden), probe
    for before, after in zip(first, later, strict=True):
        if after["display"] == "none":
            continue
        assert after["loaded"], probe
        assert after["lines"] >= 10, probe
        assert after["animations"] >= after["lines"], probe
        assert after["running"] == after["animations"], probe  # all playing, none finished
        assert after["time"] >= before["time"] + 1000, probe  # and time moves on
        # Every row fits in the window with the browser's own monospace font.
        assert after["widest"] <= after["viewbox"] - PAD / 2, after
        drawn = after["font"] * after["shown"] / after["viewbox"]  # CSS px on screen
        if phone:
            # Across the whole screen and no further (no sideways scrolling for it), its text
            # legible.
            assert after["left"] >= -0.5, after
            assert after["right"] <= probe["viewport"] + 0.5, after
            assert after["shown"] >= probe["viewport"] - 1, (after, probe["viewport"])
            assert drawn >= LEGIBLE_PX, (drawn, after)
        else:
            assert after["shown"] >= 600, after
