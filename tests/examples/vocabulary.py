"""The ``--json`` vocabulary of the example scripts (``examples/nat``), and a check of one line.

Every line is one JSON object with ``t`` (ms since the script started), ``role`` and
``event``, plus exactly the fields its event lists here. Besides the events the issue lists,
the relay and the listener print their reachability report whenever it changes
(``reachability``: the host's status, what a dialer should expect, the NAT type, the one-line
reason and every address with its own status, source and reason), the listener and the
dialer report what they learned of their NAT's mapping (``nat_mapping``), and the listener
reports a lost reservation and failed attempts to make it again (``reservation_lost``,
``reservation_failed``) and, with ``--port-mapping``, its port mapping (``port_mapping``,
``port_mapping_failed``).

Every role also has ``error`` (a mistake: ``message`` is the text of the one line on stderr,
the last line before exit 2) and ``interrupted`` (Ctrl-C: the last line before exit 130).
"""

from __future__ import annotations

from typing import Any

STR = (str,)
INT = (int,)
BOOL = (bool,)
LIST = (list,)
OPT_INT = (int, type(None))
NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_DICT = (dict, type(None))

READY = {"peer_id": STR, "addrs": LIST}
PUNCH = {"peer": STR, "ok": BOOL, "dcutr_role": STR, "attempt": INT, "elapsed_ms": INT}
REACHABILITY = {
    "status": STR,
    "expect": STR,
    "nat_mapping": STR,
    "filtering": STR,
    "reason": STR,
    "port_mapping": OPT_STR,
    "addresses": LIST,
}
NAT_MAPPING = {"mapping": STR, "observers": LIST}
ERROR = {"message": STR}
INTERRUPTED: dict[str, tuple[type, ...]] = {}
#: One entry of a ``reachability`` line's ``addresses``.
REACHABILITY_ADDRESS = {"addr": STR, "status": STR, "source": STR, "reason": STR}

VOCABULARY: dict[str, dict[str, dict[str, tuple[type, ...]]]] = {
    "relay": {
        "ready": READY,
        "reservation": {"peer": STR, "ttl": NUM, "refreshed": BOOL},
        "circuit_opened": {"src": STR, "dst": STR},
        "circuit_closed": {"src": STR, "dst": STR, "bytes": INT, "reason": STR, "duration": NUM},
        "reachability": REACHABILITY,
        "error": ERROR,
        "interrupted": INTERRUPTED,
    },
    "listener": {
        "ready": READY,
        "reachability": REACHABILITY,
        "nat_mapping": {**NAT_MAPPING, "previous": STR},
        "reservation": {
            "relay": STR,
            "relayed_addrs": LIST,
            "expires": INT,
            "limits": OPT_DICT,
            "refreshed": BOOL,
        },
        "connection_opened": {
            "peer": STR,
            "remote_addr": STR,
            "relayed": BOOL,
            "limited": BOOL,
            "direction": STR,
        },
        "hole_punch": PUNCH,
        "echo_served": {"peer": STR, "bytes": INT, "via": STR, "protocol": STR},
        "reservation_lost": {"relay": STR, "reason": STR},
        "reservation_failed": {"relay": STR, "status": OPT_INT, "reason": STR, "retry_in": NUM},
        "port_mapping": {
            "change": STR,
            "protocol": STR,
            "external": OPT_STR,
            "internal": STR,
            "external_is_public": BOOL,
            "lease": NUM,
        },
        "port_mapping_failed": {
            "failure": STR,
            "reason": STR,
            "internal": STR,
            "protocol": OPT_STR,
        },
        "error": ERROR,
        "interrupted": INTERRUPTED,
    },
    "dialer": {
        "ready": READY,
        "nat_mapping": NAT_MAPPING,
        "relayed_connection": {"peer": STR, "remote_addr": STR, "limits": OPT_DICT},
        "echo": {
            "via": STR,
            "ok": BOOL,
            "bytes": INT,
            "protocol": STR,
            "served": BOOL,
            "reply_bytes": OPT_INT,
        },
        "hole_punch": PUNCH,
        "direct_connection": {"remote_addr": STR},
        "result": {
            "ok": BOOL,
            "relayed_ms": OPT_INT,
            "direct_ms": OPT_INT,
            "echo_direct_ms": OPT_NUM,
            "direct_addr": OPT_STR,
            "reason": OPT_STR,
            "protocol": STR,
            "app": OPT_STR,
        },
        "error": ERROR,
        "interrupted": INTERRUPTED,
    },
}

MAPPINGS = {"endpoint-independent", "endpoint-dependent", "unknown"}
VALUES = {
    "status": {"public", "private", "unknown"},
    "expect": {"direct", "hole punch", "relay only", "unknown"},
    "filtering": {"open", "filtered", "unknown"},
    "source": {"listen", "observed", "mapped"},
    "direction": {"inbound", "outbound"},
    "via": {"relayed", "direct"},
    "mapping": MAPPINGS,
    "nat_mapping": MAPPINGS,
    "app": {"echoed", "replied", "not_served", None},
    "change": {"added", "renewed", "updated", "removed", "lost"},
    "dcutr_role": {"dialer", "listener"},
    "previous": MAPPINGS,
}


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number here
    return isinstance(value, types)


def check_line(line: dict[str, Any], role: str | None = None) -> None:
    """Assert that ``line`` (a parsed ``--json`` line) follows the vocabulary."""
    assert _is(line.get("t"), INT), line
    assert line["t"] >= 0, line
    assert line.get("role") in VOCABULARY, line
    if role is not None:
        assert line["role"] == role, line
    events = VOCABULARY[line["role"]]
    assert line.get("event") in events, f"event not in the {line['role']} vocabulary: {line}"
    fields = dict(events[line["event"]])
    if line["event"] == "hole_punch":
        fields.update({"direct_addr": STR} if line.get("ok") else {"reason": STR})
    want = {"t", "role", "event", *fields}
    assert set(line) == want, f"fields {sorted(line)} but want {sorted(want)}: {line}"
    for name, types in fields.items():
        assert _is(line[name], types), f"{name} is not {types}: {line}"
        if name in VALUES:
            assert line[name] in VALUES[name], f"{name}={line[name]!r}: {line}"
    if line["event"] == "ready":
        assert all(isinstance(a, str) and "/0.0.0.0/" not in a for a in line["addrs"]), line
    if line["event"] == "reservation" and line["role"] == "listener":
        assert all("/p2p-circuit/p2p/" in a for a in line["relayed_addrs"]), line
    if line["event"] == "echo":
        # Served or not, and a reply exactly when served; ok means the message came back.
        assert (line["reply_bytes"] is not None) == line["served"], line
        assert not line["ok"] or line["reply_bytes"] == line["bytes"], line
    if line["event"] == "reachability":
        for entry in line["addresses"]:
            assert isinstance(entry, dict), line
            assert set(entry) == set(REACHABILITY_ADDRESS), line
            for name, types in REACHABILITY_ADDRESS.items():
                assert _is(entry[name], types), f"addresses: {name} is not {types}: {line}"
                if name in VALUES:
                    assert entry[name] in VALUES[name], f"addresses: {name}={entry[name]!r}"
            assert "/p2p-circuit" not in entry["addr"], line
        # The host's status follows its addresses': public when one is, and only then.
        public = [e for e in line["addresses"] if e["status"] == "public"]
        assert (line["status"] == "public") == bool(public), line
        assert (line["expect"] == "direct") == (line["status"] == "public"), line
        assert line["reason"].startswith(line["status"] + ":"), line
    for name in ("limits",):
        if isinstance(line.get(name), dict):
            assert set(line[name]) == {"duration", "data"}, line
