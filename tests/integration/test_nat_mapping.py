"""The host's NAT mapping over loopback: events, the callback hook, ageing after close.

Linux routes all of 127.0.0.0/8 to the loopback interface, so peers on 127.0.0.2 and
127.0.0.3 are two observers (two IPs) of a host on 127.0.0.1: they see its listen address
untranslated, which is an endpoint-independent mapping. The endpoint-dependent case needs a
real symmetric NAT: tests/natlab/test_nat_mapping.py.
"""

from __future__ import annotations

import trio
from multiaddr import Multiaddr

from libp2p import NatMapping, NatMappingChanged
from libp2p.host import Host
from libp2p.identify import AddressCandidateAdded, AddressCandidateRemoved, NatMappingTracker
from libp2p.identify.observed import ObservedAddrManager

STEP = 10.0  # seconds any one step may take before the test fails


async def test_two_observers_make_the_host_endpoint_independent_and_it_ages_out() -> None:
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as a,
        Host(listen=["/ip4/127.0.0.2/tcp/0"]) as b,
        Host(listen=["/ip4/127.0.0.3/tcp/0"]) as c,
    ):
        # A short window, so that the observations age out within the test.
        a.identify.nat_mapping_tracker = NatMappingTracker(window=0.2)
        hooked: list[NatMappingChanged] = []
        a.identify.on_nat_mapping_changed.append(hooked.append)
        assert a.nat_mapping is NatMapping.UNKNOWN
        with a.events.subscribe(NatMappingChanged) as changes:
            await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            await a.connect(f"{c.listen_addrs[0]}/p2p/{c.peer_id}")
            with trio.fail_after(STEP):
                event = await changes.receive()
            assert (event.previous, event.current) == (
                NatMapping.UNKNOWN,
                NatMapping.ENDPOINT_INDEPENDENT,
            )
            assert event.observers == ("127.0.0.2", "127.0.0.3")
            listen = a.listen_addrs[0]
            assert event.reason == (
                f"endpoint-independent: 127.0.0.2, 127.0.0.3 all saw {listen} for our "
                f"{listen} (no address translation)"
            )
            assert hooked == [event]
            assert a.nat_mapping is NatMapping.ENDPOINT_INDEPENDENT
            assert a.nat_mapping_status.mapping_for(4) is NatMapping.ENDPOINT_INDEPENDENT
            # b and c only accepted a connection: an inbound connection proves nothing.
            assert b.nat_mapping is NatMapping.UNKNOWN
            assert c.nat_mapping is NatMapping.UNKNOWN

            # Closed connections count for the window, then the host knows nothing again:
            # the event comes from the expiry timer, with nothing else happening.
            await a.disconnect(b.peer_id)
            await a.disconnect(c.peer_id)
            with trio.fail_after(STEP):
                aged = await changes.receive()
            assert (aged.previous, aged.current) == (
                NatMapping.ENDPOINT_INDEPENDENT,
                NatMapping.UNKNOWN,
            )
            assert hooked == [event, aged]
            assert a.nat_mapping is NatMapping.UNKNOWN


async def test_address_candidates_expire_without_further_identify() -> None:
    # The expiry timer started with no observation at all; it must still wake for the first
    # one's expiry (it used to sleep forever, so a stale candidate was never withdrawn).
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as a,
        Host(listen=["/ip4/127.0.0.2/tcp/0"]) as b,
    ):
        a.identify.observed = ObservedAddrManager(min_observers=1, ttl=0.3)
        with a.events.subscribe(AddressCandidateAdded, AddressCandidateRemoved) as events:
            await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            with trio.fail_after(STEP):
                added = await events.receive()
            assert added == AddressCandidateAdded(a.listen_addrs[0], 1)
            with trio.fail_after(STEP):
                removed = await events.receive()
            assert removed == AddressCandidateRemoved(Multiaddr(str(a.listen_addrs[0])))
