"""The NAT lab's topologies and router rulesets: address plans and nftables text, no I/O.

``lab.py`` builds what this module describes. A :class:`Plan` lists the routers (upstream ones
first) and the hosts behind them; :func:`nat_ruleset` and :func:`firewall6_ruleset` write a
router's nftables configuration from its mapping, filtering and hairpinning.

Topologies (``TOPOLOGIES``; on the internet, 198.51.100.0/24, only the last byte is shown)::

  "two-nats" (default)      "same-nat"                  "double-nat"
  relay relay2  ra     rb   relay relay2  ra            relay relay2  ca             cb
   .10   .11    .1     .2    .10   .11    .1             .10   .11    .1             .2
                |      |                  |                           |              |
                a      b            lan0 (a bridge)             100.64.1.1/24   100.64.2.1/24
         192.0.2.2  192.0.2.66      |            |                    |              |
                                a 192.0.2.2  b 192.0.2.3        ra 100.64.1.2   rb 100.64.2.2
                                                                      |              |
                                                                a 192.0.2.2    b 192.0.2.66

``"two-nats"``
    Hosts ``a`` and ``b`` behind their own home routers ``ra`` and ``rb`` (today's lab).
``"same-nat"``
    ``a`` and ``b`` on one LAN (a bridge in the router's namespace) behind router ``ra``; there
    is no ``rb``. With ``hairpin`` the router loops a LAN packet addressed to its own public
    address back to the LAN host that owns the mapping (see :func:`nat_ruleset`). With
    ``client_isolation`` (``NatLab``) the bridge does not forward between the hosts' ports, as
    on guest Wi-Fi: then hairpinning is their only direct path.
``"double-nat"``
    A carrier-grade NAT in front of *each* home router, two separate ISPs: ``a`` -> ``ra``
    (home NAT, LAN 192.0.2.0/26, WAN 100.64.1.2) -> ``ca`` (CGNAT, inside 100.64.1.0/24 of the
    shared address space 100.64.0.0/10, WAN 198.51.100.1) -> internet; likewise ``b`` -> ``rb``
    -> ``cb``. Every public observer sees the CGNAT's address. Home routers have no default
    route, only one for the internet's 198.51.100.0/24 via their CGNAT.
``"ipv6"``
    Dual stack: "two-nats" for IPv4, plus IPv6 on 2001:db8::/32 without translation. The
    internet is 2001:db8::/64 (relay ::10, relay2 ::11, ra ::1, rb ::2); router ``ra`` routes
    2001:db8:a::/64 (itself ::1, host ``a`` ::2) and ``rb`` 2001:db8:b::/64, each with a
    stateful firewall (:func:`firewall6_ruleset`). Public hosts and routers have a route per LAN
    prefix via its router, never a default route.

Observers (``NatLab(observers=n)``, any topology): one more public host, ``observers``
(198.51.100.20, and 2001:db8::20 where the topology has IPv6), that holds ``n`` more addresses,
one per observer peer (:func:`observer_addresses`): IPv4 198.51.100.21, .22, ... on the
internet's subnet, and IPv6 2001:db8:100::1, 2001:db8:200::1, ..., each in a /56 of its own,
routed via 2001:db8::20 by the other public hosts and the routers on the internet. Peers that
count an address of theirs only once several distinct observers report it (go-libp2p: four,
IPv4 /32 and, in later versions, IPv6 /56 groups) learn it from peers listening there.

Mapping modes (``NAT_MODES``), per NAT router:

``"eim"``
    ``masquerade``: endpoint-independent and port-preserving (the source port is kept whenever
    the resulting tuple is free).
``"eim-shifted"``
    endpoint-independent but not port-preserving: ``snat`` to the WAN address with the external
    port computed from the source port alone, ``sport ^ 0x0400`` (bit 10 flipped: the port moves
    by 1024 up or down). One internal address:port maps to one external port whatever the
    destination; it is never the source port. Linux masquerade has no such mode of its own,
    and a computed port is the way to get it from nftables. Like a NAT whose port table is
    full, a connection whose translated tuple is already taken (two LAN hosts using the same
    source port to the same destination) is dropped rather than given another port.
``"symmetric"``
    ``masquerade fully-random``: every connection gets a random external port
    (address-and-port-dependent mapping).

Filtering (``FILTERINGS``) of unsolicited inbound packets, per router: ``"drop"`` silently,
``"reject"`` (TCP RST, otherwise ICMP / ICMPv6 port unreachable), ``"none"`` (no filter: the
router's own stack answers an IPv4 packet addressed to it; an IPv6 packet goes on to the host,
whose stack answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TOPOLOGIES = ("two-nats", "same-nat", "double-nat", "ipv6")
NAT_MODES = ("eim", "eim-shifted", "symmetric")
#: What a router does with unsolicited inbound packets.
FILTERINGS = ("drop", "reject", "none")

INTERNET_NET = "198.51.100.0/24"
INTERNET_LEN = 24
RELAY_IP = "198.51.100.10"
RELAY2_IP = "198.51.100.11"
CGNAT_NET = "100.64.0.0/10"

INTERNET6_NET = "2001:db8::/64"
RELAY6_IP = "2001:db8::10"
RELAY2_6_IP = "2001:db8::11"

#: The ``observers`` host (``NatLab(observers=n)``) on the internet.
OBSERVERS_IP = "198.51.100.20"
OBSERVERS6_IP = "2001:db8::20"
#: At most this many observer addresses (198.51.100.21-.36).
MAX_OBSERVERS = 16

#: The ``stun`` host (``NatLab(port_mapping=..., port_mapping_stun=True)``): an RFC 3489 STUN
#: server (Debian's ``stund``) needs two addresses to answer CHANGE-REQUEST from the other one.
STUN_IP = "198.51.100.30"
STUN2_IP = "198.51.100.31"
STUN_PORT = 3478
#: The packet mark with which ``table inet miniupnpd`` tells ``table ip natlab`` that one of
#: miniupnpd's rules accepted a packet (``"UPNP"`` in ASCII).
MINIUPNPD_MARK = 0x55504E50
#: miniupnpd's HTTP port (description and SOAP control URLs) on the router's LAN address.
MINIUPNPD_HTTP_PORT = 5000

#: ``"eim-shifted"``: the external port is the source port XOR this.
EIM_SHIFT_XOR = 0x0400
#: How long the hairpin table remembers a mapping after its last outgoing packet.
HAIRPIN_MAPPING_TIMEOUT = "10m"


@dataclass(frozen=True)
class Router:
    """A router: its WAN side faces ``upstream`` (``"internet"`` or the router in front of it),
    its LAN side ``members`` (hosts or routers, with their addresses)."""

    name: str
    upstream: str
    wan_ip: str
    wan_len: int
    #: The upstream router's LAN address, for the route to the internet; None on the internet.
    gateway: str | None
    lan_net: str
    lan_ip: str
    lan_len: int
    members: tuple[tuple[str, str], ...]
    #: IPv6 (``"ipv6"`` topology only): WAN address on 2001:db8::/64, routed LAN prefix.
    wan6: str | None = None
    lan6_net: str | None = None
    lan6_ip: str | None = None


@dataclass(frozen=True)
class Plan:
    """A topology's routers (each after the router it sits behind) and LAN hosts."""

    topology: str
    routers: tuple[Router, ...]
    #: LAN host -> its IPv4 address; host -> IPv6 address where the topology has IPv6.
    host_ips: dict[str, str]
    host_ip6s: dict[str, str] = field(default_factory=dict)

    @property
    def ipv6(self) -> bool:
        return bool(self.host_ip6s)

    def router(self, name: str) -> Router:
        for router in self.routers:
            if router.name == name:
                return router
        raise KeyError(name)

    def router_names(self) -> list[str]:
        return [router.name for router in self.routers]

    def router_of(self, node: str) -> Router:
        """The router whose LAN ``node`` (a host or a router) is on."""
        for router in self.routers:
            if any(member == node for member, _ in router.members):
                return router
        raise KeyError(node)

    def internet_router(self, node: str) -> Router:
        """The router through which ``node`` (a LAN host or any router) reaches the internet."""
        router = self.router(node) if node in self.router_names() else self.router_of(node)
        while router.upstream != "internet":
            router = self.router(router.upstream)
        return router

    def internet_routers(self) -> list[str]:
        return [router.name for router in self.routers if router.upstream == "internet"]

    def site_routers(self, site: str) -> list[str]:
        """Every router on host ``site``'s way to the internet, innermost first."""
        chain = [self.router_of(site)]
        while chain[-1].upstream != "internet":
            chain.append(self.router(chain[-1].upstream))
        return [router.name for router in chain]

    def home_router(self, site: str) -> str:
        return self.router_of(site).name


@dataclass(frozen=True)
class Observer:
    """One observer address of the ``observers`` host: IPv4 on the internet's subnet, IPv6
    in a /56 of its own (``prefix6``, routed via :data:`OBSERVERS6_IP`)."""

    ip: str
    ip6: str
    prefix6: str


def observer_addresses(n: int) -> list[Observer]:
    """The first ``n`` observer addresses: 198.51.100.21 + i and 2001:db8:(i+1)00::1 in
    2001:db8:(i+1)00::/56, i = 0 .. n-1 (distinct /32s and /56s, so distinct observer groups
    for go-libp2p)."""
    if not 0 <= n <= MAX_OBSERVERS:
        raise ValueError(f"observers: want 0 to {MAX_OBSERVERS}, not {n!r}")
    return [
        Observer(f"198.51.100.{21 + i}", f"2001:db8:{i + 1:x}00::1", f"2001:db8:{i + 1:x}00::/56")
        for i in range(n)
    ]


def make_plan(topology: str) -> Plan:
    """The address plan of ``topology`` (one of ``TOPOLOGIES``)."""
    if topology in ("two-nats", "ipv6"):
        v6 = topology == "ipv6"
        ra = Router(
            "ra", "internet", "198.51.100.1", INTERNET_LEN, None,
            "192.0.2.0/26", "192.0.2.1", 26, (("a", "192.0.2.2"),),
            *(("2001:db8::1", "2001:db8:a::/64", "2001:db8:a::1") if v6 else ()),
        )  # fmt: skip
        rb = Router(
            "rb", "internet", "198.51.100.2", INTERNET_LEN, None,
            "192.0.2.64/26", "192.0.2.65", 26, (("b", "192.0.2.66"),),
            *(("2001:db8::2", "2001:db8:b::/64", "2001:db8:b::1") if v6 else ()),
        )  # fmt: skip
        ip6s = {"a": "2001:db8:a::2", "b": "2001:db8:b::2"} if v6 else {}
        return Plan(topology, (ra, rb), {"a": "192.0.2.2", "b": "192.0.2.66"}, ip6s)
    if topology == "same-nat":
        ra = Router(
            "ra", "internet", "198.51.100.1", INTERNET_LEN, None,
            "192.0.2.0/26", "192.0.2.1", 26, (("a", "192.0.2.2"), ("b", "192.0.2.3")),
        )  # fmt: skip
        return Plan(topology, (ra,), {"a": "192.0.2.2", "b": "192.0.2.3"})
    if topology == "double-nat":
        ca = Router(
            "ca", "internet", "198.51.100.1", INTERNET_LEN, None,
            "100.64.1.0/24", "100.64.1.1", 24, (("ra", "100.64.1.2"),),
        )  # fmt: skip
        cb = Router(
            "cb", "internet", "198.51.100.2", INTERNET_LEN, None,
            "100.64.2.0/24", "100.64.2.1", 24, (("rb", "100.64.2.2"),),
        )  # fmt: skip
        ra = Router(
            "ra", "ca", "100.64.1.2", 24, "100.64.1.1",
            "192.0.2.0/26", "192.0.2.1", 26, (("a", "192.0.2.2"),),
        )  # fmt: skip
        rb = Router(
            "rb", "cb", "100.64.2.2", 24, "100.64.2.1",
            "192.0.2.64/26", "192.0.2.65", 26, (("b", "192.0.2.66"),),
        )  # fmt: skip
        return Plan(topology, (ca, cb, ra, rb), {"a": "192.0.2.2", "b": "192.0.2.66"})
    raise ValueError(f"topology must be one of {TOPOLOGIES}, not {topology!r}")


# --- nftables ----------------------------------------------------------------------------------


def _translate(mode: str, match: str, to_ip: str, *, masquerade: bool) -> list[str]:
    """Rules that source-NAT packets matching ``match`` to ``to_ip`` per mapping ``mode``.

    ``masquerade`` picks ``masquerade`` (the outgoing interface's address, which is ``to_ip``)
    over ``snat ip to``; both behave the same for ports.
    """
    if mode == "eim-shifted":
        shift = f"{EIM_SHIFT_XOR:#06x}"
        return [
            f"{match} meta l4proto {proto} snat ip to {to_ip} : {proto} sport ^ {shift}"
            for proto in ("tcp", "udp")
        ] + [f"{match} snat ip to {to_ip}"]
    flags = " fully-random" if mode == "symmetric" else ""
    if masquerade:
        return [f"{match} masquerade{flags}"]
    return [f"{match} snat ip to {to_ip}{flags}"]


def _unsolicited(filtering: str, match: str, counter_prefix: str, *, family: str = "ip") -> str:
    """The rule(s) for an unsolicited packet matching ``match``, per ``filtering``."""
    if filtering == "drop":
        return f'{match} counter name "{counter_prefix}_dropped" drop'
    if filtering == "reject":
        # TCP with an RST; anything else with (ICMP or ICMPv6) port unreachable.
        return (
            f'{match} meta l4proto tcp counter name "{counter_prefix}_rejected" '
            "reject with tcp reset\n"
            f'        {match} counter name "{counter_prefix}_rejected" reject'
        )
    if filtering == "none":
        return f"{match} accept" if family == "ip6" else ""
    raise ValueError(f"filtering must be one of {FILTERINGS}, not {filtering!r}")


def nat_ruleset(
    router: Router,
    mode: str,
    filtering: str = "drop",
    hairpin: bool = False,
    port_mapping: bool = False,
) -> str:
    """The IPv4 NAT of ``router``: ``table ip natlab``.

    * postrouting: LAN traffic to the WAN is translated per ``mode``;
    * forward: replies (``ct state established,related``) and LAN-to-WAN traffic pass, the rest
      is dropped (counted in ``forward_dropped``; packets conntrack finds invalid, such as a SYN
      in the reply direction of an entry an RST has closed, in ``invalid_dropped``);
    * input: an unsolicited packet from the WAN for the router itself (with no DNAT, an early
      punch SYN is for the router's own stack) is treated per ``filtering`` (counters
      ``wan_in_dropped`` / ``wan_in_rejected``). So is a packet from the LAN for the router's
      WAN address that is not hairpinned (``loopback_dropped`` / ``loopback_rejected``): with
      ``"none"`` the router's stack answers it.

    Hairpinning (NAT loopback) of *dynamic* mappings: Linux has no lookup of "the conntrack
    entry whose reply tuple has this destination port", so the router keeps that table itself.
    A filter chain after source NAT (``srcnat + 10``) records, for every packet leaving by the
    WAN, external port -> internal address:port in the dynamic maps ``hairpin_tcp`` /
    ``hairpin_udp`` (refreshed by each packet, forgotten ``HAIRPIN_MAPPING_TIMEOUT`` after the
    last). A LAN packet to the WAN address whose destination port is in the map is DNATed to that
    internal endpoint and source-NATed to the WAN address per ``mode`` (so the other host sees
    the sender's public mapping, as RFC 4787's REQ-9 asks), and the reply goes back the same
    way. Hairpinned connections are counted in ``hairpinned`` and not filtered: only packets
    from the WAN are. The map is keyed by external port alone, so if two internal endpoints
    share an external port (possible with port-preserving masquerade toward different
    destinations) the latest one wins.

    With ``port_mapping`` the router runs miniupnpd (:func:`miniupnpd_ruleset`): a packet that
    one of miniupnpd's filter rules accepted carries :data:`MINIUPNPD_MARK`, and this table
    lets it through its forward chain (a DNATed connection to a mapped port) and its input
    chain (the answers to miniupnpd's own STUN test).
    """
    wan = router.wan_ip
    lan = router.lan_net
    hairpin_maps = hairpin_prerouting = hairpin_record = hairpin_forward = ""
    hairpin_postrouting: list[str] = []
    if hairpin:
        # `meta l4proto` before the update gives `ct original proto-src` its type.
        hairpin_maps = "\n".join(
            f"    map hairpin_{proto} {{ type inet_service : ipv4_addr . inet_service; "
            f"flags dynamic, timeout; timeout {HAIRPIN_MAPPING_TIMEOUT}; }}"
            for proto in ("tcp", "udp")
        )
        hairpin_record = "\n".join(
            f'        oifname "wan0" ct direction original meta l4proto {proto} '
            f"update @hairpin_{proto} {{ {proto} sport : ct original ip saddr . "
            "ct original proto-src }"
            for proto in ("tcp", "udp")
        )
        hairpin_prerouting = "\n".join(
            f'        iifname "lan0" ip daddr {wan} meta l4proto {proto} '
            f"dnat ip to {proto} dport map @hairpin_{proto}"
            for proto in ("tcp", "udp")
        )
        hairpin_forward = (
            '        iifname "lan0" oifname "lan0" ct status dnat ct state new '
            'counter name "hairpinned" accept\n'
            '        iifname "lan0" oifname "lan0" ct status dnat accept'
        )
        hairpin_postrouting = _translate(
            mode, f'oifname "lan0" ct status dnat ip saddr {lan}', wan, masquerade=False
        )
    postrouting = "\n        ".join(
        _translate(mode, f'oifname "wan0" ip saddr {lan}', wan, masquerade=True)
        + hairpin_postrouting
    )
    unsolicited = _unsolicited(filtering, 'iifname "wan0"', "wan_in")
    mapped_forward = mapped_input = ""
    if port_mapping:
        mapped_forward = f"meta mark {MINIUPNPD_MARK:#x} accept"
        mapped_input = f'iifname "wan0" meta mark {MINIUPNPD_MARK:#x} accept'

    loopback = _unsolicited(filtering, f'iifname "lan0" ip daddr {wan}', "loopback")
    return f"""
table ip natlab {{
    counter wan_in_dropped {{ }}
    counter wan_in_rejected {{ }}
    counter forward_dropped {{ }}
    counter invalid_dropped {{ }}
    counter loopback_dropped {{ }}
    counter loopback_rejected {{ }}
    counter hairpinned {{ }}
{hairpin_maps}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
{hairpin_prerouting}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        {postrouting}
    }}
    chain mappings {{
        type filter hook postrouting priority srcnat + 10; policy accept;
{hairpin_record}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid counter name "invalid_dropped" drop
        iifname "lan0" oifname "wan0" accept
        {mapped_forward}
{hairpin_forward}
        counter name "forward_dropped" drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        {mapped_input}
        {unsolicited}
        ct state established,related accept
        {loopback}
    }}
}}
"""


_ND = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect"


def firewall6_ruleset(router: Router, filtering: str = "drop") -> str:
    """The IPv6 stateful firewall of ``router`` (no translation): ``table ip6 natlab6``.

    Forward: replies and related ICMPv6 pass, LAN-to-WAN passes; an unsolicited packet from the
    WAN for the LAN is dropped (``wan_in_dropped``), rejected (``wan_in_rejected``: TCP RST,
    otherwise ICMPv6 port unreachable) or, with ``"none"``, let through to the host, whose stack
    answers. The router's own input from the WAN: neighbour discovery always passes, other
    unsolicited packets get the same treatment (the router's stack answers with ``"none"``).
    """
    forward = _unsolicited(filtering, 'iifname "wan0" oifname "lan0"', "wan_in", family="ip6")
    own = _unsolicited(filtering, 'iifname "wan0"', "wan_in")
    return f"""
table ip6 natlab6 {{
    counter wan_in_dropped {{ }}
    counter wan_in_rejected {{ }}
    counter forward_dropped {{ }}
    counter invalid_dropped {{ }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid counter name "invalid_dropped" drop
        iifname "lan0" oifname "wan0" accept
        {forward}
        counter name "forward_dropped" drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" icmpv6 type {{ {_ND} }} accept
        {own}
    }}
}}
"""


def miniupnpd_ruleset() -> str:
    """``table inet miniupnpd``: the chains miniupnpd 2.3.1 (nftables backend) fills in.

    miniupnpd adds rules to existing chains of an ``inet`` table, named in its configuration
    (:func:`miniupnpd_config`): a DNAT rule per mapping in ``prerouting_miniupnpd``, an
    accept rule per mapping in ``miniupnpd`` (matching the WAN interface, the internal
    address and port), SNAT rules for PCP PEER in ``postrouting_miniupnpd``. The base chains
    here hook them in. Tables cannot jump into each other, and an ``accept`` in one base chain
    does not stop another table's chain from dropping the packet, so the filter hooks mark
    the packet before jumping into ``miniupnpd`` and clear the mark when nothing there
    matched: a packet that keeps :data:`MINIUPNPD_MARK` was accepted by miniupnpd, and
    :func:`nat_ruleset` (``port_mapping=True``) lets it pass.

    The input hook matters for miniupnpd's STUN test: it opens the UDP ports of its four
    test sockets with rules in the *forward* chain ``miniupnpd``, which alone never sees a
    packet addressed to the router itself.
    """
    mark = f"{MINIUPNPD_MARK:#x}"
    return f"""
table inet miniupnpd {{
    chain forward {{
        type filter hook forward priority filter - 5; policy accept;
        meta mark set {mark} jump miniupnpd
        meta mark set 0x0
    }}
    chain input {{
        type filter hook input priority filter - 5; policy accept;
        meta mark set {mark} jump miniupnpd
        meta mark set 0x0
    }}
    chain miniupnpd {{
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat - 5; policy accept;
        jump prerouting_miniupnpd
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat - 5; policy accept;
        jump postrouting_miniupnpd
    }}
    chain prerouting_miniupnpd {{
    }}
    chain postrouting_miniupnpd {{
    }}
}}
"""


def miniupnpd_config(
    router: Router,
    uuid: str,
    *,
    stun: bool,
    options: dict[str, str] | None = None,
) -> str:
    """miniupnpd.conf for ``router`` (option names of miniupnpd 2.3.1's ``options.c``).

    UPnP IGD on the LAN address (HTTP on :data:`MINIUPNPD_HTTP_PORT`), NAT-PMP and PCP
    (``enable_natpmp`` turns on both: they share port 5351), ``secure_mode`` (a client maps
    only to itself), mappings allowed for the LAN's unprivileged ports, the chains of
    :func:`miniupnpd_ruleset`. With ``stun`` it learns its external address from the lab's
    STUN server (``ext_perform_stun``); without, from ``wan0``, and every address of this
    lab is in a range miniupnpd calls reserved, so it then refuses to forward
    (``getifaddr.c``'s ``addr_is_reserved``). ``options`` adds or overrides lines (e.g.
    ``{"min_lifetime": "2"}``: PCP clamps lifetimes to at least ``min_lifetime``, 120 s by
    default).
    """
    settings = {
        "ext_ifname": "wan0",
        "listening_ip": "lan0",
        "http_port": str(MINIUPNPD_HTTP_PORT),
        "enable_upnp": "yes",
        "enable_natpmp": "yes",
        "secure_mode": "yes",
        "system_uptime": "yes",
        "notify_interval": "60",
        "clean_ruleset_interval": "600",
        "uuid": uuid,
        "upnp_table_name": "miniupnpd",
        "upnp_nat_table_name": "miniupnpd",
        "upnp_forward_chain": "miniupnpd",
        "upnp_nat_chain": "prerouting_miniupnpd",
        "upnp_nat_postrouting_chain": "postrouting_miniupnpd",
    }
    if stun:
        settings.update(ext_perform_stun="yes", ext_stun_host=STUN_IP, ext_stun_port=str(STUN_PORT))
    settings.update(options or {})
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines += [
        f"allow 1024-65535 {router.lan_net} 1024-65535",
        "deny 0-65535 0.0.0.0/0 0-65535",
    ]
    return "\n".join(lines) + "\n"
