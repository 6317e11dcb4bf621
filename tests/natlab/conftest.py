"""Fixtures for the NAT lab (see ``lab.py``).

``nat_lab`` is a factory: ``lab = nat_lab(a="eim", b="symmetric")`` builds a lab (skipping the
test, or failing it under ``scripts/test.sh``, if the lab cannot run here) and tears it down
after the test; ``nat_lab(delays={"ra": 0.025})`` adds latency (``jitter=`` and ``loss=``
jitter and packet loss), ``nat_lab(topology="same-nat", hairpin=True)`` changes the topology
(any ``NatLab`` keyword goes). ``lab`` is one lab whose NAT modes (a pair) or keyword arguments
(a dict) can be chosen with indirect parametrization::

    @pytest.mark.parametrize("lab", [("eim", "eim"), ("eim", "symmetric")], indirect=True)
    def test_punch(lab: NatLab) -> None: ...

    @pytest.mark.parametrize("lab", [{"topology": "double-nat"}], indirect=True)
    def test_double(lab: NatLab) -> None: ...

Both fixtures are synchronous: set-up is done before a trio test's event loop starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.natlab.lab import LabError, NatLab, require_lab


@pytest.fixture
def nat_lab() -> Iterator[Callable[..., NatLab]]:
    labs: list[NatLab] = []

    def make(a: str = "eim", b: str | None = None, **options: Any) -> NatLab:
        """``NatLab(a, b, **options)``, started; torn down after the test."""
        require_lab()
        lab = NatLab(a, b, **options)
        lab.start()
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        errors = []
        for lab in reversed(labs):
            try:
                lab.close()
            except LabError as exc:  # tear every lab down before reporting
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def lab(request: pytest.FixtureRequest, nat_lab: Callable[..., NatLab]) -> NatLab:
    param = getattr(request, "param", ("eim", "eim"))
    if isinstance(param, dict):  # NatLab's keyword arguments, e.g. {"topology": "same-nat"}
        return nat_lab(**param)
    a, b = param
    return nat_lab(a, b)
