"""Screencasts of the demo for the docs, recorded from real runs, re-recordable at any time.

    python scripts/screencast.py record docs/_static/screencast-loopback   # loopback
    sudo .venv/bin/python scripts/screencast.py record --lab docs/_static/screencast-lab
    python scripts/screencast.py svg docs/_static/screencast-lab.cast      # render again

``record`` runs ``scripts/demo.py --cast`` (the three example scripts, really run: on loopback,
or behind the two NATs of the NAT lab with ``--lab``) and writes ``NAME.cast`` (asciinema's v2
format: a JSON header line, then ``[seconds, "o", text]`` events; any asciinema player plays
it) and two animated SVGs of the same recording, rendered from the cast alone (``svg`` renders
them again after a change here, never from a hand-edited cast):

``NAME.svg``
    the terminal as recorded, as wide as the cast's columns (120 for the demo's): lines appear
    at the times they were printed, wrapped at the terminal's width as described below, then
    the end holds for :data:`HOLD` seconds and it starts over. The window is tall enough for
    every row, so nothing scrolls away before it is read: the demo prints most of its lines
    within a second, which a scrolling terminal would show only in passing (the page scrolls
    instead).
``NAME-narrow.svg``
    the phone layout: 48 columns, so that its text is still about 11 px high when a 360 px
    wide phone shows it across the screen (the wide one would be 3-4 px there). Each line is
    wrapped as a narrow terminal would, but between words where it can: the role label (``relay
    |``) stays in its column and its bar continues down the continuation rows, which are
    indented two spaces; a peer ID or a multiaddr longer than a row is cut, a multiaddr before
    one of its ``/``. Every row is on screen too.

The docs page shows the narrow one below 640 px and the wide one above (``docs/_static/
custom.css``). Both are self-contained (CSS animations, no script, no font files), so the page
shows them with a plain ``<object>``/``<img>`` and loads nothing from the network; both are
deterministic, and the tests compare them byte for byte with what this script renders from
the casts. Pauses longer than ``--idle`` seconds are shortened to it, as asciinema's
``idle_time_limit`` does.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]

LINE_HEIGHT = 17
CHAR_WIDTH = 7.8
PAD = 14
TITLE_BAR = 26
HOLD = 30.0  # seconds the end stays on screen before the loop starts over: time to read it
# The phone layout: 48 columns are 402 px wide, so its 13 px text is still 11.6 px when the
# page shows it 360 px wide (a small phone; the page lets it span the screen there).
NARROW_COLUMNS = 48
COLOURS = {"relay": "#7aa2f7", "listener": "#9ece6a", "dialer": "#e0af68", "demo": "#a9b1d6"}
TEXT = "#c0caf5"
BACKGROUND = "#1a1b26"


@dataclass(frozen=True)
class Cast:
    width: int
    height: int
    title: str
    #: (seconds, text of one line) in order.
    lines: list[tuple[float, str]]


def read_cast(path: Path) -> Cast:
    """A cast written by ``demo.py --cast``: one output event per line."""
    rows = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(rows[0])
    if header.get("version") != 2:
        raise ValueError(f"{path}: not an asciinema v2 cast")
    lines: list[tuple[float, str]] = []
    for row in rows[1:]:
        when, kind, data = json.loads(row)
        if kind != "o":
            continue
        for part in str(data).replace("\r\n", "\n").split("\n"):
            if part:
                lines.append((float(when), part))
    return Cast(int(header["width"]), int(header["height"]), str(header.get("title", "")), lines)


def squeeze(lines: list[tuple[float, str]], idle: float) -> list[tuple[float, str]]:
    """Times with every pause longer than ``idle`` shortened to ``idle``."""
    out: list[tuple[float, str]] = []
    shift = 0.0
    previous = 0.0
    for when, text in lines:
        gap = when - previous
        if gap > idle:
            shift += gap - idle
        previous = when
        out.append((round(when - shift, 3), text))
    return out


@dataclass(frozen=True)
class Row:
    """One row of the terminal: shown from ``when`` on, ``head`` (the role label, or its
    continuation bar) in ``colour``, then ``tail`` in the text colour."""

    when: float
    head: str
    colour: str
    tail: str


def _split_label(text: str) -> tuple[str, str, str | None]:
    """``(label and separator, rest, colour)``; no label unless it names a known role."""
    label, sep, rest = text.partition(" | ")
    colour = COLOURS.get(label.strip())
    if sep and colour is not None:
        return label + sep, rest, colour
    return "", text, None


def _cut(word: str, room: int) -> int:
    """Where to break a word longer than ``room``: before the last ``/`` that leaves at least
    half the room filled (a multiaddr breaks between its components), else at ``room``."""
    slash = word.rfind("/", 1, room + 1)
    return slash if slash >= max(room // 2, 1) else room


def wrap(text: str, columns: int) -> list[str]:
    """``text`` in rows of at most ``columns`` characters, as a narrow terminal would show it
    but breaking between words where it can: a continuation row is indented two more spaces
    than the text; a word longer than a whole row (a peer ID, a multiaddr) is cut, a multiaddr
    before one of its ``/``. Nothing but the spaces at the breaks is lost."""
    lead = min(len(text) - len(text.lstrip(" ")), columns // 2)
    indent = " " * min(lead + 2, columns // 2)
    rows: list[str] = []
    row = " " * lead
    for word, spaces in re.findall(r"(\S+)( *)", text.lstrip(" ")):
        while len(row) + len(word) > columns:
            room = columns - len(row)
            if row.strip() and (len(indent) + len(word) <= columns or room < 8):
                rows.append(row.rstrip())  # the word fits on the next row: break before it
                row = indent
                continue
            at = _cut(word, room)
            rows.append(row + word[:at])
            row, word = indent, word[at:]
        row += word + spaces
    rows.append(row.rstrip())
    return rows


def narrow_rows(cast: Cast, columns: int = NARROW_COLUMNS, idle: float = 2.0) -> list[Row]:
    """Each line wrapped to ``columns``: a labelled line's text wraps beside its label, whose
    column holds the role's bar on the continuation rows (see :func:`wrap`)."""
    out = []
    for when, text in squeeze(cast.lines, idle):
        head, rest, colour = _split_label(text)
        bar = " " * (len(head) - 2) + "| " if head else ""
        for i, piece in enumerate(wrap(rest, columns - len(head))):
            out.append(Row(when, head if i == 0 else bar, colour or TEXT, piece))
    return out


def render_svg(cast: Cast, *, idle: float = 2.0) -> str:
    """The cast as an animated SVG (see the module docs), as wide as the recording's
    terminal, lines wrapped as in :func:`narrow_rows`, and tall enough for every row (the
    demo prints most of its lines within a second: a window that scrolled would show them
    only in passing); the end holds :data:`HOLD` seconds."""
    lines = narrow_rows(cast, cast.width, idle)
    return _render(cast.title, lines, cast.width, max(len(lines), 1), HOLD)


def render_narrow_svg(cast: Cast, *, idle: float = 2.0, columns: int = NARROW_COLUMNS) -> str:
    """The cast as an animated SVG for a phone: ``columns`` wide, lines wrapped (see
    :func:`narrow_rows`), and tall enough for every row, so that nothing scrolls away before
    it can be read (the page scrolls instead); the end holds :data:`HOLD` seconds."""
    lines = narrow_rows(cast, columns, idle)
    return _render(cast.title, lines, columns, max(len(lines), 1), HOLD)


def _render(title: str, lines: list[Row], columns: int, rows: int, hold: float) -> str:
    total = (lines[-1].when if lines else 0.0) + hold
    width = round(2 * PAD + columns * CHAR_WIDTH)
    height = TITLE_BAR + 2 * PAD + rows * LINE_HEIGHT

    def pct(t: float) -> str:
        return f"{100 * t / total:.3f}%"

    css = [
        f"text {{ font: 13px 'DejaVu Sans Mono', Menlo, Consolas, monospace; fill: {TEXT};"
        " white-space: pre; }",
        f".line {{ opacity: 0; animation: {total:.3f}s linear infinite; }}",
    ]
    body = []
    for i, line in enumerate(lines):
        name = f"l{i}"
        when = line.when
        css.append(
            f"@keyframes {name} {{ 0%, {pct(max(when - 0.001, 0))} {{ opacity: 0 }} "
            f"{pct(when)}, 100% {{ opacity: 1 }} }}"
        )
        css.append(f"#{name} {{ animation-name: {name}; }}")
        y = PAD + (i + 1) * LINE_HEIGHT - 4
        content = escape(line.tail)
        if line.head:
            content = f'<tspan fill="{line.colour}">{escape(line.head)}</tspan>' + content
        body.append(f'<text id="{name}" class="line" x="{PAD}" y="{y}">{content}</text>')
    # Scrolling: once more lines have appeared than fit, the text moves up a line per line.
    steps = ["0% { transform: translateY(0px) }"]
    for i, line in enumerate(lines):
        if i >= rows:
            offset = -(i - rows + 1) * LINE_HEIGHT
            steps.append(
                f"{pct(max(line.when - 0.001, 0))} "
                f"{{ transform: translateY({offset + LINE_HEIGHT}px) }}"
            )
            steps.append(f"{pct(line.when)} {{ transform: translateY({offset}px) }}")
    last = -(max(len(lines) - rows, 0)) * LINE_HEIGHT
    steps.append(f"100% {{ transform: translateY({last}px) }}")
    css.append(f"@keyframes scroll {{ {' '.join(steps)} }}")
    css.append(f"#scroll {{ animation: scroll {total:.3f}s step-end infinite; }}")
    title = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{title}">\n'
        f"<title>{title}</title>\n<style>\n" + "\n".join(css) + "\n</style>\n"
        f'<rect width="{width}" height="{height}" rx="8" fill="{BACKGROUND}"/>\n'
        f'<circle cx="18" cy="13" r="5" fill="#f7768e"/><circle cx="36" cy="13" r="5" '
        f'fill="#e0af68"/><circle cx="54" cy="13" r="5" fill="#9ece6a"/>\n'
        f'<text x="{width / 2:.0f}" y="17" text-anchor="middle" fill="#787c99">{title}</text>\n'
        f'<svg x="0" y="{TITLE_BAR}" width="{width}" height="{height - TITLE_BAR}">\n'
        f'<g id="scroll">\n' + "\n".join(body) + "\n</g>\n</svg>\n</svg>\n"
    )


def narrow_path(svg: Path) -> Path:
    """Where the phone layout of ``NAME.svg`` goes: ``NAME-narrow.svg`` beside it."""
    return svg.with_name(svg.stem + "-narrow.svg")


def render_files(cast: Path, *, idle: float = 2.0) -> tuple[Path, Path]:
    """Render ``NAME.cast`` as ``NAME.svg`` and ``NAME-narrow.svg`` beside it."""
    recording = read_cast(cast)
    wide = cast.with_suffix(".svg")
    wide.write_text(render_svg(recording, idle=idle), encoding="utf-8")
    narrow = narrow_path(wide)
    narrow.write_text(render_narrow_svg(recording, idle=idle), encoding="utf-8")
    return wide, narrow


def record(name: Path, lab: bool) -> int:
    """Run the demo with ``--cast`` and render both SVGs beside the cast."""
    cast = name.with_name(name.name + ".cast")
    argv = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--cast", str(cast)]
    if lab:
        argv.append("--lab")
    code = subprocess.run(argv, check=False).returncode
    if code != 0:
        print(f"screencast: the demo exited {code}; the recording shows why", file=sys.stderr)
    render_files(cast)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser(
        "record", help="run the demo and record it (NAME.cast, NAME.svg, NAME-narrow.svg)"
    )
    rec.add_argument("name", type=Path, help="path without suffix, e.g. docs/_static/demo")
    rec.add_argument("--lab", action="store_true", help="behind the NAT lab's NATs (root)")
    svg = sub.add_parser(
        "svg", help="render NAME.cast as NAME.svg and NAME-narrow.svg, or as the SVG given"
    )
    svg.add_argument("cast", type=Path)
    svg.add_argument("svg", type=Path, nargs="?", help="render only this file")
    svg.add_argument("--narrow", action="store_true", help="the phone layout (with SVG)")
    svg.add_argument("--idle", type=float, default=2.0, help="longest pause kept (seconds)")
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.name, args.lab)
    if args.svg is None:
        if args.narrow:
            parser.error("--narrow goes with an SVG file name; without one both are rendered")
        render_files(args.cast, idle=args.idle)
        return 0
    render = render_narrow_svg if args.narrow else render_svg
    args.svg.write_text(render(read_cast(args.cast), idle=args.idle), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
