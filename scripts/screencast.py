"""Screencasts of the demo for the docs, recorded from real runs, re-recordable at any time.

    python scripts/screencast.py record docs/_static/screencast-loopback   # loopback
    sudo .venv/bin/python scripts/screencast.py record --lab docs/_static/screencast-lab
    python scripts/screencast.py svg FILE.cast FILE.svg                      # render again

``record`` runs ``scripts/demo.py --cast`` (the three example scripts, really run: on loopback,
or behind the two NATs of the NAT lab with ``--lab``) and writes ``NAME.cast`` (asciinema's v2
format: a JSON header line, then ``[seconds, "o", text]`` events; any asciinema player plays
it) and ``NAME.svg``, the same recording as an animated SVG: a terminal window whose lines
appear at the times they were printed, scrolling as a terminal does, then holding the end for
a few seconds and starting over. The SVG is self-contained (CSS animations, no script, no
font files), so the docs page shows it with a plain ``<object>``/``<img>`` and loads nothing
from the network. Pauses longer than ``--idle`` seconds are shortened to it, as asciinema's
``idle_time_limit`` does.
"""

from __future__ import annotations

import argparse
import json
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
HOLD = 8.0  # seconds the end stays on screen before the loop starts over
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


def render_svg(cast: Cast, *, idle: float = 2.0, rows: int | None = None) -> str:
    """The cast as an animated SVG (see the module docs)."""
    lines = squeeze(cast.lines, idle)
    rows = rows or cast.height
    total = (lines[-1][0] if lines else 0.0) + HOLD
    width = round(2 * PAD + cast.width * CHAR_WIDTH)
    height = TITLE_BAR + 2 * PAD + rows * LINE_HEIGHT

    def pct(t: float) -> str:
        return f"{100 * t / total:.3f}%"

    css = [
        f"text {{ font: 13px 'DejaVu Sans Mono', Menlo, Consolas, monospace; fill: {TEXT};"
        " white-space: pre; }",
        f".line {{ opacity: 0; animation: {total:.3f}s linear infinite; }}",
    ]
    body = []
    for i, (when, text) in enumerate(lines):
        name = f"l{i}"
        css.append(
            f"@keyframes {name} {{ 0%, {pct(max(when - 0.001, 0))} {{ opacity: 0 }} "
            f"{pct(when)}, 100% {{ opacity: 1 }} }}"
        )
        css.append(f"#{name} {{ animation-name: {name}; }}")
        label, sep, rest = text.partition(" | ")
        colour = COLOURS.get(label.strip())
        shown = text[: cast.width]
        y = PAD + (i + 1) * LINE_HEIGHT - 4
        if sep and colour is not None:
            head = escape(f"{label}{sep}")
            tail = escape(rest[: max(cast.width - len(label) - len(sep), 0)])
            content = f'<tspan fill="{colour}">{head}</tspan>{tail}'
        else:
            content = escape(shown)
        body.append(f'<text id="{name}" class="line" x="{PAD}" y="{y}">{content}</text>')
    # Scrolling: once more lines have appeared than fit, the text moves up a line per line.
    steps = ["0% { transform: translateY(0px) }"]
    for i, (when, _text) in enumerate(lines):
        if i >= rows:
            offset = -(i - rows + 1) * LINE_HEIGHT
            steps.append(
                f"{pct(max(when - 0.001, 0))} {{ transform: translateY({offset + LINE_HEIGHT}px) }}"
            )
            steps.append(f"{pct(when)} {{ transform: translateY({offset}px) }}")
    last = -(max(len(lines) - rows, 0)) * LINE_HEIGHT
    steps.append(f"100% {{ transform: translateY({last}px) }}")
    css.append(f"@keyframes scroll {{ {' '.join(steps)} }}")
    css.append(f"#scroll {{ animation: scroll {total:.3f}s step-end infinite; }}")
    title = escape(cast.title)
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


def record(name: Path, lab: bool) -> int:
    """Run the demo with ``--cast`` and render the SVG beside the cast."""
    cast = name.with_suffix(".cast")
    argv = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--cast", str(cast)]
    if lab:
        argv.append("--lab")
    code = subprocess.run(argv, check=False).returncode
    if code != 0:
        print(f"screencast: the demo exited {code}; the recording shows why", file=sys.stderr)
    name.with_suffix(".svg").write_text(render_svg(read_cast(cast)), encoding="utf-8")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the demo and record it (NAME.cast, NAME.svg)")
    rec.add_argument("name", type=Path, help="path without suffix, e.g. docs/_static/demo")
    rec.add_argument("--lab", action="store_true", help="behind the NAT lab's NATs (root)")
    svg = sub.add_parser("svg", help="render a cast as an animated SVG")
    svg.add_argument("cast", type=Path)
    svg.add_argument("svg", type=Path)
    svg.add_argument("--idle", type=float, default=2.0, help="longest pause kept (seconds)")
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.name, args.lab)
    args.svg.write_text(render_svg(read_cast(args.cast), idle=args.idle), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
