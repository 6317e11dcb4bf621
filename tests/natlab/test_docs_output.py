"""The port-mapping output the docs show (docs/nat-traversal.rst, the blocks marked
``.. output: lab-port-mapping`` and ``lab-double-nat``) against real text runs of relay.py and
``listener.py --port-mapping`` behind miniupnpd in the NAT lab.

The other shown script output is compared with scripts/demo.py's runs
(tests/examples/test_demo.py); the demo does not map ports, and the lab's port-mapping tests
(test_reachability.py) read ``--json`` lines, which do not carry the text.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from scripts.demo import Console, Program, address_line
from tests.docs import shown_output
from tests.natlab.lab import NatLab, require_port_mapping
from tests.natlab.test_hole_punch import LAB_PUBLIC_RANGES, STEP

pytestmark = pytest.mark.natlab

EXAMPLES = shown_output.PAGE.parents[1] / "examples" / "nat"


def text_run(
    lab: NatLab, settled: Callable[[str], bool], timeout: float
) -> tuple[list[str], list[str]]:
    """relay.py on the relay host and ``listener.py --port-mapping`` in ``a``, both printing
    text, until the listener prints a line that is ``settled``; returns both programs' lines
    (their Ctrl-C ends them)."""
    console = Console()
    programs: list[Program] = []

    def start(label: str, host: str, *args: str) -> Program:
        argv: Sequence[str] = [sys.executable, "-u", str(EXAMPLES / f"{label}.py"), *args]
        popen: subprocess.Popen[str] = lab.popen(
            host,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        programs.append(Program(label, popen, console))
        return programs[-1]

    try:
        relay = start(
            "relay", "relay", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            *LAB_PUBLIC_RANGES, "--min-servers", "1",
        )  # fmt: skip
        relay_addr = relay.wait_for(address_line(f"/ip4/{lab.ip('relay')}/"), STEP, "its address")
        listener = start(
            "listener", "a", "--relay", relay_addr.strip(),
            "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}", "--port-mapping",
            *LAB_PUBLIC_RANGES,
        )  # fmt: skip
        listener.wait_for(settled, timeout, "the settled report")
    finally:
        for program in reversed(programs):
            program.stop()
    return relay.lines, listener.lines


def check_shown(setting: str, listener_lines: list[str]) -> None:
    blocks = [block for block in shown_output.blocks() if block.setting == setting]
    assert blocks, f"the docs show no output marked {setting!r}"
    real = shown_output.real_entries([f"listener | {line}" for line in listener_lines])
    problems = shown_output.match_setting(blocks, real)
    assert not problems, "\n".join(
        ["docs/nat-traversal.rst is out of date:", *problems, shown_output.HOW_TO_UPDATE]
    )


def test_the_docs_show_what_a_mapped_listener_prints(nat_lab: Any) -> None:
    require_port_mapping()
    lab: NatLab = nat_lab(port_mapping=("ra",))
    _relay, lines = text_run(lab, lambda line: "] reachability: public," in line, 2 * STEP)
    check_shown("lab-port-mapping", lines)


def test_the_docs_show_what_a_listener_behind_a_carrier_grade_nat_prints(nat_lab: Any) -> None:
    require_port_mapping()
    lab: NatLab = nat_lab(topology="double-nat", port_mapping=("ra",), port_mapping_stun=False)
    _relay, lines = text_run(
        lab,
        lambda line: "] reachability: private," in line and "; port mapping: failed" in line,
        2 * STEP,
    )
    check_shown("lab-double-nat", lines)
