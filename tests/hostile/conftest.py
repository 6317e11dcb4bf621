"""The hostile-peer tier's summary: cases, failures and crashes per area (test module).

A *crash* is a case whose host under test died (:class:`~tests.hostile.harness.HostCrashed`);
every other failure (wrong or untyped error, lost data, a leak) counts as failing.
"""

from __future__ import annotations

import collections

import pytest

_counts: collections.defaultdict[str, collections.Counter[str]] = collections.defaultdict(
    collections.Counter
)


def _area(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return module.removeprefix("test_").removesuffix(".py")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/hostile/" not in report.nodeid.replace("\\", "/"):
        return
    counts = _counts[_area(report.nodeid)]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        counts["cases"] += 1
        if report.failed:
            text = str(report.longrepr)
            counts["crashed" if "HostCrashed" in text else "failed"] += 1
        elif report.skipped:
            counts["skipped"] += 1
    elif report.when == "teardown" and report.failed:
        counts["failed"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _counts:
        return
    write = terminalreporter.write_line
    write("")
    write("hostile-peer tier: cases / failing / crashed (host died), per area")
    total: collections.Counter[str] = collections.Counter()
    for area in sorted(_counts):
        c = _counts[area]
        total.update(c)
        write(
            f"  {area:<22} {c['cases']:4d} cases  {c['failed']:3d} failing  "
            f"{c['crashed']:3d} crashed"
        )
    write(
        f"  {'total':<22} {total['cases']:4d} cases  {total['failed']:3d} failing  "
        f"{total['crashed']:3d} crashed"
    )
