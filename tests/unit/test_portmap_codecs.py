"""The port-mapping codecs: NAT-PMP and PCP byte vectors from the RFCs' layouts, SSDP answers,
device descriptions and SOAP answers as miniupnpd 2.3.1 writes them."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from libp2p.exceptions import DecodeError
from libp2p.portmap import natpmp, pcp, ssdp, upnp

GW = "192.0.2.1"

# --- NAT-PMP (RFC 6886) ------------------------------------------------------------------------


def test_natpmp_requests_have_the_rfc_layout() -> None:
    assert natpmp.encode_address_request() == b"\x00\x00"
    # version 0, opcode 2 (TCP), reserved, internal 4001, suggested 4002, lifetime 7200
    assert natpmp.encode_map_request("tcp", 4001, 4002, 7200) == bytes.fromhex(
        "000200000fa10fa200001c20"
    )
    assert natpmp.encode_map_request("udp", 1, 0, 0)[1] == 1
    with pytest.raises(ValueError, match="protocol"):
        natpmp.encode_map_request("sctp", 1, 0, 0)
    with pytest.raises(ValueError, match="ports"):
        natpmp.encode_map_request("tcp", 0, 0, 60)


def test_natpmp_answers_decode() -> None:
    # miniupnpd's answers in the lab (captured): external address 198.51.100.1, mapping 4001.
    address = natpmp.decode_response(bytes.fromhex("0080000000006f66c6336401"))
    assert address == natpmp.AddressResponse(0, 0x6F66, ipaddress.IPv4Address("198.51.100.1"))
    mapping = natpmp.decode_response(bytes.fromhex("0082000000006f660fa10fa10000003c"))
    assert mapping == natpmp.MapResponse("tcp", 0, 0x6F66, 4001, 4001, 60)
    # an error answer to the address request carries no address
    refused = natpmp.decode_response(bytes.fromhex("008000030000000100000000"))
    assert refused == natpmp.AddressResponse(3, 1, None)
    assert natpmp.NatPmpResult.describe(3) == "3 NETWORK_FAILURE"
    assert natpmp.NatPmpResult.describe(99) == "99 unknown"


def test_natpmp_reports_a_pcp_server_as_another_version() -> None:
    answer = pcp.encode_announce_request(ipaddress.IPv4Address("192.0.2.2"))
    reply = bytes([2, 0x80, 0, 1]) + struct.pack("!II", 0, 77) + bytes(12)
    assert natpmp.decode_response(reply) == natpmp.UnsupportedVersion(2, 77)
    assert len(answer) == 24


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x00",  # a request, not an answer
        b"\x00\x82\x00\x00\x00\x00\x00\x01",  # success mapping answer without its body
        b"\x00\x80\x00\x00\x00\x00\x00\x01",  # success address answer without the address
        b"\x00\x85" + bytes(14),  # an opcode we never send
        b"\x00" * 2000,
    ],
)
def test_natpmp_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(natpmp.NatPmpDecodeError):
        natpmp.decode_response(data)


# --- PCP (RFC 6887) ----------------------------------------------------------------------------

NONCE = bytes(range(12))
CLIENT = ipaddress.IPv4Address("192.0.2.2")


def test_pcp_map_request_layout() -> None:
    data = pcp.encode_map_request(
        nonce=NONCE, protocol="tcp", internal_port=4001, client_ip=CLIENT, lifetime=7200
    )
    assert len(data) == 60
    assert data[:4] == bytes([2, 1, 0, 0])
    assert struct.unpack_from("!I", data, 4)[0] == 7200
    assert data[8:24] == bytes(10) + b"\xff\xff" + CLIENT.packed
    assert data[24:36] == NONCE
    assert data[36] == 6
    assert data[37:40] == bytes(3)
    assert struct.unpack_from("!HH", data, 40) == (4001, 0)
    # no preference for the external address: the IPv4-mapped all-zeros address
    assert data[44:60] == bytes(10) + b"\xff\xff" + bytes(4)
    assert pcp.encode_announce_request(CLIENT)[:2] == bytes([2, 0])


def _map_answer(result: int = 0, lifetime: int = 7200, external: str = "198.51.100.1") -> bytes:
    header = bytes([2, 0x81, 0, result]) + struct.pack("!II", lifetime, 5) + bytes(12)
    body = NONCE + bytes([6, 0, 0, 0]) + struct.pack("!HH", 4001, 4001)
    body += bytes(10) + b"\xff\xff" + ipaddress.IPv4Address(external).packed
    return header + body


def test_pcp_answers_decode() -> None:
    answer = pcp.decode_response(_map_answer())
    assert answer == pcp.MapResponse(
        0, 7200, 5, NONCE, "tcp", 4001, 4001, ipaddress.IPv4Address("198.51.100.1")
    )
    refused = pcp.decode_response(_map_answer(result=8, lifetime=30, external="100.64.1.2"))
    assert isinstance(refused, pcp.MapResponse)
    assert refused.result == pcp.PcpResult.NO_RESOURCES
    assert refused.external_ip == ipaddress.IPv4Address("100.64.1.2")
    announce = pcp.decode_response(bytes([2, 0x80, 0, 0]) + struct.pack("!II", 0, 9) + bytes(12))
    assert announce == pcp.AnnounceResponse(0, 0, 9)
    # A NAT-PMP-only server answers version 0.
    assert pcp.decode_response(bytes.fromhex("0081000100000000")) == pcp.VersionMismatch(0)
    # An option after the body is skipped (code, reserved, length 4, 4 bytes of data).
    assert isinstance(
        pcp.decode_response(_map_answer() + bytes([1, 0, 0, 4, 1, 2, 3, 4])), pcp.MapResponse
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02",
        bytes([2, 1, 0, 0]) + bytes(20),  # a request
        bytes([2, 0x81, 0, 0]) + bytes(22),  # not a multiple of 4
        _map_answer()[:40],  # truncated body
        _map_answer() + bytes([1, 0, 0, 8, 1, 2, 3, 4]),  # option longer than the message
        bytes([2, 0x82, 0, 0]) + bytes(20),  # PEER: never sent
        bytes([2]) + bytes(1200),  # over 1100 bytes
    ],
)
def test_pcp_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(pcp.PcpDecodeError):
        pcp.decode_response(data)


# --- SSDP --------------------------------------------------------------------------------------

MINIUPNPD_SSDP = (
    b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
    b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    b"USN: uuid:3d3cec3a::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    b"EXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    b"LOCATION: http://192.0.2.1:5000/rootDesc.xml\r\n"
    b'OPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01\r\n\r\n'
)


def test_ssdp_search_and_answer() -> None:
    search = ssdp.encode_search(ssdp.SEARCH_TARGETS[0], mx=2)
    assert search.startswith(b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n")
    assert b'MAN: "ssdp:discover"\r\n' in search
    assert b"MX: 2\r\n" in search
    assert search.endswith(b"\r\n\r\n")
    answer = ssdp.decode_response(MINIUPNPD_SSDP, GW)
    assert answer.location == "http://192.0.2.1:5000/rootDesc.xml"
    assert (answer.host, answer.port) == (GW, 5000)
    assert "MiniUPnPd" in answer.server


@pytest.mark.parametrize(
    ("data", "source"),
    [
        (MINIUPNPD_SSDP, "192.0.2.9"),  # LOCATION on another device than the one answering
        (MINIUPNPD_SSDP.replace(b"http://192.0.2.1", b"https://192.0.2.1"), GW),
        (MINIUPNPD_SSDP.replace(b"http://192.0.2.1:5000", b"http://router.lan:5000"), GW),
        (MINIUPNPD_SSDP.replace(b"200 OK", b"404 Not Found"), GW),
        (b"NOTIFY * HTTP/1.1\r\nLOCATION: http://192.0.2.1/\r\n\r\n", GW),
        (MINIUPNPD_SSDP.replace(b"LOCATION", b"X-LOC"), GW),
        (b"\xff\xfe", GW),
        (b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 40 + b"\r\n", GW),
        (b"x" * 5000, GW),
    ],
)
def test_ssdp_unusable_answers_are_refused(data: bytes, source: str) -> None:
    with pytest.raises(ssdp.SsdpDecodeError):
        ssdp.decode_response(data, source)


# --- UPnP description, SOAP, HTTP ----------------------------------------------------------------

DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337">
<specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>
<serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL>
<eventSubURL>/evt/IPConn</eventSubURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<controlURL>http://198.51.100.66/steal</controlURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>"""

LOCATION = "http://192.0.2.1:5000/rootDesc.xml"


def test_description_finds_the_wan_service_on_the_same_origin() -> None:
    services = upnp.parse_description(DESCRIPTION, LOCATION)
    # The v1 service's control URL points elsewhere: not followed.
    assert services == [
        upnp.WanService(
            "urn:schemas-upnp-org:service:WANIPConnection:2", "http://192.0.2.1:5000/ctl/IPConn"
        )
    ]
    assert services[0].version == 2


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>',
        b"<r><!ENTITY x SYSTEM 'file:///etc/passwd'></r>",
        b"<root><unclosed></root>",
        b"<a>" * 5000 + b"</a>" * 5000,
        b"<r>" + b"<e/>" * 5000 + b"</r>",
        b"\x00<r/>",
    ],
)
def test_hostile_xml_is_refused(data: bytes) -> None:
    with pytest.raises(upnp.UpnpDecodeError):
        upnp.parse_description(data, LOCATION)


def _soap(body: str, status: int = 200) -> upnp.HttpResponse:
    envelope = (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
        f"{body}</s:Body></s:Envelope>"
    )
    return upnp.HttpResponse(status, "", {}, envelope.encode())


def test_soap_request_and_answers() -> None:
    service = upnp.WanService("urn:schemas-upnp-org:service:WANIPConnection:1", LOCATION)
    headers, body = upnp.encode_soap_request(
        service, "AddPortMapping", [("NewPortMappingDescription", "a<b&c")]
    )
    assert (
        headers["SOAPAction"] == '"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"'
    )
    assert b"<NewPortMappingDescription>a&lt;b&amp;c</NewPortMappingDescription>" in body
    ok = _soap(
        '<u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">'
        "<NewExternalIPAddress>198.51.100.1</NewExternalIPAddress>"
        "</u:GetExternalIPAddressResponse>"
    )
    assert upnp.decode_soap_response(ok, "GetExternalIPAddress") == {
        "NewExternalIPAddress": "198.51.100.1"
    }
    fault = _soap(
        "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
        '<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode>'
        "<errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail>"
        "</s:Fault>",
        500,
    )
    refused = upnp.decode_soap_response(fault, "AddPortMapping")
    assert refused == upnp.UpnpFault(718, "ConflictInMappingEntry")
    assert isinstance(refused, upnp.UpnpFault)
    assert refused.known is upnp.UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY
    assert str(refused) == "718 ConflictInMappingEntry"
    with pytest.raises(upnp.UpnpDecodeError):
        upnp.decode_soap_response(ok, "AddPortMapping")  # the answer to another action
    with pytest.raises(upnp.UpnpDecodeError):
        upnp.decode_soap_response(_soap("<s:Fault/>", 500), "AddPortMapping")
    with pytest.raises(upnp.UpnpDecodeError):
        upnp.decode_soap_response(upnp.HttpResponse(404, "Not Found", {}, b""), "X")


def test_http_responses() -> None:
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
    assert upnp.http_response_complete(plain)
    assert upnp.parse_http_response(plain).body == b"hello"
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"
    )
    assert upnp.http_response_complete(chunked)
    assert upnp.parse_http_response(chunked).body == b"hello!"
    assert not upnp.http_response_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab")
    for bad in (
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n",
    ):
        with pytest.raises(DecodeError):
            upnp.parse_http_response(bad)
    request = upnp.encode_http_request("GET", "http://192.0.2.1:5000/rootDesc.xml?x=1")
    assert request.startswith(b"GET /rootDesc.xml?x=1 HTTP/1.1\r\nHost: 192.0.2.1:5000\r\n")
