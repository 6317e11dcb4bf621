"""The screencasts on the docs page: recorded from real runs, rendered from their casts, and
playing in a real browser (Debian's headless Chromium).

``docs/_static/screencast-*.cast`` are recordings of ``scripts/demo.py --cast`` (re-record with
``scripts/screencast.py record``); each ``.svg`` beside one must be exactly what
``scripts/screencast.py`` renders from it, so the two cannot drift apart. In the browser the
page's ``<object class="screencast">`` elements must load their SVG, and its CSS animations
must be running and moving on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scripts.screencast import read_cast, render_svg
from tests.docs.test_docs_browser import PAGE, chromium, run_chromium, site

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "docs" / "_static"
CASTS = sorted(STATIC.glob("screencast-*.cast"))

__all__ = ["chromium", "site"]  # fixtures used below

PLAY_PROBE = """<!DOCTYPE html>
<html><head><title>screencast probe</title></head><body>
<iframe id="page" src="%(page)s" style="width:1280px;height:2000px"></iframe>
<pre id="result">pending</pre>
<script>
function sample(doc) {
  var objects = doc.querySelectorAll("object.screencast");
  return Array.prototype.map.call(objects, function (obj) {
    var svg = obj.contentDocument;
    if (!svg) { return {data: obj.getAttribute("data"), loaded: false}; }
    var animations = svg.getAnimations();
    return {
      data: obj.getAttribute("data"),
      loaded: true,
      lines: svg.querySelectorAll("text.line").length,
      animations: animations.length,
      running: animations.filter(function (a) { return a.playState === "running"; }).length,
      time: animations.length ? animations[0].currentTime : null
    };
  });
}
window.addEventListener("load", function () {
  var doc = document.getElementById("page").contentDocument;
  var first = sample(doc);
  setTimeout(function () {
    document.getElementById("result").textContent =
      JSON.stringify({first: first, later: sample(doc)});
  }, 1500);
});
</script></body></html>
"""


def test_there_are_screencasts_and_each_svg_is_rendered_from_its_cast() -> None:
    assert {p.stem for p in CASTS} >= {"screencast-loopback", "screencast-lab"}, CASTS
    for cast in CASTS:
        svg = cast.with_suffix(".svg")
        assert svg.read_text(encoding="utf-8") == render_svg(read_cast(cast)), (
            f"{svg.name} is not what scripts/screencast.py renders from {cast.name}: "
            f"run `python scripts/screencast.py svg {cast} {svg}`"
        )
        recording = read_cast(cast)
        # A real, successful run: it ends with the dialer's result, a direct connection.
        assert "result: direct connection to /ip4/" in recording.lines[-1][1], cast


def test_the_page_plays_its_screencasts(
    site: str, chromium: str, built_docs: Path, tmp_path: Path
) -> None:
    page = (built_docs / PAGE).read_text(encoding="utf-8")
    assert 'class="screencast"' in page, "the page embeds no screencast"
    probe_name = "_screencast_probe.html"
    (built_docs / probe_name).write_text(PLAY_PROBE % {"page": PAGE})  # served by ``site``
    dom = run_chromium(
        chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
        site + probe_name,
    )  # fmt: skip
    match = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert match, dom[:2000]
    assert match.group(1) != "pending", "the page did not finish loading"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    first, later = probe["first"], probe["later"]
    assert len(first) >= 2, probe
    for before, after in zip(first, later, strict=True):
        assert after["loaded"], probe
        assert after["lines"] >= 10, probe
        assert after["animations"] >= after["lines"], probe
        assert after["running"] == after["animations"], probe  # all playing, none finished
        assert after["time"] > before["time"], probe  # and time moves on
