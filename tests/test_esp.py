"""common.esp: ESP packets, suites, SAs, key derivation and the Wireshark key helpers.

Vectors:
- draft-mcgrew-gcm-test-01 section 4 (the ESP test cases RFC 4106 points to): whole ESP packets
  (SPI, sequence number, explicit IV, ciphertext, tag), with and without ESN, 128/256-bit keys.
- RFC 3602 section 4: AES-CBC cases 1-4 (raw CBC) and 5-8 (whole ESP packets, no ICV).
- RFC 4868 2.7.2.1 (HMAC-SHA-256-128) and RFC 2202 section 3 (HMAC-SHA-1, truncated to 96 bits
  as RFC 2404 uses it).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import esp
from common.esp import (
    SUITE_3DES_SHA1,
    SUITE_AES_CBC_SHA256,
    SUITE_AES_GCM_16,
    SUITES,
    EspError,
    EspFormatError,
    EspIcvError,
    EspPacket,
    EspReplayError,
    EspSa,
    EspSpiError,
    SequenceExhausted,
    derive_esp_keys,
    inner_udp,
    is_esp,
    parse_inner_udp,
    strip_non_esp_marker,
    suite_for,
    tshark_esp_options,
    wireshark_esp_sa,
)

ALL_SUITES = list(SUITES.values())
SUBKEY = bytes(range(32))


def h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


def sa_pair(suite, *, esn=False, initial_seq=0, window=64):
    keys = derive_esp_keys(SUBKEY, suite, 0x1001, 0x2002)
    k = keys.cta_to_sc
    mk = lambda: EspSa(  # noqa: E731
        suite, k.spi, k.enc_key, k.auth_key, k.salt,
        esn=esn, initial_seq=initial_seq, replay_window=window,
    )
    return mk(), mk()


# --- draft-mcgrew-gcm-test-01 section 4 -----------------------------------------------------
# (key, salt, spi, full 64-bit sequence number, esn, explicit IV, plaintext incl. ESP trailer,
#  ciphertext || ICV). The plaintexts end in the trailer (padding 1, 2, ..., pad length, next
# header); the draft uses next header 1 throughout.
GCM_VECTORS = [
    pytest.param(  # Test Case 2: AES-128, 32-bit sequence number
        "feffe9928665731c6d6a8f9467308308", "cafebabe", 0x0000A5F8, 0x0A, False,
        "facedbaddecaf888",
        "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d00100"
        "0001000000000000037369700963796265726369747902646b00000100010001",
        "deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c"
        "3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1"
        "83b70d3aa8bc6ee4c309e9d85a41ad4a",
        id="tc2-aes128",
    ),
    pytest.param(  # Test Case 1: AES-128, extended sequence number 0x87654321_00000000
        "4c80cdefbb5d10da906ac73c3613a634", "2e443b68", 0x00004321, 0x8765432100000000, True,
        "4956ed7e3b244cfe",
        "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000"
        "00000000045f736970045f756470037369700963796265726369747902646b00"
        "0021000101020201",
        "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34"
        "cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce"
        "61bc17d768fd9732459018148f6cbe722fd04796562dfdb4",
        id="tc1-aes128-esn",
    ),
    pytest.param(  # Test Case 3: AES-256, 32-bit sequence number
        "abbccddef00112233445566778899aababbccddef00112233445566778899aab", "11223344",
        0x4A2CBFE3, 0x02, False, "0102030405060708",
        "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000"
        "7002400020bf0000020405b40101040201020201",
        "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763"
        "748a637985771d347f0545659f14e99def842d8eb335f4eecfdbf831824b4c49"
        "15956c96",
        id="tc3-aes256",
    ),
    pytest.param(  # Test Case 14: AES-128, sequence number 0xffffffff, a packet of padding only
        "7d773d00c144c525ac619d18c84a3f47", "d9664267", 0x335467AE, 0xFFFFFFFF, False,
        "43457e9182443bc6", "01020201", "437f866bcb3f699fe9b0822bac961c4504bef270",
        id="tc14-seq-ffffffff",
    ),
    pytest.param(  # Test Case 16: AES-256, extended sequence number 0xffffffff_ffffffff
        "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961", "7475726e",
        0x796B6963, 0xFFFFFFFFFFFFFFFF, True, "333021696765746d",
        "45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364"
        "65666768696a6b6c6d6e6f707172737401020201",
        "f97ab2aa356d8edce17644ac8c78e25dd24dedbb29ebf1b64a274b39b49c3a86"
        "4cd3d78ca4ae68a32b42458fb57dbe821dcc63b9d0937ba2945f669368661a32"
        "9fb4c053",
        id="tc16-aes256-esn-max",
    ),
]


@pytest.mark.parametrize("key,salt,spi,seq,esn,iv,plain,ct", GCM_VECTORS)
def test_gcm_draft_mcgrew_packets(key, salt, spi, seq, esn, iv, plain, ct) -> None:
    key, salt, iv, plain, ct = h(key), h(salt), h(iv), h(plain), h(ct)
    suite = SUITE_AES_GCM_16.with_key_len(len(key))
    wire = struct.pack(">II", spi, seq & 0xFFFFFFFF) + iv + ct
    # The receiver's window sits just below the vector's number, so ESN inference must find
    # the high half (0x87654321 across a subspace boundary; 0xffffffff at the very top).
    rx = EspSa(suite, spi, key, salt=salt, esn=esn, initial_seq=seq - 1)
    assert rx.infer_seq(seq & 0xFFFFFFFF) == seq
    padlen = plain[-2]
    assert rx.unprotect(wire) == (plain[-1], plain[: len(plain) - 2 - padlen])
    assert rx.window.top == seq
    # And the same AEAD call our protect() makes, with the vector's IV instead of the counter:
    aad = struct.pack(">I", spi) + (seq.to_bytes(8, "big") if esn else (seq & 0xFFFFFFFF).to_bytes(4, "big"))
    assert AESGCM(key).encrypt(salt + iv, plain, aad) == ct
    # Our padding rule reproduces the vectors' trailers (they use minimal padding too).
    assert esp._pad(plain[: len(plain) - 2 - padlen], plain[-1], 4) == plain


def test_gcm_protect_layout() -> None:
    for esn in (False, True):
        tx, _ = sa_pair(SUITE_AES_GCM_16, esn=esn, initial_seq=(1 << 32) - 1 if esn else 6)
        k = derive_esp_keys(SUBKEY, SUITE_AES_GCM_16, 0x1001, 0x2002).cta_to_sc
        pkt = tx.protect(b"hello", 17)
        seq = tx.seq
        iv = seq.to_bytes(8, "big")
        assert pkt[:8] == struct.pack(">II", 0x2002, seq & 0xFFFFFFFF)
        assert pkt[8:16] == iv  # the explicit IV is the 64-bit counter: never reused
        aad = struct.pack(">I", 0x2002) + (iv if esn else pkt[4:8])
        assert AESGCM(k.enc_key).decrypt(k.salt + iv, pkt[16:], aad) == b"hello\x01\x01\x11"


# --- RFC 3602 section 4 ---------------------------------------------------------------------

CBC_RAW = [  # RFC 3602 section 4, cases 1, 2 and 4: (key, IV, plaintext, ciphertext)
    ("06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
     b"Single block msg".hex(), "e353779c1079aeb82708942dbe77181a"),
    ("c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"),
    ("56e47a38c5598974bc46903dba290349", "8ce82eefbea0da3c44699ed7db51b7d9",
     "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
     "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
     "c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e"
     "35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55"),
]

# RFC 3602 section 4, cases 5-8: whole ESP packets (encryption only, no ICV), payload and next
# header. Cases 5/6 share one key, 7/8 another, so they also exercise the persistent encryptor.
CBC_ESP = [
    ("90d382b410eeba7ad938c46cec1a82bf", 0x4321, 1, 1,
     "08000ebda70a00008e9c083db95b070008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
     "202122232425262728292a2b2c2d2e2f3031323334353637",
     "0000432100000001e96e8c08ab465763fd098d45dd3ff893f663c25d325c18c6a9453e194e120849"
     "a4870b66cc6b9965330013b4898dc856a4699e523a55db080b59ec3a8e4b7e52775b07d1db34ed9c"
     "538ab50c551b874aa269add047ad2d5913ac19b7cfbad4a6"),
    ("90d382b410eeba7ad938c46cec1a82bf", 0x4321, 8, 1,
     "0800b5e8a80a0500a69c083d0b660e00777777777777777777777777",
     "000043210000000869d08df7d203329db093fc4924e5bd80f51995881ec4e0c4488987ce742e8109"
     "689bb379d2d750c0d915dca346a89f75"),
    ("0123456789abcdef0123456789abcdef", 0x8765, 2, 4,
     "45000054090400004001f988c0a87b03c0a87bc808009f76a90a0100b49c083d02a2040008090a0b"
     "0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233"
     "34353637",
     "0000876500000002f4e765244f6407adf13dc1380f673f37773b5241a4c449225e4f3ce5ed611b0c"
     "237ca96cf74a93013c1b0ea1a0cf70f8e4ecaec78ac53aad7a0f022b859243c647752e94a859352b"
     "8a4d4d2decd136e5c177f132ad3fbfb2201ac9904c74ee0a109e0ca1e4dfe9d5a100b842f1c22f0d"),
    ("0123456789abcdef0123456789abcdef", 0x8765, 5, 4,
     "45000044090c00004001f990c0a87b03c0a87bc80800d63caa0a0200c69c083da3de0300ffffffff"
     "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     "000087650000000585d47224b5f3dd5d2101d4ea8dffab2215b92683819596a8047232cc00f7048f"
     "e45318e11f8a0f62ede3c3fc61203bb50f980a08c9843fd3a1b06d5c07ff9639b7eb7dfb3512e5de"
     "435e7207ed971ef3d2726d9b5ef6affc6d17a0decbb13892"),
]


@pytest.mark.parametrize("key,iv,plain,ct", CBC_RAW)
def test_rfc3602_raw_cbc(key, iv, plain, ct) -> None:
    cbc = esp._Cbc(algorithms.AES(h(key)), 16)
    assert cbc.encrypt(h(iv), h(plain)) == h(ct)
    assert cbc.encrypt(h(iv), h(plain)) == h(ct)  # again, after the encryptor has chained
    assert cbc.decrypt(h(iv), h(ct)) == h(plain)


def test_rfc3602_esp_packets() -> None:
    ciphers: dict[str, esp._Cbc] = {}
    for key, spi, seq, nh, payload, wire in CBC_ESP:
        cbc = ciphers.setdefault(key, esp._Cbc(algorithms.AES(h(key)), 16))
        pkt = EspPacket.parse(h(wire))
        assert (pkt.spi, pkt.seq) == (spi, seq)
        assert bytes(pkt) == h(wire)
        iv, ct = pkt.payload[:16], pkt.payload[16:]
        assert esp._strip_trailer(cbc.decrypt(iv, ct)) == (nh, h(payload))
        # Sending side: our minimal 1, 2, 3, ... padding and the chained encryptor reproduce
        # the RFC's packet byte for byte when given the RFC's IV.
        assert h(wire)[:8] + iv + cbc.encrypt(iv, esp._pad(h(payload), nh, 16)) == h(wire)


# --- RFC 4868 2.7.2.1 and RFC 2202 3 ----------------------------------------------------------

HMAC_SHA256_128 = [  # RFC 4868 2.7.2.1, AUTH256-1..4: key, data, HMAC-SHA-256-128
    ("0b" * 32, b"Hi There".hex(), "198a607eb44bfbc69903a0f1cf2bbdc5"),
    ("4a656665" * 8, b"what do ya want for nothing?".hex(), "167f928588c5cc2eef8e3093caa0e87c"),
    ("aa" * 32, "dd" * 50, "cdcb1220d1ecccea91e53aba3092f962"),
    ("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20", "cd" * 50,
     "372efcf9b40b35c2115b1346903d2ef4"),
]
HMAC_SHA1_96 = [  # RFC 2202 section 3, cases 1, 2, 3, 5 (20-byte keys where RFC 2404 needs them)
    ("0b" * 20, b"Hi There".hex(), "b617318655057264e28bc0b6"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(), "effcdf6ae5eb2fa2d27416d5"),
    ("aa" * 20, "dd" * 50, "125d7342b9ac11cd91a39af4"),
    ("0c" * 20, b"Test With Truncation".hex(), "4c1a03424b55e07fe7f27be1"),  # digest-96 as printed
]


@pytest.mark.parametrize("key,data,icv", HMAC_SHA256_128)
def test_hmac_sha256_128(key, data, icv) -> None:
    assert esp._Mac(h(key), "sha256", 16).icv(h(data)) == h(icv)
    mid = len(h(data)) // 2
    assert esp._Mac(h(key), "sha256", 16).icv(h(data)[:mid], h(data)[mid:]) == h(icv)


@pytest.mark.parametrize("key,data,icv", HMAC_SHA1_96)
def test_hmac_sha1_96(key, data, icv) -> None:
    assert esp._Mac(h(key), "sha1", 12).icv(h(data)) == h(icv)


# --- CBC against a fresh per-packet Cipher (3DES has no ESP vectors) ----------------------------


@settings(max_examples=60, deadline=None)
@given(
    triple=st.booleans(),
    packets=st.lists(st.tuples(st.integers(1, 12), st.binary(min_size=8, max_size=8)), min_size=1, max_size=6),
    data=st.data(),
)
def test_chained_cbc_matches_fresh_cbc(triple, packets, data) -> None:
    key = bytes(range(24)) if triple else bytes(range(16))
    alg, block = (TripleDES(key), 8) if triple else (algorithms.AES(key), 16)
    cbc = esp._Cbc(alg, block)
    for blocks, seed in packets:
        iv = (seed * 2)[:block]
        plain = data.draw(st.binary(min_size=blocks * block, max_size=blocks * block))
        enc = Cipher(alg, modes.CBC(iv)).encryptor()
        assert cbc.encrypt(iv, plain) == enc.update(plain) + enc.finalize()
        assert cbc.decrypt(iv, cbc.encrypt(iv, plain)) == plain


def test_cbc_iv_is_the_encrypted_sequence_number() -> None:
    key = bytes(range(16))
    cbc = esp._Cbc(algorithms.AES(key), 16)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    assert cbc.iv_for(7) == enc.update(bytes(8) + (7).to_bytes(8, "big"))
    assert len({cbc.iv_for(i) for i in range(1000)}) == 1000


# --- SA behaviour -----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("esn", [False, True], ids=["32", "esn"])
def test_round_trip(suite, esn) -> None:
    tx, rx = sa_pair(suite, esn=esn)
    for n in range(0, 70):
        inner = bytes(range(n))
        pkt = tx.protect(inner, 17)
        assert len(pkt) <= len(inner) + suite.overhead
        ct_len = len(pkt) - 8 - suite.iv_len - suite.icv_len
        assert ct_len % suite.align == 0
        assert rx.unprotect(pkt) == (17, inner)
    assert tx.sent == rx.received == 70
    assert (rx.icv_failures, rx.replay_failures, rx.format_failures) == (0, 0, 0)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_tamper_any_byte_fails_the_icv(suite) -> None:
    for esn in (False, True):
        tx, rx = sa_pair(suite, esn=esn)
        pkt = tx.protect(b"REGISTER sip:example.test SIP/2.0\r\n\r\n")
        for i in range(4, len(pkt)):
            bad = bytearray(pkt)
            bad[i] ^= 0x40  # (0x01 would turn sequence number 1 into 0: a replay error)
            with pytest.raises(EspIcvError):
                rx.unprotect(bytes(bad))
        for i in range(4):
            bad = bytearray(pkt)
            bad[i] ^= 0x80
            with pytest.raises(EspSpiError):
                rx.unprotect(bytes(bad))
        assert rx.icv_failures == len(pkt) - 4
        assert rx.window.top == 0  # nothing forged moved the window
        assert rx.unprotect(pkt)[1].startswith(b"REGISTER")


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_replay_and_window(suite) -> None:
    tx, rx = sa_pair(suite)
    pkts = [tx.protect(b"x%d" % i) for i in range(100)]
    assert rx.unprotect(pkts[0]) == (17, b"x0")
    with pytest.raises(EspReplayError, match=r"sequence number 1 is replayed or below the window \(top 1, size 64\)"):
        rx.unprotect(pkts[0])
    assert rx.unprotect(pkts[99])[1] == b"x99"
    assert rx.unprotect(pkts[36])[1] == b"x36"  # seq 37 = 100 - 63: oldest inside
    with pytest.raises(EspReplayError):
        rx.unprotect(pkts[35])  # seq 36: just outside
    assert rx.replay_failures == 2


def test_replay_check_happens_before_the_icv() -> None:
    tx, rx = sa_pair(SUITE_AES_CBC_SHA256)
    pkt = tx.protect(b"a")
    rx.unprotect(pkt)
    bad = pkt[:-1] + bytes([pkt[-1] ^ 1])
    with pytest.raises(EspReplayError):
        rx.unprotect(bad)
    assert rx.icv_failures == 0


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_esn_across_2_32(suite) -> None:
    start = (1 << 32) - 5
    tx, rx = sa_pair(suite, esn=True, initial_seq=start)
    pkts = [tx.protect(b"%d" % i) for i in range(10)]  # 2^32-4 .. 2^32+5
    assert tx.seq == (1 << 32) + 5
    assert struct.unpack(">I", pkts[-1][4:8])[0] == 5  # only the low half travels
    order = [0, 1, 5, 3, 2, 9, 4, 8, 6, 7]  # reordered across the boundary, inside the window
    for i in order:
        assert rx.unprotect(pkts[i]) == (17, b"%d" % i)
    assert rx.window.top == (1 << 32) + 5
    for i in order:
        with pytest.raises(EspReplayError):
            rx.unprotect(pkts[i])


def test_esn_high_half_is_in_the_icv() -> None:
    # The same low 32 bits with another high half do not verify: a receiver a whole 2^32 ahead
    # or behind cannot be fooled into accepting the packet.
    tx, _ = sa_pair(SUITE_AES_CBC_SHA256, esn=True, initial_seq=(1 << 32) + 9)
    pkt = tx.protect(b"x")  # seq 2^32 + 10
    _, rx = sa_pair(SUITE_AES_CBC_SHA256, esn=True, initial_seq=9)
    assert rx.infer_seq(10) == 10
    with pytest.raises(EspIcvError):
        rx.unprotect(pkt)


def test_non_esn_ignores_nothing_about_seq_zero() -> None:
    _, rx = sa_pair(SUITE_AES_GCM_16)
    tx2, _ = sa_pair(SUITE_AES_GCM_16, initial_seq=0)
    pkt = bytearray(tx2.protect(b"x"))
    pkt[4:8] = bytes(4)
    with pytest.raises(EspReplayError, match="sequence number 0 is replayed"):
        rx.unprotect(bytes(pkt))


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_sequence_exhausted(suite) -> None:
    tx, rx = sa_pair(suite, initial_seq=(1 << 32) - 3)
    assert tx.remaining == 2
    rx.unprotect(tx.protect(b"x"))
    last = tx.protect(b"last")
    assert tx.seq == (1 << 32) - 1 and tx.remaining == 0
    with pytest.raises(SequenceExhausted, match="rekey"):
        tx.protect(b"one too many")
    assert tx.seq == (1 << 32) - 1  # the counter did not wrap
    assert rx.unprotect(last) == (17, b"last")
    esn_tx, _ = sa_pair(suite, esn=True, initial_seq=(1 << 64) - 2)
    esn_tx.protect(b"x")
    with pytest.raises(SequenceExhausted):
        esn_tx.protect(b"x")


def test_dummy_packet_next_header_59() -> None:
    tx, rx = sa_pair(SUITE_AES_GCM_16)
    assert rx.unprotect(tx.protect(b"", esp.NEXT_HEADER_NONE)) == (59, b"")


# --- malformed input: one exact message per case ------------------------------------------------


def test_packet_parse_errors() -> None:
    with pytest.raises(EspFormatError, match=r"^ESP packet of 7 bytes is shorter than its 8-byte header$"):
        EspPacket.parse(bytes(7))
    with pytest.raises(EspFormatError, match=r"^SPI 0 is the RFC 3948 non-ESP marker, not an ESP packet$"):
        EspPacket.parse(bytes(20))
    with pytest.raises(EspFormatError, match=r"^SPI 255 is reserved \(RFC 4303 2.1: 1-255 are reserved by IANA\)$"):
        EspPacket.parse(struct.pack(">II", 255, 1) + b"x")
    with pytest.raises(EspFormatError, match=r"^ESP packet has a header and no payload$"):
        EspPacket.parse(struct.pack(">II", 256, 1))
    p = EspPacket.parse(struct.pack(">II", 256, 7) + b"abc")
    assert p == EspPacket(256, 7, b"abc") and bytes(p) == struct.pack(">II", 256, 7) + b"abc"


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_unprotect_structure_errors(suite) -> None:
    tx, rx = sa_pair(suite)
    pkt = tx.protect(b"hello")
    short = {SUITE_AES_GCM_16: 36, SUITE_AES_CBC_SHA256: 56, SUITE_3DES_SHA1: 36}[suite]
    with pytest.raises(EspFormatError, match=rf"^ESP packet of {short - 1} bytes is shorter than the {short} {suite.name} needs$"):
        rx.unprotect(pkt[: short - 1])
    with pytest.raises(EspSpiError, match=r"^SPI 0x00002003 is not this SA's \(0x00002002\)$"):
        rx.unprotect(struct.pack(">I", 0x2003) + pkt[4:])
    ct_len = len(pkt) - 8 - suite.iv_len - suite.icv_len + 1
    with pytest.raises(EspFormatError, match=rf"^{suite.name} ciphertext of {ct_len} bytes is not a multiple of {suite.align}$"):
        rx.unprotect(pkt[:20] + b"\x00" + pkt[20:])
    assert (rx.format_failures, rx.spi_failures) == (2, 1)


def _authentic(sa: EspSa, plaintext: bytes) -> bytes:
    """An authentic packet around an arbitrary (possibly badly padded) plaintext."""
    k = derive_esp_keys(SUBKEY, sa.suite, 0x1001, 0x2002).cta_to_sc
    header = struct.pack(">II", sa.spi, 1)
    if sa.suite.aead:
        iv = (1).to_bytes(8, "big")
        return header + iv + AESGCM(k.enc_key).encrypt(k.salt + iv, plaintext, header)
    iv = bytes(sa.suite.iv_len)
    alg = TripleDES(k.enc_key) if sa.suite.cipher == "3des-cbc" else algorithms.AES(k.enc_key)
    enc = Cipher(alg, modes.CBC(iv)).encryptor()
    body = header + iv + enc.update(plaintext) + enc.finalize()
    return body + hmac.new(k.auth_key, body, sa.suite.hash).digest()[: sa.suite.icv_len]


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_trailer_errors_after_authentication(suite) -> None:
    _, rx = sa_pair(suite)
    n = suite.align * 2
    bad_pad = b"A" * (n - 5) + b"\x01\x02\x04" + b"\x03\x11"
    with pytest.raises(EspFormatError, match=r"^padding bytes are not 1, 2, 3, \.\.\. \(RFC 4303 2\.4\)$"):
        rx.unprotect(_authentic(rx, bad_pad))
    _, rx = sa_pair(suite)
    too_long = bytes(n - 2) + bytes([200, 17])
    with pytest.raises(EspFormatError, match=rf"^pad length 200 exceeds the {n - 2} bytes before the trailer$"):
        rx.unprotect(_authentic(rx, too_long))
    assert rx.format_failures == 1 and rx.window.top == 1  # it was authentic: the number is used
    _, rx = sa_pair(suite)
    assert rx.unprotect(_authentic(rx, b"B" * (n - 4) + b"\x01\x02\x02\x06")) == (6, b"B" * (n - 4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suite=st.sampled_from(ALL_SUITES), esn=st.booleans(), data=st.data())
def test_fuzz_only_esp_errors(suite, esn, data) -> None:
    tx, rx = sa_pair(suite, esn=esn)
    good = tx.protect(data.draw(st.binary(max_size=64)))
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        blob = data.draw(st.binary(max_size=120))
    elif choice == 1:  # mutate a valid packet
        blob = bytearray(good)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    else:  # truncate or extend
        cut = data.draw(st.integers(0, len(good) + 8))
        blob = good[:cut] + data.draw(st.binary(max_size=8))
    try:
        rx.unprotect(blob)
    except EspError:
        pass
    try:
        EspPacket.parse(blob)
    except EspError:
        pass


# --- key derivation ---------------------------------------------------------------------------


def _hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hashlib, independent of cryptography's HKDF."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_kdf_matches_the_documented_construction(suite) -> None:
    subkey = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
    keys = derive_esp_keys(subkey, suite, 0x11111111, 0x22222222, derived_start=True)
    params = struct.pack(">BBBII", suite.enc_id, suite.auth_id, suite.key_len, 0x11111111, 0x22222222)
    for label, got, spi in ((b"CTA to SC", keys.cta_to_sc, 0x22222222), (b"SC to CTA", keys.sc_to_cta, 0x11111111)):
        okm = _hkdf_sha256(subkey, b"kerbtel ESP v1\x00" + label + b"\x00" + params,
                           suite.key_len + suite.salt_len + suite.auth_key_len + 4)
        a, b = suite.key_len, suite.key_len + suite.salt_len
        c = b + suite.auth_key_len
        assert got.spi == spi
        assert (got.enc_key, got.salt, got.auth_key) == (okm[:a], okm[a:b], okm[b:c])
        assert got.initial_seq == int.from_bytes(okm[c:], "big") & 0x7FFFFFFF


def test_kdf_binds_direction_suite_and_spis() -> None:
    base = derive_esp_keys(SUBKEY, SUITE_AES_CBC_SHA256, 0x1001, 0x2002)
    assert base.cta_to_sc.enc_key != base.sc_to_cta.enc_key
    assert base.cta_to_sc.auth_key != base.sc_to_cta.auth_key
    assert base.cta_to_sc.initial_seq == base.sc_to_cta.initial_seq == 0  # RFC 4303 by default
    other_spi = derive_esp_keys(SUBKEY, SUITE_AES_CBC_SHA256, 0x1001, 0x2003)
    assert other_spi.cta_to_sc.enc_key != base.cta_to_sc.enc_key
    swapped = derive_esp_keys(SUBKEY, SUITE_AES_CBC_SHA256, 0x2002, 0x1001)
    assert swapped.cta_to_sc.enc_key != base.sc_to_cta.enc_key
    gcm = derive_esp_keys(SUBKEY, SUITE_AES_GCM_16, 0x1001, 0x2002)
    assert gcm.cta_to_sc.enc_key != base.cta_to_sc.enc_key
    assert base.cta_to_sc.enc_key.hex() not in repr(base)
    started = derive_esp_keys(SUBKEY, SUITE_AES_CBC_SHA256, 0x1001, 0x2002, derived_start=True)
    assert started.cta_to_sc.enc_key == base.cta_to_sc.enc_key  # the flag changes only the start
    assert 0 <= started.cta_to_sc.initial_seq < 1 << 31
    assert started.cta_to_sc.initial_seq != started.sc_to_cta.initial_seq
    with pytest.raises(ValueError, match="too short"):
        derive_esp_keys(bytes(8), SUITE_AES_GCM_16, 0x1001, 0x2002)
    with pytest.raises(ValueError, match="CTA SPI 255 is not usable"):
        derive_esp_keys(SUBKEY, SUITE_AES_GCM_16, 255, 0x2002)


def test_derived_start_sa_pair() -> None:
    keys = derive_esp_keys(SUBKEY, SUITE_3DES_SHA1, 0x1001, 0x2002, derived_start=True)
    tx = EspSa.from_keys(SUITE_3DES_SHA1, keys.sc_to_cta)
    rx = EspSa.from_keys(SUITE_3DES_SHA1, keys.sc_to_cta)
    pkt = tx.protect(b"x")
    assert struct.unpack(">I", pkt[4:8])[0] == keys.sc_to_cta.initial_seq + 1
    assert rx.unprotect(pkt) == (17, b"x")


def test_suite_registry() -> None:
    assert suite_for(0, 20) is SUITE_AES_GCM_16
    assert suite_for(5, 12) is SUITE_AES_CBC_SHA256
    assert suite_for(2, 3) is SUITE_3DES_SHA1
    with pytest.raises(ValueError, match="no ESP suite for auth id 2 with encryption id 12"):
        suite_for(2, 12)
    with pytest.raises(ValueError):
        SUITE_3DES_SHA1.with_key_len(16)
    with pytest.raises(ValueError, match="needs a 16-byte encryption key"):
        EspSa(SUITE_AES_GCM_16, 0x1000, bytes(15), salt=bytes(4))
    with pytest.raises(ValueError, match="SPI 12 is not usable"):
        EspSa(SUITE_AES_GCM_16, 12, bytes(16), salt=bytes(4))


# --- Wireshark and UDP helpers ------------------------------------------------------------------


def test_wireshark_entries() -> None:
    keys = derive_esp_keys(SUBKEY, SUITE_AES_GCM_16, 0x1001, 0x2002)
    k = keys.cta_to_sc
    assert wireshark_esp_sa(SUITE_AES_GCM_16, k, "10.0.0.1", "10.0.0.2") == (
        f'"IPv4","10.0.0.1","10.0.0.2","0x00002002","AES-GCM with 16 octet ICV [RFC4106]",'
        f'"0x{(k.enc_key + k.salt).hex()}","NULL",""'
    )
    keys = derive_esp_keys(SUBKEY, SUITE_3DES_SHA1, 0x1001, 0x2002)
    k = keys.sc_to_cta
    entry = wireshark_esp_sa(SUITE_3DES_SHA1, k, "10.0.0.2", "10.0.0.1")
    assert entry == (
        f'"IPv4","10.0.0.2","10.0.0.1","0x00001001","TripleDES-CBC [RFC2451]","0x{k.enc_key.hex()}",'
        f'"HMAC-SHA-1-96 [RFC2404]","0x{k.auth_key.hex()}"'
    )
    assert entry.count('","') == 7
    assert tshark_esp_options([entry], udp_ports=[4500, 5065])[-4:] == [
        "-o", f"uat:esp_sa:{entry}", "-d", "udp.port==5065,udpencap",
    ]


def test_demultiplexing_and_inner_udp() -> None:
    assert is_esp(struct.pack(">II", 0x1001, 1))
    assert not is_esp(b"\x00\x00\x00\x00" + b"IKE message")
    assert not is_esp(b"\xff")  # RFC 3948 NAT keep-alive
    assert strip_non_esp_marker(b"\x00\x00\x00\x00abc") == b"abc"
    assert strip_non_esp_marker(b"\x00\x00\x10\x01abc") is None
    dgram = inner_udp(5060, 5061, b"OPTIONS")
    assert dgram == b"\x13\xc4\x13\xc5\x00\x0f\x00\x00OPTIONS"
    assert parse_inner_udp(dgram) == (5060, 5061, b"OPTIONS")
    with pytest.raises(EspFormatError, match="inner UDP length field 15 does not match the 14 bytes"):
        parse_inner_udp(dgram[:-1])
    with pytest.raises(EspFormatError, match="shorter than its 8-byte header"):
        parse_inner_udp(b"abc")


def test_sa_pair_gives_each_side_the_other_sides_outbound_as_its_inbound():
    from common.esp import SUITE_AES_GCM_16, derive_esp_keys

    keys = derive_esp_keys(bytes(range(32)), SUITE_AES_GCM_16, 0x1001, 0x2002)
    cta_in, cta_out = keys.sa_pair("cta")
    sc_in, sc_out = keys.sa_pair("sc")
    assert sc_in.unprotect(cta_out.protect(b"to the SC"))[1] == b"to the SC"
    assert cta_in.unprotect(sc_out.protect(b"to the CTA"))[1] == b"to the CTA"
    with pytest.raises(ValueError, match="side must be"):
        keys.sa_pair("gateway")
