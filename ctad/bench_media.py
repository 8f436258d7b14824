"""Micro-benchmark of the media transforms (no sockets): `python -m ctad.bench_media`.

`bench_media_transforms()` returns, per profile and backend, protect + unprotect microseconds on
PCMU-sized RTP packets (12-byte header + 160 bytes) and packets per second through both on one
core: SRTP from common.srtp (our transform and libsrtp) plus the seed's legacy 3DES-CBC mode with
and without its MAC. `kerbtel bench media` (the calls work) measures the whole CTA media path.
"""

from __future__ import annotations

import time

from common import srtp
from common.rtp_3des import Legacy3desRx, Legacy3desTx

__all__ = ["bench_media_transforms", "format_table"]

_KEY3 = bytes.fromhex("0123456789abcdef" "23456789abcdef01" "456789abcdef0123")


def _legacy(packets: int, payload_len: int, repeat: int, mac: bool) -> dict:
    payload = bytes(payload_len)
    plain = [bytes([0x80, 0, i >> 8 & 0xFF, i & 0xFF]) + (160 * i).to_bytes(4, "big") + b"\x12\x34\x56\x78" + payload for i in range(packets)]
    best_p = best_u = float("inf")
    for _ in range(repeat):
        tx, rx = Legacy3desTx(_KEY3, bytes(20) if mac else None), Legacy3desRx(_KEY3, bytes(20) if mac else None)
        t0 = time.perf_counter()
        wire = [tx.protect(p) for p in plain]
        t1 = time.perf_counter()
        for w in wire:
            rx.unprotect(w)
        t2 = time.perf_counter()
        best_p, best_u = min(best_p, (t1 - t0) / packets * 1e6), min(best_u, (t2 - t1) / packets * 1e6)
    us = best_p + best_u
    return {
        "profile": "3DES_CBC_SEED" + (" +MAC" if mac else ""), "backend": "python", "payload": payload_len,
        "protect_us": round(best_p, 2), "unprotect_us": round(best_u, 2), "us": round(us, 2), "pps": int(1e6 / us),
    }


def bench_media_transforms(packets: int = 20000, payload_len: int = 160, repeat: int = 3) -> list[dict]:
    """SRTP (every profile, every available backend) and the legacy 3DES mode; see module doc."""
    results = srtp.bench_media_transforms(packets, payload_len, repeat)
    packets = min(packets, 65535)  # the 3DES receiver's window sees 16-bit sequence numbers
    results.append(_legacy(packets, payload_len, repeat, False))
    results.append(_legacy(packets, payload_len, repeat, True))
    return results


def format_table(results: list[dict]) -> str:
    lines = ["| profile | backend | protect µs | unprotect µs | both µs | packets/s (both) |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['profile']} | {r['backend']} | {r['protect_us']} | {r['unprotect_us']} | {r['us']} | {r['pps']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(bench_media_transforms()))
