"""SDES-SRTP (RFC 4568) on the line side: between a softphone and its CTA, sans I/O.

The CTA-to-CTA media is SRTP keyed by the SCs; the line leg is plain RTP by default. A softphone
that offers `a=crypto` (RTP/SAVP, or RTP/AVP with "best effort" crypto as baresip's
`mediaenc=srtp` does) gets an answer with the CTA's own `a=crypto` for the same tag and suite,
and both line directions become SRTP: the phone's key decrypts what it sends, a fresh random
key of ours encrypts what we send it. With `[line] srtp = "sdes"` the CTA also *offers* SDES
when it calls a phone (RTP/SAVP, AES_CM_128_HMAC_SHA1_80), and the phone must answer with a key.

    offer = LineSdes.from_phone_offer(phone_sdp, mode)   # None: plain RTP
    answer_attribute = offer.answer_attribute()          # a=crypto value for our answer
    ...  # or, calling the phone:
    ours = LineSdes.our_offer()                          # offer_attribute() goes into the INVITE
    ours.accept_answer(phone_answer_sdp)                 # the phone's key; ValueError if none
    ours.phone_keys, ours.our_keys                       # MediaKeys for the relay

Only the key-params form `inline:<base64 key||salt>[|lifetime][|MKI:len]` without MKI and
without session parameters is taken (what softphones send); a crypto line we cannot use is
skipped, and an RTP/SAVP offer with none we can use is refused (ValueError -> 488 at the line).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from typing import Literal

from common.sip.sdp import SessionDescription
from common.srtp import PROFILES, MediaKeys, profile_for, sdes_crypto_attribute

__all__ = ["LineSdes", "LineSrtpMode", "SdesError", "parse_crypto"]

LineSrtpMode = Literal["off", "optional", "sdes"]
SAVP = "RTP/SAVP"
OFFER_SUITE = "AES_CM_128_HMAC_SHA1_80"


class SdesError(ValueError):
    pass


@dataclass(frozen=True)
class Crypto:
    tag: int
    suite: str
    keys: MediaKeys = field(repr=False)


def parse_crypto(value: str) -> Crypto:
    """One `a=crypto` value -> Crypto; SdesError saying why it is unusable."""
    parts = value.split()
    if len(parts) < 3:
        raise SdesError(f"a=crypto needs tag, suite and key-params: {value[:60]!r}")
    tag, suite, key_params, *session_params = parts
    if not tag.isdigit() or len(tag) > 9:
        raise SdesError(f"a=crypto tag {tag[:12]!r} is not a number")
    if suite not in PROFILES:
        raise SdesError(f"a=crypto suite {suite[:40]!r} is not supported (known: {', '.join(PROFILES)})")
    if session_params:
        raise SdesError(f"a=crypto session parameters {' '.join(session_params)[:40]!r} are not supported")
    if ";" in key_params:
        raise SdesError("a=crypto with several keys is not supported")
    method, _, rest = key_params.partition(":")
    if method != "inline":
        raise SdesError(f"a=crypto key method {method[:20]!r} is not inline")
    key_b64, *options = rest.split("|")
    if any(":" in o for o in options):
        raise SdesError("a=crypto MKI is not supported")
    profile = profile_for(suite)
    try:
        raw = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SdesError("a=crypto key is not base64") from None
    if len(raw) != profile.key_len + profile.salt_len:
        raise SdesError(f"a=crypto key is {len(raw)} bytes, {suite} needs {profile.key_len + profile.salt_len}")
    return Crypto(int(tag), suite, MediaKeys(suite, raw[:profile.key_len], raw[profile.key_len:]))


def _new_keys(suite: str, rng=os.urandom) -> MediaKeys:
    profile = profile_for(suite)
    return MediaKeys(suite, rng(profile.key_len), rng(profile.salt_len))


@dataclass
class LineSdes:
    """One call's line-leg SDES state (module docstring). Reprs show no key."""

    tag: int
    suite: str
    proto: str  # what our SDP towards the phone says (mirrors the phone's offer)
    our_keys: MediaKeys = field(repr=False)
    phone_keys: MediaKeys | None = field(default=None, repr=False)

    @classmethod
    def from_phone_offer(cls, phone_sdp: SessionDescription | bytes, mode: LineSrtpMode = "optional",
                         rng=os.urandom) -> LineSdes | None:
        sdp = phone_sdp if isinstance(phone_sdp, SessionDescription) else SessionDescription.parse(bytes(phone_sdp))
        audio = sdp.audio()
        if audio is None or audio.port == 0:
            return None
        savp = audio.proto.upper() == SAVP
        usable, reasons = None, []
        for value in audio.crypto:
            try:
                usable = parse_crypto(value)
                break
            except SdesError as exc:
                reasons.append(str(exc))
        if mode == "off" or usable is None:
            if savp:
                why = "SDES-SRTP is off on this line side" if mode == "off" else \
                    "no usable a=crypto (" + ("; ".join(reasons) or "none offered") + ")"
                raise SdesError(f"RTP/SAVP offer refused: {why}")
            return None  # plain RTP (best-effort crypto we cannot use is simply not answered)
        return cls(usable.tag, usable.suite, audio.proto, _new_keys(usable.suite, rng), usable.keys)

    @classmethod
    def our_offer(cls, rng=os.urandom) -> LineSdes:
        return cls(1, OFFER_SUITE, SAVP, _new_keys(OFFER_SUITE, rng))

    def attribute(self) -> str:
        """Our `a=crypto` value (offer or answer): same tag and suite, our key."""
        return sdes_crypto_attribute(self.tag, self.our_keys)

    def accept_answer(self, phone_sdp: SessionDescription | bytes) -> None:
        """The phone's answer to our SDES offer must carry a key for our tag and suite."""
        sdp = phone_sdp if isinstance(phone_sdp, SessionDescription) else SessionDescription.parse(bytes(phone_sdp))
        audio = sdp.audio()
        if audio is None or audio.port == 0:
            return
        for value in audio.crypto:
            try:
                crypto = parse_crypto(value)
            except SdesError:
                continue
            if crypto.tag == self.tag and crypto.suite == self.suite:
                self.phone_keys = crypto.keys
                return
        raise SdesError(f"the phone's answer has no a=crypto for tag {self.tag} {self.suite}")
