"""The built documentation in a real browser: Debian's headless Chromium.

The pages are served over HTTP on 127.0.0.1 from a thread (as a user's browser would get
them, content types included). Chromium renders the NAT traversal page; the checks are on
what it produced: the DOM after load, whether the diagram image decoded, and a screenshot.
Every internal link in every built page must point at an existing file and anchor.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from tests.conftest import skip_or_fail
from tests.docs.png import read_png

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT = 90.0
PAGE = "nat-traversal.html"
DIAGRAM = "_static/nat-traversal.svg"

# Loads the page in a same-origin iframe and, once everything (images included) has loaded,
# writes what the browser made of it into the DOM, which --dump-dom then prints.
PROBE = """<!DOCTYPE html>
<html><head><title>probe</title></head><body>
<iframe id="page" src="%(page)s" style="width:1280px;height:2000px"></iframe>
<pre id="result">pending</pre>
<script>
window.addEventListener("load", function () {
  var doc = document.getElementById("page").contentDocument;
  var images = Array.prototype.map.call(doc.querySelectorAll("img"), function (img) {
    return {src: img.getAttribute("src"), complete: img.complete,
            width: img.naturalWidth, height: img.naturalHeight};
  });
  document.getElementById("result").textContent = JSON.stringify({
    title: doc.title,
    h1: (doc.querySelector("h1") || {}).textContent,
    images: images,
    highlighted: doc.querySelectorAll("div.highlight pre").length,
    python: doc.querySelectorAll("div.highlight-python pre span.k").length,
    tables: doc.querySelectorAll("table.troubleshooting").length
  });
});
</script></body></html>
"""


# The page in an iframe of a given width (a phone's, a desktop's): which diagram layout the
# browser chose, and how a link in the text is drawn next to plain inline code.
LAYOUT_WIDTHS = (420, 1280)
LAYOUT_PROBE = """<!DOCTYPE html>
<html><head><title>layout</title></head><body>
<iframe id="page" src="%(page)s" style="width:%(width)spx;height:1500px;border:0"></iframe>
<pre id="result">pending</pre>
<script>
window.addEventListener("load", function () {
  var doc = document.getElementById("page").contentDocument;
  var win = document.getElementById("page").contentWindow;
  var img = doc.querySelector("figure.diagram img");
  var link = doc.querySelector("div.body p a.reference code");
  var plain = doc.querySelector("div.body p > code");
  function look(el) {
    var s = win.getComputedStyle(el);
    return {color: s.color, decoration: s.textDecorationLine};
  }
  document.getElementById("result").textContent = JSON.stringify({
    diagram: img.currentSrc, shown: img.getBoundingClientRect().width,
    natural: img.naturalWidth, link: look(link), code: look(plain),
    viewport: win.innerWidth, page: doc.documentElement.scrollWidth,
    cell: win.getComputedStyle(doc.querySelector("table.troubleshooting td")).display,
    label: win.getComputedStyle(
      doc.querySelector("table.troubleshooting td:nth-child(2)"), "::before").content,
    wider: Array.prototype.filter.call(doc.querySelectorAll("div.body *"), function (el) {
      return el.getBoundingClientRect().right > win.innerWidth + 1 &&
        !(el.parentElement && el.parentElement.closest("pre, svg, object"));
    }).slice(0, 5).map(function (el) {
      return el.tagName + "." + el.className + ": " + el.textContent.slice(0, 60);
    })
  });
});
</script></body></html>
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(built_docs: Path) -> Iterator[str]:
    """The built docs served on 127.0.0.1; yields the base URL."""
    (built_docs / "_probe.html").write_text(PROBE % {"page": PAGE})
    for width in LAYOUT_WIDTHS:
        (built_docs / f"_layout{width}.html").write_text(
            LAYOUT_PROBE % {"page": PAGE, "width": width}
        )
    handler = functools.partial(_QuietHandler, directory=str(built_docs))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    return path


def run_chromium(chromium: str, profile: Path, *args: str) -> str:
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"chromium exited {result.returncode}:\n{result.stderr}"
    return result.stdout


def test_the_page_renders_with_its_diagram_and_code(
    site: str, chromium: str, tmp_path: Path
) -> None:
    dom = run_chromium(
        chromium,
        tmp_path / "profile",
        "--virtual-time-budget=10000",
        "--dump-dom",
        site + "_probe.html",
    )
    match = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert match, dom[:2000]
    assert match.group(1) != "pending", "the page did not finish loading"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["title"].startswith("NAT traversal"), probe
    assert probe["h1"].startswith("NAT traversal"), probe
    (diagram,) = [img for img in probe["images"] if img["src"].endswith("nat-traversal.svg")]
    # Decoded by the browser: an image that failed to load has no natural size.
    assert diagram["complete"], probe
    assert diagram["width"] >= 600, probe
    assert diagram["height"] >= 300, probe
    assert probe["highlighted"] >= 10, probe
    assert probe["python"] > 0, "Python code is not syntax highlighted"
    assert probe["tables"] == 3, probe

    # The diagram as the server sends it: an SVG, with the content type browsers need.
    with urllib.request.urlopen(site + DIAGRAM, timeout=10) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "image/svg+xml"
        assert b"<svg" in response.read(4096)


def test_a_screenshot_of_the_page_is_not_blank(site: str, chromium: str, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    run_chromium(
        chromium,
        tmp_path / "profile",
        "--window-size=1280,1000",
        f"--screenshot={shot}",
        site + PAGE,
    )
    image = read_png(shot.read_bytes())
    assert (image.width, image.height) == (1280, 1000)
    colours: set[tuple[int, ...]] = set()
    ink = 0
    for y in range(0, image.height, 4):
        for x in range(0, image.width, 4):
            pixel = image.pixel(x, y)
            colours.add(pixel)
            ink += min(pixel) < 200
    samples = (image.height // 4) * (image.width // 4)
    assert len(colours) > 50, "the screenshot is (nearly) one colour"
    assert ink > samples // 100, "almost nothing dark on the screenshot"
    # The diagram's colours (the green direct connection, the relay's orange) are on screen.
    assert any(p[1] > p[0] + 40 and p[1] > p[2] + 40 for p in colours), "no green on screen"


@pytest.mark.parametrize("width", LAYOUT_WIDTHS)
def test_diagram_layout_and_links_at_phone_and_desktop_width(
    site: str, chromium: str, tmp_path: Path, width: int
) -> None:
    dom = run_chromium(
        chromium,
        tmp_path / "profile",
        "--window-size=1400,1600",
        "--virtual-time-budget=10000",
        "--dump-dom",
        site + f"_layout{width}.html",
    )
    match = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert match, dom[:2000]
    assert match.group(1) != "pending", "the page did not finish loading"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    # A phone gets the portrait layout, drawn at about its own size (its text stays legible:
    # the wide one would be shrunk to under half); a desktop the wide one.
    if width <= 640:
        assert probe["diagram"].endswith("/_static/nat-traversal-narrow.svg"), probe
        assert probe["natural"] == 420, probe
        assert probe["shown"] >= 0.8 * probe["natural"], probe
    else:
        assert probe["diagram"].endswith("/_static/nat-traversal.svg"), probe
        assert probe["shown"] >= 600, probe
    # Nothing makes the page wider than the screen (no sideways scrolling on a phone): wide
    # tables and code scroll inside their own box.
    assert probe["page"] <= probe["viewport"], probe["wider"]
    # The troubleshooting tables: a table on a desktop; on a phone each row a card, its
    # cells one under the other, each under its column's name.
    if width <= 640:
        assert (probe["cell"], probe["label"]) == ("block", '"What it means"'), probe
    else:
        assert (probe["cell"], probe["label"]) == ("table-cell", "none"), probe
    # A linked name is drawn unlike plain code: another colour, and underlined.
    assert probe["link"]["color"] != probe["code"]["color"], probe
    assert "underline" in probe["link"]["decoration"], probe
    assert "underline" not in probe["code"]["decoration"], probe


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key):
                self.ids.add(str(values[key]))
        for key in ("href", "src", "srcset"):
            value = values.get(key)
            if value and (tag != "link" or key == "href"):
                self.hrefs.append(value)


def test_every_internal_link_resolves(built_docs: Path) -> None:
    pages = {p: _Links() for p in built_docs.rglob("*.html") if p.name != "_probe.html"}
    for page, parser in pages.items():
        parser.feed(page.read_text())
    broken: list[str] = []
    checked = 0
    for page, parser in pages.items():
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("javascript:"):
                continue  # external: the site must not depend on them, but they are allowed
            checked += 1
            base = page.relative_to(built_docs).as_posix()
            target_url = urljoin(base, unquote(parts.path)) if parts.path else base
            target = (built_docs / target_url).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or built_docs.resolve() not in target.parents:
                broken.append(f"{base}: {href} (no file)")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if parts.fragment not in ids:
                    broken.append(f"{base}: {href} (no anchor)")
    assert checked > 100
    assert not broken, "\n".join(broken)


def test_no_page_loads_anything_from_the_network(built_docs: Path) -> None:
    for page in built_docs.rglob("*.html"):
        for url in re.findall(
            r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text()
        ):
            pytest.fail(f"{page.name} loads {url}: the site must work offline")
