"""What docs/nat-traversal.rst shows the example scripts print, and a check against a real run.

Every ``.. code-block:: text`` on the page is one of:

* a snippet's output, starting with ``$ .venv/bin/python docs/snippets/<name>.py``
  (compared by ``tests/docs/test_snippets.py``);
* a script's output, marked by a comment on the line before its directive::

      .. output: loopback listener

  names the *setting* (the run it comes from: ``loopback``, ``lab-eim`` ...) and the role
  whose lines the block shows; without a role, the block holds several roles, each under a
  ``dialer:`` / ``listener:`` / ``relay:`` heading line.

A shown *entry* is a line stamped ``[   1.234 s]`` with the lines indented by four spaces
that follow it (an address list), as the scripts print them. :func:`pattern` turns one
into a regular expression: what differs from run to run becomes a wildcard (the stamp,
durations, ports, times of day, bytes relayed, peer IDs, which the page shortens to
``12D3KooWKfFm…``); every other word and number stays exact (``attempt 1``, ``21 bytes``,
``120 s``, the lab's IP addresses). :func:`match_setting` then finds, for every shown entry,
an entry of the real run that its pattern matches, with the peer IDs bound consistently
across the setting's blocks and the shown order kept (see :data:`RACE_WINDOW`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "nat-traversal.rst"
ROLES = ("relay", "listener", "dialer")

_BLOCK = re.compile(r"^\.\. code-block:: text\n\n(?P<body>(?:(?:   .*)?\n)+)", re.M)
_MARKER = re.compile(r"^\.\. output: (?P<setting>[\w-]+)(?: (?P<role>\w+))?$")
_SNIPPET = "$ .venv/bin/python docs/snippets/"
_STAMP = re.compile(r"^\[ *\d+\.\d{3} s\] ")

# What differs from run to run, in the order the alternatives are tried: a peer ID (shown
# shortened with an ellipsis, or whole), a time of day, a port, a duration, bytes relayed.
_VARIABLE = re.compile(
    r"(?P<peer>12D3KooW[1-9A-HJ-NP-Za-km-z]+…?)"
    r"|(?P<clock>\b\d{2}:\d{2}:\d{2}\b)"
    r"|(?P<port>(?<=/tcp/)\d+|(?<=/udp/)\d+)"
    r"|(?P<duration>\b\d+(?:\.\d+)? ms\b|\b\d+\.\d+ s\b)"
    r"|(?P<relayed>\b\d+(?= bytes relayed\b))"
    r'|(?P<json>(?<="t": )\d+|(?<=_ms": )\d+)'
)
_WILDCARD = {
    "clock": r"\d{2}:\d{2}:\d{2}",
    "port": r"\d+",
    "duration": None,  # keeps its unit: filled in below
    "relayed": r"\d+",
    "json": r"\d+",
}

# Two entries of one role printed closer together than this (by the real run's stamps) may
# appear in either order: they come from concurrent tasks (on one machine the listener's
# connection reversal and the dialer's direct dial run at once, and the connections each
# opens are reported as they land), so their order is a race. Entries further apart must
# be in the shown order.
RACE_WINDOW = 0.25

# Which of two concurrent plain dials lands first is a race on one machine, where both
# succeed: the listener's connection reversal or the dialer's direct dial (the page's prose
# says so). A shown line that names one outcome also accepts the other; each pair is
# (regex for the shown text, the same words for the other outcome, as a replacement).
RACE_ALTERNATIVES = (
    (
        r"no punch needed: (12D3KooW\S+) dialed us directly \(we are reachable\)( in \S+ ms)"
        r": direct connection from",
        r"no punch needed: we dialed \1 directly (it is reachable)\2: direct connection to",
    ),
    (
        r"no punch needed: we dialed (12D3KooW\S+) directly \(it is reachable\)( in \S+ ms)"
        r": direct connection to",
        r"no punch needed: \1 dialed us directly (we are reachable)\2: direct connection from",
    ),
    # The dialer's own lines about that connection follow its direction: "from" when the
    # listener's reversal won.
    (r"\] direct connection to (?=\S+ \(relayed)", "] direct connection from "),
    (r"\] result: direct connection to ", "] result: direct connection from "),
)


@dataclass
class Block:
    """One shown block of script output: where it is, its setting, and its entries by role."""

    line: int  # of the ``.. code-block::`` directive, 1-based
    setting: str
    entries: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """A real run's stamped line with its continuation lines (joined by newlines)."""

    seconds: float
    text: str


#: What a failed comparison adds: how to take the page's lines from a fresh run.
HOW_TO_UPDATE = (
    "take the lines from a real run, peer IDs shortened as the page shows them: "
    "python scripts/demo.py [--lab [--nat-b symmetric]] | python -m tests.docs.shown_output"
)


class PageError(Exception):
    """The page's output blocks are not as this module expects (unmarked, malformed)."""


def entries_of(lines: list[str], where: str) -> list[str]:
    """Stamped lines with their four-space continuation lines, joined by newlines."""
    entries: list[str] = []
    for line in lines:
        if line.startswith("    ") and entries:
            entries[-1] += "\n" + line
        elif _STAMP.match(line):
            entries.append(line)
        else:
            raise PageError(f"{where}: neither stamped nor continued: {line!r}")
    return entries


def blocks(text: str | None = None) -> list[Block]:
    """The page's script-output blocks; :class:`PageError` for a text block that is neither
    a snippet's output nor marked, and for a marker with no text block after it."""
    text = PAGE.read_text(encoding="utf-8") if text is None else text
    lines = text.splitlines()
    found: list[Block] = []
    marked: set[int] = set()
    for match in _BLOCK.finditer(text):
        at = text.count("\n", 0, match.start())  # 0-based line of the directive
        body = [line[3:] for line in match.group("body").splitlines() if line.strip()]
        previous = next((lines[i] for i in range(at - 1, -1, -1) if lines[i].strip()), "")
        marker = _MARKER.match(previous)
        where = f"{PAGE.name}:{at + 1}"
        if marker is None:
            if body and body[0].startswith(_SNIPPET):
                continue
            raise PageError(
                f"{where}: a text block that is no snippet's output needs a marker comment "
                "on the line before it (.. output: <setting> [<role>]), so that the tests "
                "compare it with a real run"
            )
        marked.add(next(i for i in range(at - 1, -1, -1) if lines[i].strip()))
        block = Block(at + 1, marker.group("setting"))
        role = marker.group("role")
        if role is not None:
            if role not in ROLES:
                raise PageError(f"{where}: unknown role {role!r}")
            block.entries[role] = entries_of(body, where)
        else:
            current: str | None = None
            by_role: dict[str, list[str]] = {}
            for line in body:
                if line.endswith(":") and line[:-1] in ROLES:
                    current = line[:-1]
                    by_role.setdefault(current, [])
                elif current is None:
                    raise PageError(f"{where}: a line before any role heading: {line!r}")
                else:
                    by_role[current].append(line)
            if not by_role:
                raise PageError(f"{where}: no role heading (dialer: ...) and no role marked")
            block.entries = {r: entries_of(ls, where) for r, ls in by_role.items()}
        found.append(block)
    for i, line in enumerate(lines):
        if _MARKER.match(line) and i not in marked:
            raise PageError(f"{PAGE.name}:{i + 1}: a marker with no text block after it")
    return found


def pattern(shown: str) -> re.Pattern[str]:
    """The regular expression for one shown entry (see the module's docstring); each peer ID
    is a group of its own, for :func:`bindings`."""
    return re.compile(_alternatives(shown), re.S)


def line_pattern(shown: str) -> re.Pattern[str]:
    """The regular expression for any shown line of output, stamped or not (a snippet's):
    the same wildcards as :func:`pattern`, and in a JSON line the ``t`` and ``*_ms``
    numbers."""
    return re.compile(_pattern_text(shown, stamped=False), re.S)


def _pattern_text(shown: str, *, stamped: bool = True) -> str:
    stamp = _STAMP.match(shown)
    if stamp is None and stamped:
        raise PageError(f"not a stamped line: {shown!r}")
    parts = [r"\[ *\d+\.\d{3} s\] " if stamp else ""]
    last = stamp.end() if stamp else 0
    for match in _VARIABLE.finditer(shown, last):
        parts.append(re.escape(shown[last : match.start()]))
        kind = match.lastgroup
        if kind == "peer":
            parts.append(r"(12D3KooW[1-9A-HJ-NP-Za-km-z]+)")
        elif kind == "duration":
            unit = " ms" if match.group().endswith(" ms") else " s"
            parts.append(r"\d+(?:\.\d+)?" + re.escape(unit))
        else:
            assert kind is not None
            parts.append(_WILDCARD[kind] or "")
        last = match.end()
    parts.append(re.escape(shown[last:]))
    return "".join(parts)


def _peer_ids(shown: str) -> list[str]:
    """The peer IDs of a shown entry as the page shows them (ellipsis removed), in order."""
    return [
        match.group().removesuffix("…")
        for match in _VARIABLE.finditer(shown)
        if match.lastgroup == "peer"
    ]


def _outcomes(shown: str) -> list[str]:
    """The shown entry, and the same with the other outcome of a race it names."""
    texts = [shown]
    for race, other in RACE_ALTERNATIVES:
        if re.search(race, shown):
            texts.append(re.sub(race, other, shown))
    return texts


def _alternatives(shown: str) -> str:
    # Each outcome is also matched on its own by :func:`matches`, which keeps the peer IDs'
    # groups numbered as in the shown text; this joined form is for :func:`pattern`.
    return "|".join(f"(?:{_pattern_text(t)})" for t in _outcomes(shown))


def matches(shown: str, real: str) -> list[tuple[str, str]] | None:
    """``None`` if ``real`` is not what ``shown`` shows, else the pairs (shown peer ID, real
    peer ID) in the order they occur (an alternative outcome of a race counts; see
    :data:`RACE_ALTERNATIVES`)."""
    for text in _outcomes(shown):
        found = re.fullmatch(_pattern_text(text), real, re.S)
        if found is not None:
            return list(zip(_peer_ids(text), found.groups(), strict=True))
    return None


def real_entries(labelled: list[str]) -> dict[str, list[Entry]]:
    """A ``scripts/demo.py`` run's output (``role     | line``) as entries by role; lines of
    the demo itself and unstamped lines (none expected) are left out."""
    by_role: dict[str, list[Entry]] = {role: [] for role in ROLES}
    for line in labelled:
        label, _, text = line.partition(" | ")
        role = label.strip()
        if role not in by_role:
            continue
        stamp = _STAMP.match(text)
        if text.startswith("    ") and by_role[role]:
            last = by_role[role][-1]
            by_role[role][-1] = Entry(last.seconds, last.text + "\n" + text)
        elif stamp is not None:
            seconds = float(stamp.group().strip("[] s"))
            by_role[role].append(Entry(seconds, text))
    return by_role


def match_setting(shown: list[Block], real: dict[str, list[Entry]]) -> list[str]:
    """Match every shown entry of a setting's blocks to a real entry of its role: its pattern
    matches, no real entry serves twice, peer IDs are bound one to one across the setting
    (a shortened ID is the same peer wherever the page shows it), and entries of one role
    are in the shown order unless the real run printed them within :data:`RACE_WINDOW` of
    each other. Returns the problems (none when it matches), naming the first shown entry
    that no choice could match."""
    items = [
        (role, entry)
        for block in shown
        for role, entries in block.entries.items()
        for entry in entries
    ]
    candidates: list[list[tuple[int, list[tuple[str, str]]]]] = []
    for role, entry in items:
        options = []
        for index, got in enumerate(real.get(role, [])):
            pairs = matches(entry, got.text)
            if pairs is not None:
                options.append((index, pairs))
        candidates.append(options)
    for (role, entry), options in zip(items, candidates, strict=True):
        if not options:
            printed = "\n".join(e.text for e in real.get(role, []))
            return [f"{role}: no line of the run is\n  {entry}\nthe {role} printed:\n{printed}"]

    chosen: list[int] = []
    deepest = [0]

    def fits(k: int, index: int) -> bool:
        role = items[k][0]
        mine = real[role][index]
        for j in range(k):
            if items[j][0] != role:
                continue
            if chosen[j] == index:
                return False
            theirs = real[role][chosen[j]]
            if chosen[j] > index and theirs.seconds - mine.seconds > RACE_WINDOW:
                return False
        return True

    def bind(pairs: list[tuple[str, str]], ids: dict[str, str]) -> dict[str, str] | None:
        ids = dict(ids)
        for short, full in pairs:
            if ids.get(short, full) != full:
                return None
            if short not in ids and full in ids.values():
                return None
            ids[short] = full
        return ids

    def search(k: int, ids: dict[str, str]) -> bool:
        deepest[0] = max(deepest[0], k)
        if k == len(items):
            return True
        for index, pairs in candidates[k]:
            if not fits(k, index):
                continue
            bound = bind(pairs, ids)
            if bound is None:
                continue
            chosen.append(index)
            if search(k + 1, bound):
                return True
            chosen.pop()
        return False

    if search(0, {}):
        return []
    role, entry = items[deepest[0]]
    printed = "\n".join(e.text for e in real.get(role, []))
    return [
        f"{role}: no line of the run fits\n  {entry}\nin the shown order (lines printed more "
        f"than {RACE_WINDOW} s apart) with the peer IDs the lines before it bound; the "
        f"{role} printed:\n{printed}"
    ]


def shortened(labelled: list[str]) -> str:
    """A demo run's lines by role, peer IDs shortened as the page shows them: what to copy
    into the page when its blocks are out of date."""
    out = []
    for role, entries in real_entries(labelled).items():
        out.append(f"{role}:")
        out += [
            re.sub(r"(12D3KooW[1-9A-HJ-NP-Za-km-z]{4})[1-9A-HJ-NP-Za-km-z]+", r"\1…", e.text)
            for e in entries
        ]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    # python scripts/demo.py [--lab ...] | python -m tests.docs.shown_output
    import sys

    print(shortened(sys.stdin.read().splitlines()))
