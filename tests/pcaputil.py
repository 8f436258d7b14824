"""A small pcap writer for tests: IPv4/UDP packets into a classic libpcap file, no capture needed.

Link type 101 (LINKTYPE_RAW): each record is an IPv4 packet. Header checksums are correct (IPv4
header and UDP over the pseudo-header) so dissectors see well-formed packets.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

LINKTYPE_RAW = 101


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, *, ident: int = 0) -> bytes:
    """An IPv4 packet carrying one UDP datagram, both checksums computed."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    ulen = 8 + len(payload)
    pseudo = s + d + struct.pack(">BBH", 0, 17, ulen)
    csum = _checksum(pseudo + struct.pack(">HHHH", sport, dport, ulen, 0) + payload) or 0xFFFF
    udp = struct.pack(">HHHH", sport, dport, ulen, csum) + payload
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + ulen, ident, 0x4000, 64, 17, 0, s, d)
    header = header[:10] + struct.pack(">H", _checksum(header)) + header[12:]
    return header + udp


def write_pcap(path: Path, packets: list[bytes], *, linktype: int = LINKTYPE_RAW, start: float = 1_700_000_000.0) -> None:
    """Write `packets` (one per record, 1 ms apart) as a little-endian microsecond pcap."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for i, pkt in enumerate(packets):
        t = start + i / 1000
        sec, usec = int(t), int(round((t - int(t)) * 1_000_000))
        out.append(struct.pack("<IIII", sec, usec, len(pkt), len(pkt)) + pkt)
    Path(path).write_bytes(b"".join(out))
