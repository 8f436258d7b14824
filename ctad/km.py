"""The CTA's key-management engine (sans-I/O): AP Request out, AP Reply in, an ESP SA pair with its
signaling controller (docs/protocol.md, "Key management (pktc)").

Inputs: `start(now, wallclock)`, `receive(data, now, wallclock)`, `handle_timer(now, wallclock)`,
`set_ticket(ticket, session_key)`. Outputs: returned event lists (`SendTo`, `SaEstablished`,
`SaExpired`, `KeyManagementFailed`), `get_timer()`, and per-packet lookups `inbound_sa(spi)` and
`outbound_sa()`. `now` is monotonic seconds, `wallclock` an aware UTC datetime.

Behaviour: every (re)transmission of the AP Request carries a fresh authenticator (so a
retransmission is never a replay at the SC, and a restarted SC accepts it); retransmissions back
off from `retransmit_initial` to `retransmit_max` seconds and never stop while no SA is usable.
Datagrams that do not verify (AP Reply HMAC or AP-REP, Rekey HMAC, timestamp, nonce) are dropped
and counted, never answered. Error Replies are unauthenticated: one is acted on only while an AP
exchange is outstanding and, when it echoes ctime/cusec, only if they are ours.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable

from common.asn1 import APOptions, Asn1DecodeError, ErrorCode, decode, decode_as, principal_to_asn1
from common.asn1.krb5 import AP_REP, AP_REQ, KRB_ERROR, Authenticator, EncAPRepPart, Ticket
from common.crypto import CryptoError, Key, KeyUsage, decrypt, encrypt
from common.esp import SUITE_3DES_SHA1, SUITE_AES_CBC_SHA256, SUITE_AES_GCM_16, EspSa, Suite, derive_esp_keys, suite_for
from common.pktc import (
    PURPOSE_AP_REPLY,
    PURPOSE_AP_REQUEST,
    PURPOSE_REKEY,
    ApReply,
    ApRequest,
    ErrorReply,
    PktcFormatError,
    Rekey,
    SaRecovered,
    WakeUp,
    compute_hmac,
    hmac_key,
    parse_km_message,
    rekey_material,
    sa_recovered_hmac,
    verify_hmac,
)
from common.principal import Principal

__all__ = [
    "CtaKeyManager",
    "SendTo",
    "SaEstablished",
    "SaExpired",
    "KeyManagementFailed",
    "TICKET_PROBLEMS",
]

_U32 = struct.Struct(">I")

# KRB-ERROR codes after which the same ticket cannot succeed: the daemon re-runs PKINIT.
TICKET_PROBLEMS = frozenset({
    ErrorCode.KRB_AP_ERR_TKT_EXPIRED,
    ErrorCode.KRB_AP_ERR_TKT_NYV,
    ErrorCode.KRB_AP_ERR_BADKEYVER,
    ErrorCode.KRB_AP_ERR_NOKEY,
    ErrorCode.KRB_AP_ERR_BAD_INTEGRITY,
    ErrorCode.KRB_AP_ERR_NOT_US,
    ErrorCode.KRB_AP_ERR_BADMATCH,
})


@dataclass(frozen=True, slots=True)
class SendTo:
    peer: tuple | None  # the SC address given to the engine (None: the daemon's configured SC)
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SaEstablished:
    """inbound: SC -> CTA (SPI `cta_spi`); outbound: CTA -> SC (SPI `sc_spi`). Both live at once."""

    inbound: EspSa
    outbound: EspSa
    expires_at: float  # monotonic
    sc_spi: int
    cta_spi: int
    suite: Suite
    rekey: bool
    subkey: bytes = field(repr=False, default=b"")  # for the opt-in key log only


@dataclass(frozen=True, slots=True)
class SaExpired:
    sc_spi: int
    cta_spi: int


@dataclass(frozen=True, slots=True)
class KeyManagementFailed:
    """code: the KRB-ERROR code (None: no answer from the SC). ticket_problem: get a new ticket
    (PKINIT), then `set_ticket()` and `start()`; otherwise the engine keeps retrying by itself."""

    code: int | None
    text: str
    ticket_problem: bool


@dataclass(eq=False)
class _Pair:
    subkey: bytes = field(repr=False)
    suite: Suite
    sc_spi: int
    cta_spi: int
    inbound: EspSa
    outbound: EspSa
    established_at: float
    expires_at: float
    lifetime: int
    grace: int
    ack_required: bool
    sc_rekeys: bool
    ack: bytes = b""
    message: bytes = field(default=b"", repr=False)  # the AP Reply / Rekey that made it
    rekey_nonces: set = field(default_factory=set)
    remove_at: float | None = None


@dataclass(eq=False)
class _Exchange:
    cta_spi: int
    server_nonce: int
    reestablish: bool
    sent: set = field(default_factory=set)  # (ctime, cusec) of every authenticator sent
    attempts: int = 0
    interval: float = 1.0
    next_at: float = 0.0
    reported: bool = False


class CtaKeyManager:
    """suites: the ESP suites offered, in the CTA's order. rng: callable(n) -> n random bytes.
    sc_address: put into `SendTo.peer`. retransmit_initial/retransmit_max: AP Request backoff in
    seconds; max_attempts: transmissions before a `KeyManagementFailed(None, ...)` report.
    wake_up_interval: minimum seconds between AP exchanges triggered by (unauthenticated) Wake Ups.
    spi_in_use: callable(spi) -> bool for SPIs another engine on the same ESP socket holds (an SC
    initiating to a peer SC shares its socket with its own ScKeyManager); such SPIs are not chosen.

    Nothing here is CTA-specific: any client with a ticket for the responder's principal (a
    signaling controller reaching a peer SC, scd/peers.py) runs the same initiator.
    """

    def __init__(
        self,
        client_principal: Principal,
        service_principal: Principal,
        ticket: bytes,
        session_key: Key,
        *,
        suites: Iterable[Suite] = (SUITE_AES_GCM_16, SUITE_AES_CBC_SHA256, SUITE_3DES_SHA1),
        rng: Callable[[int], bytes] = os.urandom,
        sc_address: tuple | None = None,
        max_skew: int = 300,
        retransmit_initial: float = 1.0,
        retransmit_max: float = 32.0,
        max_attempts: int = 6,
        wake_up_interval: float = 5.0,
        replay_window: int = 64,
        spi_in_use: Callable[[int], bool] | None = None,
    ) -> None:
        self.client = client_principal
        self.service = service_principal
        self.suites = tuple(suites)
        if not self.suites or len(self.suites) > 255:
            raise ValueError("offer between 1 and 255 suites")
        self.rng = rng
        self.sc_address = sc_address
        self.max_skew = max_skew
        self.retransmit_initial = retransmit_initial
        self.retransmit_max = retransmit_max
        self.max_attempts = max_attempts
        self.wake_up_interval = wake_up_interval
        self.replay_window = replay_window
        self.spi_in_use = spi_in_use
        self.stats: Counter[str] = Counter()
        self._principal_text = str(service_principal)
        self._cname, self._crealm = principal_to_asn1(client_principal)
        self.set_ticket(ticket, session_key)
        self._exchange: _Exchange | None = None
        self._current: _Pair | None = None
        self._old: list[_Pair] = []
        self._by_spi: dict[int, _Pair] = {}
        self._last_wake_up: float | None = None

    # --- API ---

    def set_ticket(self, ticket: bytes, session_key: Key) -> None:
        """A new ticket and session key (after PKINIT); the next AP Request uses them."""
        self._ticket = decode_as(Ticket, ticket)
        self._session_key = session_key
        self._request_key = hmac_key(session_key.contents, PURPOSE_AP_REQUEST)

    @property
    def state(self) -> str:
        if self._current is not None:
            return "established"
        return "requesting" if self._exchange is not None else "idle"

    def inbound_sa(self, spi: int) -> EspSa | None:
        pair = self._by_spi.get(spi)
        return pair.inbound if pair is not None else None

    def outbound_sa(self) -> EspSa | None:
        return self._current.outbound if self._current is not None else None

    def start(self, now: float, wallclock: datetime, *, server_nonce: int = 0) -> list:
        """Start (or restart) an AP exchange; sends the first AP Request at once."""
        spi = self._new_spi()
        self._exchange = _Exchange(spi, server_nonce, self._current is not None, interval=self.retransmit_initial)
        return self._send_request(now, wallclock)

    def get_timer(self) -> float | None:
        times = []
        if self._exchange is not None:
            times.append(self._exchange.next_at)
        if self._current is not None:
            times.append(self._current.expires_at)
            if self._exchange is None:
                times.append(self._self_rekey_at(self._current))
        times.extend(p.remove_at for p in self._old if p.remove_at is not None)
        return min(times) if times else None

    def handle_timer(self, now: float, wallclock: datetime) -> list:
        events: list = []
        for pair in [p for p in self._old if p.remove_at is not None and p.remove_at <= now]:
            self._drop(pair, events)
        current = self._current
        if current is not None and current.expires_at <= now:
            self._drop(current, events)
            if self._exchange is None:
                events += self.start(now, wallclock)
        elif current is not None and self._exchange is None and self._self_rekey_at(current) <= now:
            self.stats["self_rekey"] += 1
            events += self.start(now, wallclock)
        if self._exchange is not None and self._exchange.next_at <= now:
            events += self._send_request(now, wallclock)
        return events

    def receive(self, data: bytes, now: float, wallclock: datetime) -> list:
        try:
            message = parse_km_message(data)
        except PktcFormatError:
            self.stats["malformed"] += 1
            return []
        try:
            if isinstance(message, ApReply):
                return self._ap_reply(message, bytes(data), now, wallclock)
            if isinstance(message, Rekey):
                return self._rekey(message, bytes(data), now, wallclock)
            if isinstance(message, WakeUp):
                return self._wake_up(message, now, wallclock)
            if isinstance(message, ErrorReply):
                return self._error_reply(message)
        except (Asn1DecodeError, CryptoError, ValueError) as exc:  # forged or corrupt: drop
            self.stats[f"dropped_{type(exc).__name__}"] += 1
            return []
        self.stats["unexpected_message"] += 1
        return []

    # --- internals ---

    def _new_spi(self) -> int:
        while True:
            spi = _U32.unpack(self.rng(4))[0]
            if spi >= 256 and spi not in self._by_spi and not (self.spi_in_use is not None and self.spi_in_use(spi)):
                return spi

    def _self_rekey_at(self, pair: _Pair) -> float:
        # The SC rekeys at lifetime - grace; if it said it will not (re-establish flag) or its
        # Rekey got lost, the CTA runs a new AP exchange itself.
        lead = pair.grace if pair.sc_rekeys is False else pair.grace / 2
        if lead * 2 >= pair.lifetime:
            lead = pair.lifetime / 4
        return pair.established_at + pair.lifetime - lead

    def _build_request(self, wallclock: datetime, exchange: _Exchange) -> tuple[bytes, tuple]:
        ctime = wallclock.replace(microsecond=0)
        cusec = wallclock.microsecond
        while (ctime, cusec) in exchange.sent:  # same clock reading twice: still a new authenticator
            cusec = (cusec + 1) % 1_000_000
        authenticator = Authenticator({
            "crealm": self._crealm, "cname": self._cname, "cusec": cusec, "ctime": ctime,
            "seq-number": _U32.unpack(self.rng(4))[0] & 0x3FFFFFFF,
        }).dump()
        key = self._session_key
        ap_req = AP_REQ({
            "ap-options": int(APOptions.MUTUAL_REQUIRED),
            "ticket": self._ticket,
            "authenticator": {"etype": key.enctype, "cipher": encrypt(key, KeyUsage.AP_REQ_AUTH, authenticator)},
        }).dump()
        suites = tuple((s.auth_id, s.enc_id) for s in self.suites)
        unsigned = bytes(ApRequest(ap_req, exchange.server_nonce, exchange.cta_spi, suites, exchange.reestablish))[:-20]
        return unsigned + compute_hmac(self._request_key, unsigned), (ctime, cusec)

    def _send_request(self, now: float, wallclock: datetime) -> list:
        exchange = self._exchange
        assert exchange is not None
        data, stamp = self._build_request(wallclock, exchange)
        exchange.sent.add(stamp)
        exchange.attempts += 1
        if exchange.attempts > 1:
            self.stats["ap_request_retransmit"] += 1
            exchange.interval = min(exchange.interval * 2, self.retransmit_max)
        jitter = (self.rng(1)[0] / 255.0 - 0.5) * 0.2 * exchange.interval  # +-10 %
        exchange.next_at = now + exchange.interval + jitter
        events: list = [SendTo(self.sc_address, data)]
        if exchange.attempts == self.max_attempts and not exchange.reported:
            exchange.reported = True
            events.append(KeyManagementFailed(None, f"no AP Reply after {exchange.attempts} AP Requests; still trying", False))
        return events

    def _install(self, pair: _Pair, now: float, rekey: bool) -> list:
        old = self._current
        if old is not None:
            old.remove_at = min(old.expires_at, now + pair.grace)
            self._old.append(old)
        self._current = pair
        self._by_spi[pair.cta_spi] = pair
        events: list = [SaEstablished(
            pair.inbound, pair.outbound, pair.expires_at, pair.sc_spi, pair.cta_spi, pair.suite, rekey, pair.subkey
        )]
        if pair.ack_required:
            pair.ack = bytes(SaRecovered(sa_recovered_hmac(pair.subkey, pair.sc_spi, pair.cta_spi)))
            events.append(SendTo(self.sc_address, pair.ack))
        return events

    def _drop(self, pair: _Pair, events: list) -> None:
        if self._by_spi.get(pair.cta_spi) is pair:
            del self._by_spi[pair.cta_spi]
        if pair in self._old:
            self._old.remove(pair)
        if self._current is pair:
            self._current = None
        events.append(SaExpired(pair.sc_spi, pair.cta_spi))

    def _make_pair(self, subkey: bytes, suite: Suite, sc_spi: int, cta_spi: int, lifetime: int, grace: int,
                   ack_required: bool, sc_rekeys: bool, now: float) -> _Pair:
        inbound, outbound = derive_esp_keys(subkey, suite, cta_spi, sc_spi).sa_pair("cta", replay_window=self.replay_window)
        return _Pair(
            subkey, suite, sc_spi, cta_spi, inbound, outbound,
            now, now + lifetime, lifetime, grace, ack_required, sc_rekeys,
        )

    def _offered(self, ids: tuple[int, int]) -> Suite | None:
        for suite in self.suites:
            if (suite.auth_id, suite.enc_id) == ids:
                return suite
        return None

    def _resend_ack(self, raw: bytes) -> list | None:
        for pair in [self._current, *self._old]:
            if pair is not None and pair.message == raw:
                self.stats["duplicate_resend_ack"] += 1
                return [SendTo(self.sc_address, pair.ack)] if pair.ack else []
        return None

    def _ap_reply(self, msg: ApReply, raw: bytes, now: float, wallclock: datetime) -> list:
        duplicate = self._resend_ack(raw)
        if duplicate is not None:
            return duplicate
        exchange = self._exchange
        if exchange is None:
            self.stats["unexpected_ap_reply"] += 1
            return []
        ap_rep = decode(msg.ap_rep)
        if not isinstance(ap_rep, AP_REP):
            raise ValueError("not an AP-REP")
        part = decode(decrypt(self._session_key, KeyUsage.AP_REP_ENC_PART, ap_rep["enc-part"]["cipher"].native), padded=True)
        if not isinstance(part, EncAPRepPart):
            raise ValueError("not an EncAPRepPart")
        if (part["ctime"].native, part["cusec"].native) not in exchange.sent:
            self.stats["mutual_auth_failed"] += 1
            return []
        if part["subkey"].native is None:
            self.stats["ap_rep_without_subkey"] += 1
            return []
        subkey = part["subkey"]["keyvalue"].native
        if not verify_hmac(hmac_key(subkey, PURPOSE_AP_REPLY), msg.hmac, raw[:-20]):
            self.stats["ap_reply_bad_hmac"] += 1
            return []
        suite = self._offered(msg.suite)
        if suite is None:
            self.stats["ap_reply_suite_not_offered"] += 1
            return []
        if msg.lifetime < 2 or msg.grace >= msg.lifetime:
            self.stats["ap_reply_bad_lifetime"] += 1
            return []
        pair = self._make_pair(subkey, suite, msg.spi, exchange.cta_spi, msg.lifetime, msg.grace,
                               msg.ack_required, not msg.reestablish, now)
        pair.message = raw
        self._exchange = None
        self.stats["established"] += 1
        return self._install(pair, now, rekey=False)

    def _rekey(self, msg: Rekey, raw: bytes, now: float, wallclock: datetime) -> list:
        duplicate = self._resend_ack(raw)
        if duplicate is not None:
            return duplicate
        current = self._current
        if current is None:
            self.stats["rekey_without_sa"] += 1
            return []
        if msg.server_principal != self._principal_text:
            self.stats["rekey_wrong_principal"] += 1
            return []
        if not verify_hmac(hmac_key(current.subkey, PURPOSE_REKEY), msg.hmac, raw[:-20]):
            self.stats["rekey_bad_hmac"] += 1
            return []
        if abs((wallclock - msg.timestamp).total_seconds()) > self.max_skew:
            self.stats["rekey_skew"] += 1
            return []
        if msg.nonce in current.rekey_nonces or msg.spi == current.sc_spi:
            self.stats["rekey_replayed"] += 1
            return []
        suite = self._offered(msg.suites[0])
        if suite is None or msg.lifetime < 2 or msg.grace >= msg.lifetime:
            self.stats["rekey_bad_parameters"] += 1
            return []
        current.rekey_nonces.add(msg.nonce)
        subkey, cta_spi = rekey_material(current.subkey, msg, current.cta_spi)
        pair = self._make_pair(subkey, suite, msg.spi, cta_spi, msg.lifetime, msg.grace,
                               current.ack_required, not msg.reestablish, now)
        pair.message = raw
        pair.rekey_nonces = set(current.rekey_nonces)
        self.stats["rekeyed"] += 1
        return self._install(pair, now, rekey=True)

    def _wake_up(self, msg: WakeUp, now: float, wallclock: datetime) -> list:
        if msg.server_principal != self._principal_text:
            self.stats["wake_up_wrong_principal"] += 1
            return []
        if self._last_wake_up is not None and now - self._last_wake_up < self.wake_up_interval:
            self.stats["wake_up_suppressed"] += 1
            return []
        self._last_wake_up = now
        self.stats["wake_up"] += 1
        # The current SA pair stays in use until the new AP Reply arrives: a forged Wake Up costs
        # one AP exchange, sent to the configured SC (never to the Wake Up's source).
        return self.start(now, wallclock, server_nonce=msg.server_nonce)

    def _error_reply(self, msg: ErrorReply) -> list:
        exchange = self._exchange
        if exchange is None:
            self.stats["unexpected_error_reply"] += 1
            return []
        error = decode_as(KRB_ERROR, msg.krb_error)
        code = error["error-code"].native
        ctime = error["ctime"].native
        if ctime is not None and (ctime, error["cusec"].native) not in exchange.sent:
            self.stats["error_reply_not_ours"] += 1
            return []
        text = error["e-text"].native or ""
        self.stats[f"error_reply_{code}"] += 1
        problem = code in TICKET_PROBLEMS
        if problem:
            self._exchange = None  # the same ticket cannot succeed; wait for set_ticket + start
        return [KeyManagementFailed(code, text, problem)]
