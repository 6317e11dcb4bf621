"""Hostile gateways on loopback: real UDP and HTTP servers that answer port-mapping requests
with garbage, oversized or slow answers, or with a mapping on a carrier-grade NAT address.
The host must report a typed failure and keep running."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import random
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest
import trio

from libp2p import (
    Host,
    HostConfig,
    PortMappingChange,
    PortMappingChanged,
    PortMappingConfig,
    PortMappingFailed,
    PortMappingFailure,
    PortMappingProtocol,
)
from libp2p.portmap import pcp, upnp
from libp2p.portmap.client import GatewayError, gateway_deadline, http_request, upnp_call

FAST = {
    "discovery_timeout": 0.6,
    "request_timeout": 0.6,
    "retransmit_initial": 0.05,
    "retry_min": 30.0,
    "shutdown_timeout": 1.0,
}


def loopback_gateway() -> str:
    """A loopback address of its own, so that port 5351 is free there."""
    return f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(2, 255)}"


async def udp_server(
    address: str, handle: Callable[[bytes], list[bytes]], seen: list[bytes]
) -> tuple[trio.socket.SocketType, Callable[[], Awaitable[None]]]:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((address, pcp.PORT))

    async def serve() -> None:
        while True:
            data, source = await sock.recvfrom(2048)
            seen.append(data)
            for reply in handle(data):
                await sock.sendto(reply, source)

    return sock, serve


def host_config(gateway: str) -> HostConfig:
    return HostConfig(
        port_mapping=PortMappingConfig(
            protocols=(PortMappingProtocol.PCP, PortMappingProtocol.NAT_PMP),
            gateway=gateway,
            **FAST,  # type: ignore[arg-type]
        ),
        autonat_client=None,
        hole_punching=None,
    )


async def test_garbage_and_oversized_answers_are_no_gateway_and_the_host_lives_on() -> None:
    gateway = loopback_gateway()
    seen: list[bytes] = []
    # Everything but a usable answer: bytes, an oversized datagram, a request echoed back.
    sock, serve = await udp_server(gateway, lambda d: [b"\xff" * 7, b"\x02" * 1500, d], seen)
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            host = Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config(gateway))
            assert host.port_mapper is not None
            with host.events.subscribe(PortMappingFailed) as failures:
                async with host:
                    with trio.fail_after(5):
                        failed = await failures.receive()
                    assert failed.failure is PortMappingFailure.NO_GATEWAY
                    assert gateway in failed.reason
                    assert host.port_mapper.mappings == []
                    # The host still works: it answers a dial.
                    async with Host() as other:
                        conn = await other.connect(f"{host.listen_addrs[0]}/p2p/{host.peer_id}")
                        assert conn.remote_peer == host.peer_id
            nursery.cancel_scope.cancel()
    assert seen  # the probes did reach the fake gateway


async def test_a_pcp_router_that_maps_on_a_cgnat_address() -> None:
    """It maps, but the external address is in 100.64.0.0/10: the mapping says it is not
    public and why. A reply with another nonce is ignored; the deletion at shutdown repeats
    the mapping's nonce."""
    gateway = loopback_gateway()
    seen: list[bytes] = []

    def handle(data: bytes) -> list[bytes]:
        if data[0] != 2:
            return [bytes([0, 128 + data[1], 0, 1, 0, 0, 0, 0])]  # NAT-PMP: unsupported
        opcode, lifetime = data[1], struct.unpack_from("!I", data, 4)[0]
        header = bytes([2, 0x80 | opcode, 0, 0])
        if opcode == 0:
            return [header + struct.pack("!II", 0, 1) + bytes(12)]
        nonce, port = data[24:36], struct.unpack_from("!H", data, 40)[0]
        body = bytes([6, 0, 0, 0]) + struct.pack("!HH", port, port)
        body += bytes(10) + b"\xff\xff" + ipaddress.IPv4Address("100.64.1.2").packed
        reply = header + struct.pack("!II", lifetime, 1) + bytes(12)
        return [reply + bytes(12) + body, reply + nonce + body]

    sock, serve = await udp_server(gateway, handle, seen)
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            host = Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config(gateway))
            with host.events.subscribe(PortMappingChanged) as changes:
                async with host:
                    with trio.fail_after(5):
                        added = await changes.receive()
                    assert added.change is PortMappingChange.ADDED
                    mapping = added.mapping
                    assert mapping.protocol is PortMappingProtocol.PCP
                    port = host.listen_addrs[0].value_for_protocol("tcp")
                    assert str(mapping.external) == f"/ip4/100.64.1.2/tcp/{port}"
                    assert not mapping.external_is_public
                    assert "shared address space (RFC 6598)" in mapping.not_public_reason
                    # Exposed, not advertised.
                    assert mapping.external not in host.addrs
                with trio.fail_after(5):
                    removed = await changes.receive()
                assert removed.change is PortMappingChange.REMOVED
            nursery.cancel_scope.cancel()
    maps = [d for d in seen if d[0] == 2 and d[1] == 1]
    assert struct.unpack_from("!I", maps[-1], 4)[0] == 0  # the deletion
    assert maps[-1][24:36] == maps[0][24:36]  # with the mapping's nonce


@pytest.mark.parametrize("kind", ["endless", "silent", "doctype", "not-http"])
async def test_hostile_http_answers_are_typed_errors(kind: str) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        if kind == "endless":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n")
            while True:
                await stream.send_all(b"x" * 65536)
        elif kind == "silent":
            await trio.sleep_forever()
        elif kind == "doctype":
            body = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        else:
            await stream.send_all(b"\x00\x01garbage\r\n\r\n")
        await stream.aclose()

    async def guarded(stream: trio.SocketStream) -> None:
        # The client gives up on us mid-answer: that is the point.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await handler(stream)

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            functools.partial(trio.serve_tcp, guarded, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        service = upnp.WanService(upnp.SERVICE_TYPES[1], f"http://127.0.0.1:{port}/ctl")
        with pytest.raises(GatewayError) as caught, gateway_deadline(0.4, "test"):
            await upnp_call(service, "GetExternalIPAddress", [])
        expected = {
            "endless": PortMappingFailure.BAD_ANSWER,
            "silent": PortMappingFailure.TIMEOUT,
            "doctype": PortMappingFailure.BAD_ANSWER,
            "not-http": PortMappingFailure.BAD_ANSWER,
        }[kind]
        assert caught.value.failure is expected, caught.value.reason
        if kind != "doctype":  # (that one is valid HTTP; its XML is what is refused)
            with pytest.raises(GatewayError), gateway_deadline(0.4, "test"):
                await http_request("GET", f"http://127.0.0.1:{port}/x")
        nursery.cancel_scope.cancel()
