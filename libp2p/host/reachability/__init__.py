"""Reachability that is true: one report per address, from every source the host has.

* :mod:`.report` -- :class:`ReachabilityReport` (``host.reachability``), its per-address
  entries, the NAT type and what a dialer should expect, and the change event;
* :mod:`.core` -- :class:`ReachabilityCore`, the I/O-free weighing of AutoNAT v2 and v1
  answers, observed and mapped addresses (no server decides alone; hysteresis), and the
  schedule of AutoNAT v2 checks; :class:`ReachabilityConfig` its settings;
* :mod:`.service` -- :class:`ReachabilityService`, the trio driver every host runs.
"""

from __future__ import annotations

from .core import ReachabilityConfig, ReachabilityCore, public_ip_reason, server_group
from .report import (
    AddressReachability,
    AddressSource,
    Expectation,
    Filtering,
    NatType,
    ReachabilityReport,
    ReachabilityReportChanged,
)
from .service import ReachabilityService

__all__ = [
    "AddressReachability",
    "AddressSource",
    "Expectation",
    "Filtering",
    "NatType",
    "ReachabilityConfig",
    "ReachabilityCore",
    "ReachabilityReport",
    "ReachabilityReportChanged",
    "ReachabilityService",
    "public_ip_reason",
    "server_group",
]
