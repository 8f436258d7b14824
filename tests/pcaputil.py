"""A small pcap writer for tests: IPv4/UDP packets into a classic libpcap file, no capture needed.

Link type 101 (LINKTYPE_RAW): each record is an IPv4 packet. Header checksums are correct (IPv4
header and UDP over the pseudo-header) so dissectors see well-formed packets. Also the other way:
`LoopbackCapture` (tshark on lo) and `read_udp` (a classic pcap's IPv4/UDP datagrams).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
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


# --- reading a live capture back ------------------------------------------------------------------


@dataclass(frozen=True)
class UdpDatagram:
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes


def parse_ipv4_udp(packet: bytes) -> UdpDatagram | None:
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from(">H", packet, 2)[0]
    sport, dport, ulen = struct.unpack_from(">HHH", packet, ihl)
    payload = packet[ihl + 8:min(ihl + ulen, total, len(packet))]
    return UdpDatagram(str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20])),
                       sport, dport, payload)


def read_udp(path: Path) -> list[UdpDatagram]:
    """The IPv4/UDP datagrams of a classic pcap (Ethernet as tshark writes lo, Linux cooked, or raw IP)."""
    data = Path(path).read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    out, offset = [], 24
    while offset + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, offset + 8)[0]
        frame = data[offset + 16:offset + 16 + incl]
        offset += 16 + incl
        if linktype == 1:
            if len(frame) < 14 or frame[12:14] != b"\x08\x00":
                continue
            frame = frame[14:]
        elif linktype == 113:
            frame = frame[16:]
        datagram = parse_ipv4_udp(frame)
        if datagram is not None:
            out.append(datagram)
    return out


class LoopbackCapture:
    """tshark on lo with a capture filter, writing a classic pcap (needs root or capture rights)."""

    def __init__(self, path: Path, bpf: str) -> None:
        import subprocess
        import time

        self.path = Path(path)
        self.proc = subprocess.Popen(["tshark", "-i", "lo", "-f", bpf, "-F", "pcap", "-w", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline, seen = time.monotonic() + 15, ""
        while "Capturing on" not in seen:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"tshark exited {self.proc.returncode}: {seen}")
            seen += line
            assert time.monotonic() < deadline, f"tshark did not start capturing: {seen}"

    def stop(self) -> list[UdpDatagram]:
        import signal
        import subprocess
        import time

        if self.proc.poll() is None:
            time.sleep(0.3)  # the last packets reach the capture file
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return read_udp(self.path)


def capture_udp_ports(path: Path, ports: list[int]) -> LoopbackCapture:
    """tshark on lo capturing these UDP ports."""
    return LoopbackCapture(path, " or ".join(f"udp port {p}" for p in ports))
