"""The NAT traversal diagrams: no label is drawn over a line or an arrow.

Text boxes are estimated from the font size (DejaVu Sans, the first font named: about 0.6 em
per character, bold 0.66, from the baseline 0.8 em up and 0.25 em down), lines and paths
taken from their coordinates with half their stroke width around them. The estimate is a
little generous, so a label that only touches an arrow in a browser fails too.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tests.docs.conftest import DOCS

SVG = "{http://www.w3.org/2000/svg}"
DIAGRAMS = ["nat-traversal.svg", "nat-traversal-narrow.svg"]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
Segment = tuple[float, float, float, float, float]  # x0, y0, x1, y1, half width


def text_boxes(root: ET.Element) -> list[tuple[str, Box]]:
    boxes = []
    for text in root.iter(SVG + "text"):
        content = "".join(text.itertext())
        size = float(text.get("font-size", "12"))
        bold = text.get("font-weight") == "bold"
        width = len(content) * size * (0.66 if bold else 0.6)
        x, y = float(text.get("x", "0")), float(text.get("y", "0"))
        anchor = text.get("text-anchor", "start")
        x0 = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
        boxes.append((content, (x0, y - 0.8 * size, x0 + width, y + 0.25 * size)))
    return boxes


def segments(root: ET.Element) -> list[Segment]:
    found = []
    for line in root.iter(SVG + "line"):
        x1, y1, x2, y2 = (float(line.get(k, "0")) for k in ("x1", "y1", "x2", "y2"))
        found.append((x1, y1, x2, y2, float(line.get("stroke-width", "1")) / 2))
    for path in root.iter(SVG + "path"):
        d = path.get("d", "")
        if path.get("fill") not in ("none", None) or not re.fullmatch(r"[MVH\d,. -]+", d):
            continue  # marker heads and patterns: filled shapes, not lines across the picture
        x = y = 0.0
        half = float(path.get("stroke-width", "1")) / 2
        for op, args in re.findall(r"([MVH])\s*([\d.,\s-]+)", d):
            numbers = [float(n) for n in re.split(r"[\s,]+", args.strip())]
            if op == "M":
                x, y = numbers
                continue
            nx, ny = (numbers[0], y) if op == "H" else (x, numbers[0])
            found.append((x, y, nx, ny, half))
            x, y = nx, ny
    return found


def crosses(seg: Segment, box: Box) -> bool:
    """Whether the thick segment meets the box (sampled every half pixel)."""
    x0, y0, x1, y1, half = seg
    bx0, by0, bx1, by1 = box[0] - half, box[1] - half, box[2] + half, box[3] + half
    steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) * 2))
    for i in range(steps + 1):
        x = x0 + (x1 - x0) * i / steps
        y = y0 + (y1 - y0) * i / steps
        if bx0 <= x <= bx1 and by0 <= y <= by1:
            return True
    return False


def overlaps(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [
        f"{content!r} under the line {seg[:4]}"
        for content, box in text_boxes(root)
        for seg in segments(root)
        if crosses(seg, box)
    ]


def test_the_check_finds_a_label_under_an_arrow() -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg">'
        '<text x="640" y="120" text-anchor="middle" font-size="14" font-weight="bold">NAT B</text>'
        '<line x1="812" y1="236" x2="574" y2="62" stroke-width="3"/></svg>'
    )
    assert overlaps(svg) == ["'NAT B' under the line (812.0, 236.0, 574.0, 62.0)"]
    clear = svg.replace('y="120"', 'y="421"')
    assert overlaps(clear) == []


@pytest.mark.parametrize("name", DIAGRAMS)
def test_no_label_is_drawn_over_a_line(name: str) -> None:
    svg = (DOCS / "_static" / name).read_text()
    assert svg.count("<text") >= 10
    assert overlaps(svg) == []


def test_every_label_is_inside_the_picture() -> None:
    for name in DIAGRAMS:
        root = ET.fromstring((DOCS / "_static" / name).read_text())
        _, _, width, height = (float(v) for v in root.get("viewBox", "").split())
        for content, (x0, y0, x1, y1) in text_boxes(root):
            assert min(x0, y0) >= 0, (name, content)
            assert x1 <= width, (name, content)
            assert y1 <= height, (name, content)


def test_the_narrow_diagram_keeps_text_legible_at_phone_width() -> None:
    # Drawn at about its own width on a 420 px screen (tests/docs/test_docs_browser.py checks
    # that), so its font sizes are close to what a reader sees.
    root = ET.fromstring((DOCS / "_static" / "nat-traversal-narrow.svg").read_text())
    sizes = [float(t.get("font-size", "12")) for t in root.iter(SVG + "text")]
    sizes += [float(g.get("font-size", "12")) for g in root.iter(SVG + "g") if g.get("font-size")]
    assert min(sizes) >= 12, sizes
    assert root.get("width") == "420"
