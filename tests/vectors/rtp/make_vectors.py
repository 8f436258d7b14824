"""Write the RTP/RTCP golden vectors in this directory from hand-assembled hex.

The bytes are spelled out field by field here (not produced by common.rtp), so the parser and the
encoder are checked against an independent description. README.md says what each file is and, for
the *_invalid.bin files, the exact error message the parser gives. Run from the repo root:

    .venv/bin/python tests/vectors/rtp/make_vectors.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def h(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts).replace(" ", ""))


CNAME = b"cta-a@kerbtel.test"  # 18 bytes

VECTORS: dict[str, bytes] = {
    # --- valid RTP ------------------------------------------------------------------------
    # V=2 P=0 X=0 CC=0 | M=1 PT=0 (PCMU) | seq 0x1234 | ts 160 | SSRC 0xdeadbeef | 160 x 0xff
    "pcmu_marker.bin": h("80 80 1234 000000a0 deadbeef") + b"\xff" * 160,
    # V=2 X=1 CC=2 | PT=8 (PCMA) | seq 0xffff | ts 0xfffffff0 | SSRC 01020304 | CSRCs aabbccdd,
    # 11223344 | extension profile 0xBEDE (RFC 8285 one-byte), 1 word: id 1 len 1 value 0xab, 2 pad
    # | 20 payload bytes 0xd5
    "csrc_extension.bin": h("92 08 ffff fffffff0 01020304 aabbccdd 11223344 bede 0001 10ab0000") + b"\xd5" * 20,
    # V=2 P=1 | PT=101 (telephone-event) | seq 7 | ts 1000 | SSRC 00005eed | event 1, E=0 vol 10,
    # duration 160 | 4 padding bytes, count 4
    "padding.bin": h("a0 65 0007 000003e8 00005eed 010a00a0 00000004"),
    # RFC 7714 section 16 plaintext RTP packet (seq 0xf17b, SSRC 0x5501a0b2, "Gallia est omnis...")
    "rfc7714_rtp.bin": h(
        "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976",
        "69736120 696e2070 61727465 73207472 6573",
    ),
    # --- valid RTCP -----------------------------------------------------------------------
    # SR RC=0 length 6 | SSRC deadbeef | NTP e8d4a510 00000000 | RTP ts 000003e8 | 50 packets
    # | 8000 octets ; SDES SC=1 length 7 | SSRC deadbeef | CNAME (1) len 18 | end 0 + 3 bytes to
    # the next word
    "rtcp_sr_sdes.bin": h("80c80006 deadbeef e8d4a510 00000000 000003e8 00000032 00001f40")
    + h("81ca0007 deadbeef 0112")
    + CNAME
    + h("00000000"),
    # RR RC=1 length 7 | SSRC 01020304 | block: SSRC deadbeef, lost 0 / 0, ext highest seq
    # 00011234, jitter 3, LSR 0, DLSR 0 ; BYE SC=1 length 1 | SSRC 01020304
    "rtcp_rr_bye.bin": h("81c90007 01020304 deadbeef 00000000 00011234 00000003 00000000 00000000")
    + h("81cb0001 01020304"),
    # RFC 7714 section 17 plaintext RTCP packet: SR RC=1, SSRC "Mars". Its length field says 13
    # words (56 bytes) but the packet has 52: RFC 3550 parsing refuses it, SRTCP (which does not
    # parse the compound) protects it. Kept as found in the RFC.
    "rfc7714_rtcp_length_invalid.bin": h(
        "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61",
        "deadbeef deadbeef deadbeef deadbeef deadbeef",
    ),
    # --- invalid RTP (RtpPacket.parse) ----------------------------------------------------
    "rtp_short_invalid.bin": h("80 00 0001 00000000 000000"),  # 11 bytes
    "rtp_version1_invalid.bin": h("40 00 0001 00000000 00000001"),
    "rtp_csrc_truncated_invalid.bin": h("83 00 0001 00000000 00000001 00000002"),  # CC=3, 1 present
    "rtp_extension_header_truncated_invalid.bin": h("90 00 0001 00000000 00000001 bede"),
    "rtp_extension_overrun_invalid.bin": h("90 00 0001 00000000 00000001 bede 0005 00000000 00000000"),
    "rtp_padding_no_count_invalid.bin": h("a0 00 0001 00000000 00000001"),
    "rtp_padding_zero_invalid.bin": h("a0 00 0001 00000000 00000001 01020300"),
    "rtp_padding_overrun_invalid.bin": h("a0 00 0001 00000000 00000001 01020309"),
    # --- invalid RTCP (RtcpPacket.parse_compound) -----------------------------------------
    "rtcp_empty_invalid.bin": b"",
    "rtcp_short_invalid.bin": h("80c800"),
    "rtcp_version_invalid.bin": h("40c90001 01020304"),
    "rtcp_type_invalid.bin": h("80be0001 01020304"),
    "rtcp_length_overrun_invalid.bin": h("80c90007 01020304 deadbeef 00000000 00011234 00000003 00000000"),
    "rtcp_first_not_sr_rr_invalid.bin": h("81ca0001 01020304"),
    "rtcp_padding_not_last_invalid.bin": h("a0c90002 01020304 00000004 81cb0001 01020304"),
    "rtcp_no_ssrc_invalid.bin": h("a0c90001 00000004"),
}


def main() -> None:
    for name, data in VECTORS.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(VECTORS)} files to {HERE}")


if __name__ == "__main__":
    main()
