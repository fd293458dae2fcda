"""The PROXY protocol (HAProxy's, versions 1 and 2): how a load balancer in
front of the edge that passes TCP through (TLS included) says who the client
is, in a header before the connection's first byte.

Why: a TCP load balancer cannot add ``X-Forwarded-For`` to an encrypted
stream, so without this every client would look like the balancer, and the
per-IP rate limits and connection caps would treat all of them as one.  The
edge believes a header only from ``--trusted-proxies`` peers (``listeners``):
anyone else could name any address.

Pure code, no I/O: ``detect`` says whether bytes begin a header, ``parse``
reads one (``None`` while incomplete), ``encode_v1``/``encode_v2`` write them
(for tests, drills and clients).  Spec: haproxy.org/download/2.9/doc/proxy-protocol.txt.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107                       # the whole v1 line, CRLF included (spec section 2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
V2_MAX_BODY = 4096                 # addresses + TLVs; the spec allows 64 KiB, nobody sends that much
_V2_ADDRESS_LEN = {1: 12, 2: 36, 3: 216}    # INET, INET6, UNIX
PP2_TYPE_SSL = 0x20                # a TLV: how the client reached the balancer
PP2_CLIENT_SSL = 0x01              # ... over TLS (the balancer terminated it)
MAX_HEADER = V2_FIXED + V2_MAX_BODY


class ProxyHeaderError(ValueError):
    """Malformed header; the message says what is wrong."""


@dataclass(frozen=True)
class ProxyHeader:
    length: int                                 # bytes the header took
    version: int
    source: tuple[str, int] | None = None       # the client; None: use the TCP peer (LOCAL, UNKNOWN, unix)
    destination: tuple[str, int] | None = None
    tls: bool = False                           # v2 PP2_TYPE_SSL: the client spoke TLS to the balancer


def detect(buf: bytes | bytearray) -> bool | None:
    """True if ``buf`` begins a PROXY header, False if it cannot, None if too short to tell."""
    for sig in (V1_PREFIX, V2_SIGNATURE):
        n = min(len(buf), len(sig))
        if buf[:n] == sig[:n]:
            return True if n == len(sig) else None
    return False


def parse(buf: bytes | bytearray) -> ProxyHeader | None:
    """The header at the start of ``buf`` (which ``detect`` said begins one), or None if incomplete."""
    if buf[:len(V1_PREFIX)] == V1_PREFIX:
        return _parse_v1(buf)
    if buf[:len(V2_SIGNATURE)] == V2_SIGNATURE:
        return _parse_v2(buf)
    raise ProxyHeaderError("not a PROXY protocol header")


def _parse_v1(buf) -> ProxyHeader | None:
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buf) >= V1_MAX or b"\n" in buf[:V1_MAX]:
            raise ProxyHeaderError(f"PROXY v1 line not ended by CRLF within {V1_MAX} bytes")
        return None
    try:
        line = bytes(buf[:end]).decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(end + 2, 1)          # the sender does not know: use the TCP peer
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("PROXY v1 line must be 'PROXY TCP4|TCP6 src dst sport dport' or 'PROXY UNKNOWN'")
    version = 4 if parts[1] == "TCP4" else 6
    src, dst = _v1_address(parts[2], version), _v1_address(parts[3], version)
    sport, dport = _v1_port(parts[4]), _v1_port(parts[5])
    return ProxyHeader(end + 2, 1, (src, sport), (dst, dport))


def _v1_address(text: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1: {text!r} is not an IP address") from None
    if addr.version != version:
        raise ProxyHeaderError(f"PROXY v1: {text!r} is not an IPv{version} address")
    return str(addr)


def _v1_port(text: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 65535):
        raise ProxyHeaderError(f"PROXY v1: {text!r} is not a port")
    return int(text)


def _parse_v2(buf) -> ProxyHeader | None:
    if len(buf) < V2_FIXED:
        return None
    ver_cmd, fam, length = struct.unpack_from("!BBH", buf, 12)
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2: version {ver_cmd >> 4} (only 2 exists)")
    command = ver_cmd & 0xF
    if command not in (0, 1):
        raise ProxyHeaderError(f"PROXY v2: unknown command {command}")
    if length > V2_MAX_BODY:
        raise ProxyHeaderError(f"PROXY v2: {length} bytes of addresses and TLVs (at most {V2_MAX_BODY})")
    family, transport = fam >> 4, fam & 0xF
    if family > 3 or transport > 2:
        raise ProxyHeaderError(f"PROXY v2: unknown address family/transport 0x{fam:02x}")
    if len(buf) < V2_FIXED + length:
        return None
    total = V2_FIXED + length
    if command == 0 or family in (0, 3):        # LOCAL (the balancer's own check), or no IP to use
        if length < _V2_ADDRESS_LEN.get(family, 0):
            raise ProxyHeaderError(f"PROXY v2: {length} bytes cannot hold the addresses")
        return ProxyHeader(total, 2)
    need = _V2_ADDRESS_LEN[family]
    if length < need:
        raise ProxyHeaderError(f"PROXY v2: {length} bytes cannot hold the addresses")
    body = bytes(buf[V2_FIXED:V2_FIXED + need])
    tls = _client_tls(bytes(buf[V2_FIXED + need:total]))
    if family == 1:
        src, dst = str(ipaddress.IPv4Address(body[0:4])), str(ipaddress.IPv4Address(body[4:8]))
        sport, dport = struct.unpack_from("!HH", body, 8)
    else:
        src, dst = str(ipaddress.IPv6Address(body[0:16])), str(ipaddress.IPv6Address(body[16:32]))
        sport, dport = struct.unpack_from("!HH", body, 32)
    return ProxyHeader(total, 2, (src, sport), (dst, dport), tls)


def _client_tls(tlvs: bytes) -> bool:
    """Whether the TLVs after the addresses say the client came over TLS;
    other TLVs (ALPN, authority, unique id, ...) are skipped."""
    i, tls = 0, False
    while i < len(tlvs):
        if len(tlvs) - i < 3:
            raise ProxyHeaderError("PROXY v2: a TLV cut short")
        kind, length = tlvs[i], struct.unpack_from("!H", tlvs, i + 1)[0]
        value = tlvs[i + 3:i + 3 + length]
        if len(value) != length:
            raise ProxyHeaderError(f"PROXY v2: TLV 0x{kind:02x} longer than the header")
        if kind == PP2_TYPE_SSL:
            if length < 5:
                raise ProxyHeaderError("PROXY v2: an SSL TLV needs its client and verify fields")
            tls = bool(value[0] & PP2_CLIENT_SSL)
        i += 3 + length
    return tls


def encode_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None = None) -> bytes:
    """A v1 line; ``source`` None gives ``PROXY UNKNOWN``."""
    if source is None:
        return b"PROXY UNKNOWN\r\n"
    destination = destination or (("0.0.0.0" if ":" not in source[0] else "::"), 0)
    version = ipaddress.ip_address(source[0]).version
    if ipaddress.ip_address(destination[0]).version != version:
        raise ValueError("PROXY v1: source and destination must be of one address family")
    proto = "TCP6" if version == 6 else "TCP4"
    return f"PROXY {proto} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None = None,
              tlvs: bytes = b"", tls: bool = False) -> bytes:
    """A v2 header: PROXY over TCP, or LOCAL when ``source`` is None; ``tls``
    adds the SSL TLV saying the client came over TLS."""
    if tls:
        tlvs += struct.pack("!BHBI", PP2_TYPE_SSL, 5, PP2_CLIENT_SSL, 0)
    if source is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, len(tlvs)) + tlvs
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0] if destination else ("::" if src.version == 6 else "0.0.0.0"))
    if src.version != dst.version:
        raise ValueError("PROXY v2: source and destination must be of one address family")
    dport = destination[1] if destination else 0
    body = src.packed + dst.packed + struct.pack("!HH", source[1], dport) + tlvs
    fam = 0x11 if src.version == 4 else 0x21
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body
