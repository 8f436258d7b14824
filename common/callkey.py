"""The per-call CTA-to-CTA sub-key on the wire (seed FIG. 4, steps 450-462), and what both ends
derive from it. Wire format and crypto only; the engines are `scd/calls.py` and `ctad/calls.py`
(docs/protocol.md, "Calls (per-call keys over SIP)").

Two SIP header fields, only ever inside ESP (CTA<->SC and SC<->SC):

    Kerbtel-Call-Key: ref=<32 hex>;spi=<decimal>;esp=<enc-id>.<auth-id>;media=<profile>;key=<base64url>
    Kerbtel-Call-Key-Ack: ref=<32 hex>;party=<A|B>;hash=<32 hex>

`hash` = HMAC-SHA-256(key = sub-key, "kerbtel call-key ack v1" 0x00 party 0x00 ref 0x00
spi(4) enc-id(1) auth-id(1) 0x00 profile) truncated to 16 bytes: proves that the party holds the
sub-key *and* the same SPI, ESP suite, media profile and call reference, without revealing
anything about the key. A and B acknowledgements differ, so one cannot stand in for the other.

The CTA-to-CTA ESP SA pair: A -> B uses SPI, B -> A uses SPI + 1; per direction
OKM = HKDF-SHA-256(sub-key, info = "kerbtel CTA-CTA ESP v1" 0x00 D 0x00 enc-id auth-id key-len
spi(4)), D = "A to B" | "B to A", sliced enc key || GCM salt || auth key. Counters start at 0.

Where that SA pair goes: a third header, set only by SCs (whatever a CTA sends is dropped),

    Kerbtel-Esp-Peer: <IPv4>:<port> | [<IPv6>]:<port>

names the *other* CTA's ESP endpoint as that CTA's own SC sees it (the source address of its
channel, so NAT is accounted for): the caller's in the INVITE towards the callee, the callee's in
the 18x/2xx towards the caller. The CTAs' direct in-dialog requests travel there in the SA pair,
in their end-to-end dialog (`e2e_dialog_ids`).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Literal

from common.esp import SUITES, DirectionKeys, Suite, hkdf_sha256
from common.srtp import LEGACY_3DES, PROFILES, CallMediaKeys, derive_media_keys

__all__ = [
    "ACK_HEADER",
    "ACK_LEN",
    "PEER_HEADER",
    "CallEspKeys",
    "CallKey",
    "CallKeyAck",
    "CallKeyError",
    "KEY_HEADER",
    "SUBKEY_LEN",
    "ack_hash",
    "derive_call_esp_keys",
    "e2e_tags",
    "format_peer",
    "parse_peer",
    "make_ack",
    "verify_ack",
]

KEY_HEADER = "Kerbtel-Call-Key"
ACK_HEADER = "Kerbtel-Call-Key-Ack"
PEER_HEADER = "Kerbtel-Esp-Peer"
SUBKEY_LEN = 32
ACK_LEN = 16
_ACK_LABEL = b"kerbtel call-key ack v1"
_ESP_LABEL = b"kerbtel CTA-CTA ESP v1"
_REF_RE = re.compile(r"[0-9a-f]{32}\Z")
_HASH_RE = re.compile(r"[0-9a-f]{32}\Z")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_M32 = 0xFFFFFFFF
Party = Literal["A", "B"]


class CallKeyError(ValueError):
    """A Kerbtel-Call-Key or -Ack header field that does not parse or is not acceptable."""


def _params(value: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, val = part.partition("=")
        name = name.strip().lower()
        if not sep or not name or name in out:
            raise CallKeyError(f"{what}: bad or repeated parameter {name or part[:20]!r}")
        out[name] = val.strip()
    return out


@dataclass(frozen=True, repr=False)
class CallKey:
    """The source SC's per-call sub-key and its parameters. The repr shows no key."""

    ref: str  # the call's reference (the lawful-intercept call id), 32 hex
    spi: int  # CTA-to-CTA SPI A -> B (B -> A is spi + 1)
    suite: Suite  # the CTA-to-CTA ESP suite
    profile: str  # the media profile (SRTP SDES name or "3DES_CBC_SEED")
    subkey: bytes

    def __post_init__(self) -> None:
        if not _REF_RE.match(self.ref):
            raise CallKeyError("ref: expected 32 lowercase hex digits")
        if not 256 <= self.spi <= _M32 - 1:
            raise CallKeyError(f"spi {self.spi} is not usable (256..2^32-2: spi + 1 must be an SPI too)")
        if self.profile not in PROFILES and self.profile != LEGACY_3DES:
            raise CallKeyError(f"media: unknown profile {self.profile[:40]!r}")
        if len(self.subkey) != SUBKEY_LEN:
            raise CallKeyError(f"key: {len(self.subkey)} bytes, expected {SUBKEY_LEN}")

    def __repr__(self) -> str:
        return f"CallKey(ref={self.ref}, spi={self.spi}, suite={self.suite.name}, profile={self.profile})"

    def header_value(self) -> str:
        key = base64.urlsafe_b64encode(self.subkey).rstrip(b"=").decode("ascii")
        return (f"ref={self.ref};spi={self.spi};esp={self.suite.enc_id}.{self.suite.auth_id};"
                f"media={self.profile};key={key}")

    @classmethod
    def parse(cls, value: str) -> CallKey:
        p = _params(value, KEY_HEADER)
        missing = [n for n in ("ref", "spi", "esp", "media", "key") if n not in p]
        if missing:
            raise CallKeyError(f"{KEY_HEADER}: missing {', '.join(missing)}")
        if not p["spi"].isdigit() or len(p["spi"]) > 10:
            raise CallKeyError("spi: expected a decimal number")
        enc, dot, auth = p["esp"].partition(".")
        if not dot or not enc.isdigit() or not auth.isdigit() or len(enc) > 3 or len(auth) > 3:
            raise CallKeyError("esp: expected <enc-id>.<auth-id>")
        suite = SUITES.get((int(auth), int(enc)))
        if suite is None:
            raise CallKeyError(f"esp: no suite {enc}.{auth}")
        if not _B64URL_RE.match(p["key"]):
            raise CallKeyError("key: expected unpadded base64url")
        try:
            subkey = base64.urlsafe_b64decode(p["key"] + "=" * (-len(p["key"]) % 4))
        except ValueError:
            raise CallKeyError("key: bad base64url") from None
        return cls(p["ref"], int(p["spi"]), suite, p["media"], subkey)

    def media_keys(self) -> CallMediaKeys:
        return derive_media_keys(self.subkey, self.profile, self.spi)

    def esp_keys(self) -> CallEspKeys:
        return derive_call_esp_keys(self.subkey, self.suite, self.spi)


def ack_hash(key: CallKey, party: Party) -> bytes:
    """The 16-byte acknowledgement `party` sends for `key` (module docstring)."""
    if party not in ("A", "B"):
        raise ValueError(f"party {party!r} is not 'A' or 'B'")
    msg = b"".join((_ACK_LABEL, b"\x00", party.encode(), b"\x00", key.ref.encode("ascii"), b"\x00",
                    struct.pack(">IBB", key.spi, key.suite.enc_id, key.suite.auth_id), b"\x00",
                    key.profile.encode("ascii")))
    return hmac.digest(key.subkey, msg, "sha256")[:ACK_LEN]


@dataclass(frozen=True)
class CallKeyAck:
    ref: str
    party: Party
    hash: bytes

    def header_value(self) -> str:
        return f"ref={self.ref};party={self.party};hash={self.hash.hex()}"

    @classmethod
    def parse(cls, value: str) -> CallKeyAck:
        p = _params(value, ACK_HEADER)
        if not _REF_RE.match(p.get("ref", "")):
            raise CallKeyError("ref: expected 32 lowercase hex digits")
        if p.get("party") not in ("A", "B"):
            raise CallKeyError("party: expected A or B")
        if not _HASH_RE.match(p.get("hash", "")):
            raise CallKeyError(f"hash: expected {2 * ACK_LEN} lowercase hex digits")
        return cls(p["ref"], p["party"], bytes.fromhex(p["hash"]))  # type: ignore[arg-type]


def make_ack(key: CallKey, party: Party) -> CallKeyAck:
    return CallKeyAck(key.ref, party, ack_hash(key, party))


def verify_ack(key: CallKey, party: Party, ack: CallKeyAck) -> str | None:
    """None when `ack` is `party`'s correct acknowledgement of `key`, else why not."""
    if ack.ref != key.ref:
        return "acknowledgement names another call"
    if ack.party != party:
        return f"acknowledgement is from party {ack.party}, expected {party}"
    if not hmac.compare_digest(ack.hash, ack_hash(key, party)):
        return "acknowledgement hash does not match the sub-key and SPI"
    return None


@dataclass(frozen=True)
class CallEspKeys:
    """The CTA-to-CTA ESP SA pair of one call. DirectionKeys' repr hides the keys."""

    suite: Suite
    a_to_b: DirectionKeys  # spi
    b_to_a: DirectionKeys  # spi + 1

    def for_cta(self, role: Party) -> tuple[DirectionKeys, DirectionKeys]:
        """(outbound, inbound) for one end."""
        if role == "A":
            return self.a_to_b, self.b_to_a
        if role == "B":
            return self.b_to_a, self.a_to_b
        raise ValueError(f"CTA role {role!r} is not 'A' or 'B'")


def derive_call_esp_keys(subkey: bytes, suite: Suite, spi: int) -> CallEspKeys:
    if len(subkey) < 16:
        raise ValueError(f"sub-key of {len(subkey)} bytes is too short to key ESP (need >= 16)")
    if not 256 <= spi <= _M32 - 1:
        raise ValueError(f"SPI {spi} is not usable (256..2^32-2)")
    length = suite.key_len + suite.salt_len + suite.auth_key_len

    def one(direction: bytes, dir_spi: int) -> DirectionKeys:
        info = b"".join((_ESP_LABEL, b"\x00", direction, b"\x00",
                         struct.pack(">BBBI", suite.enc_id, suite.auth_id, suite.key_len, spi)))
        okm = hkdf_sha256(subkey, info, length)
        a, b = suite.key_len, suite.key_len + suite.salt_len
        return DirectionKeys(dir_spi, okm[:a], okm[a:b], okm[b:])

    return CallEspKeys(suite, one(b"A to B", spi), one(b"B to A", spi + 1))


# --- the CTA-to-CTA channel ----------------------------------------------------------------


def format_peer(address: tuple[str, int]) -> str:
    """`Kerbtel-Esp-Peer` value for a (host, port) (IPv6 in brackets)."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_peer(value: str) -> tuple[str, int]:
    """(host, port) from a `Kerbtel-Esp-Peer` value; CallKeyError when it is not a literal IP
    address and port (a name would need DNS the CTA may not trust)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise CallKeyError(f"{PEER_HEADER}: an IPv6 address goes in brackets ({value!r})")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CallKeyError(f"{PEER_HEADER}: {value!r} is not ADDRESS:PORT")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise CallKeyError(f"{PEER_HEADER}: {host!r} is not an IP address") from None
    return host, int(port)


def e2e_tags(key: CallKey) -> dict[str, str]:
    """The tags of the CTAs' end-to-end dialog, which both CTAs can compute alone: Call-ID is the
    call reference and each CTA's tag is its role and the SPI (`{"A": ..., "B": ...}`)."""
    return {"A": f"a{key.spi:08x}", "B": f"b{key.spi:08x}"}
