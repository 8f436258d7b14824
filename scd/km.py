"""The signaling controller's key-management engine (sans-I/O): AP Request in, AP Reply and an
ESP SA pair out (docs/protocol.md, "Key management (pktc)").

Inputs: `receive(data, peer, now=, wallclock=)`, `handle_timer(now, wallclock)`,
`wake_up(peer, now=, wallclock=)`. Outputs: the returned event lists (`SendTo`, `SaEstablished`,
`SaRecoveredEvent`, `Refused`, `SaExpired`), `get_timer()`, and the lookups the ESP path uses per
packet: `inbound_sa(spi)` and `outbound_sa(peer)`. `now` is monotonic seconds (timers, SA
lifetimes); `wallclock` is an aware UTC datetime (ticket times, skew, KRB-ERROR stime).

Per-CTA state is only its SA pairs and their timers, keyed by the peer address. The ticket is the
state: a new engine (a restarted scd) accepts the CTA's next AP Request. The replay cache and the
decrypted-ticket cache are bounded. `receive` never raises on peer input: refusals become an
Error Reply (KRB-ERROR, rate-limited) plus a `Refused` event for counters and debug logging.
"""

from __future__ import annotations

import heapq
import hmac as _hmac
import itertools
import os
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial
from hashlib import sha256
from typing import Callable, Iterable

from common.asn1 import (
    APOptions,
    Asn1DecodeError,
    AuthorizationDataType,
    ErrorCode,
    TicketFlags,
    decode,
    decode_as,
    encode,
    principal_from_asn1,
)
from common.asn1.fastdecode import ApReqFields, TicketMemo, read_ap_req, read_authenticator
from common.asn1.kerbtel import KerbtelRestrictions, find_restrictions
from common.asn1.krb5 import AD_IF_RELEVANT, AP_REQ, Authenticator, EncTicketPart
from common.crypto import CryptoError, Key, KeyUsage, decrypt, encrypt, get_enctype, random_to_key
from common.crypto.enctypes import decryptor
from common.crypto.rfc3961 import HmacKey
from common.esp import SUITE_3DES_SHA1, SUITE_AES_CBC_SHA256, SUITE_AES_GCM_16, EspSa, Suite, derive_esp_keys
from common.keytab import Keytab
from common.pktc import (
    MSG_ERROR_REPLY,
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
)
from common.principal import Principal

from common.krberror import ErrorContext, KrbError, encode_krb_error

__all__ = [
    "ScKeyManager",
    "SendTo",
    "SaEstablished",
    "SaRecoveredEvent",
    "Refused",
    "SaExpired",
    "VerifiedApRequest",
    "DEFAULT_SUITES",
]

DEFAULT_SUITES: tuple[Suite, ...] = (SUITE_AES_GCM_16, SUITE_AES_CBC_SHA256, SUITE_3DES_SHA1)
Peer = tuple  # (host, port)
_U32 = struct.Struct(">I")
_ONE_SECOND = timedelta(seconds=1)
_USE_SESSION_KEY = int(APOptions.USE_SESSION_KEY)  # plain ints: IntFlag's & costs ~1 us
_INVALID = int(TicketFlags.INVALID)


@lru_cache(maxsize=8)
def _seconds(seconds: int) -> timedelta:
    """timedelta(seconds=max_skew), made once instead of once per AP Request."""
    return timedelta(seconds=seconds)


# --- events -----------------------------------------------------------------------------------


WAKE_UP_MEMORY = 4096  # peers whose last Wake Up time is remembered (oldest forgotten first)

@dataclass(frozen=True, slots=True)
class SendTo:
    peer: Peer
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SaEstablished:
    """A new SA pair with `peer`. `inbound` (CTA -> SC, SPI `sc_spi`) is live at once.
    `outbound` (SC -> CTA, SPI `cta_spi`) is used by `outbound_sa(peer)` once `ack_pending` is
    False (immediately without ack-required; else after `SaRecoveredEvent`)."""

    peer: Peer
    client: Principal
    restrictions: KerbtelRestrictions | None
    authorization_data: tuple[tuple[int, bytes], ...]  # every ticket element, AD-IF-RELEVANT opened
    inbound: EspSa
    outbound: EspSa
    expires_at: float  # monotonic
    sc_spi: int
    cta_spi: int
    suite: Suite
    rekey: bool  # True: made by a Rekey, False: by an AP exchange
    ack_pending: bool
    subkey: bytes = field(repr=False, default=b"")  # for the opt-in key log only


@dataclass(frozen=True, slots=True)
class SaRecoveredEvent:
    """The CTA acknowledged the pair: `outbound_sa(peer)` now returns its outbound SA."""

    peer: Peer
    sc_spi: int
    cta_spi: int


@dataclass(frozen=True, slots=True)
class Refused:
    """A datagram refused (code = the KRB-ERROR code, also when no reply was sent)."""

    peer: Peer
    code: int
    reason: str
    replied: bool = True


@dataclass(frozen=True, slots=True)
class SaExpired:
    peer: Peer
    sc_spi: int
    cta_spi: int


# --- state --------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Pair:
    peer: Peer
    client: Principal
    restrictions: KerbtelRestrictions | None
    authorization_data: tuple[tuple[int, bytes], ...]
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
    message: bytes = field(repr=False, default=b"")  # the AP Reply / Rekey, for retransmission
    acked: bool = False
    retransmit_at: float | None = None
    retransmit_interval: float = 1.0
    remove_at: float | None = None  # set once superseded: end of its grace period

    def event(self, *, rekey: bool) -> SaEstablished:
        return SaEstablished(
            self.peer, self.client, self.restrictions, self.authorization_data, self.inbound, self.outbound,
            self.expires_at, self.sc_spi, self.cta_spi, self.suite, rekey, not self.acked, self.subkey,
        )


@dataclass(eq=False)
class _PeerState:
    current: _Pair | None = None  # outbound traffic uses this pair
    pending: _Pair | None = None  # waiting for SA Recovered
    old: list[_Pair] = field(default_factory=list)  # superseded, inbound still accepted
    last_request: bytes = b""
    last_reply: bytes = b""

    def pairs(self) -> list[_Pair]:
        return [p for p in (self.current, self.pending) if p is not None] + self.old


@dataclass(frozen=True, slots=True)
class _TicketInfo:
    session_key: Key
    client: Principal
    flags: int
    start: datetime
    end: datetime
    restrictions: KerbtelRestrictions | None
    authorization_data: tuple[tuple[int, bytes], ...]
    # Derived once per ticket, not per AP Request:
    client_text: str = ""  # str(client): the replay cache key's first part
    request_hmac_key: bytes = field(repr=False, default=b"")  # hmac_key(session key, PURPOSE_AP_REQUEST)
    request_mac: HmacKey | None = field(repr=False, default=None)  # HMAC-SHA-1 under request_hmac_key
    # decrypt(session key, AP_REQ_AUTH, .) with the key checked and its usage keys derived once
    decrypt_authenticator: Callable[[bytes], bytes] | None = field(repr=False, default=None)


@dataclass(frozen=True, slots=True)
class VerifiedApRequest:
    """What `ScKeyManager.verify_ap_request` vouches for: the ticket (decrypted, or from the cache)
    and the authenticator's time stamp (the replay cache key, echoed in the AP-REP)."""

    ticket: _TicketInfo
    ctime: datetime
    cusec: int

    @property
    def client(self) -> Principal:
        return self.ticket.client

    @property
    def session_key(self) -> Key:
        return self.ticket.session_key


def _flatten_ad(ad) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    if ad is None or ad.native is None:
        return ()
    for entry in ad:
        ad_type, data = entry["ad-type"].native, entry["ad-data"].native
        if ad_type == AuthorizationDataType.AD_IF_RELEVANT:
            out.extend(_flatten_ad(decode_as(AD_IF_RELEVANT, data)))
        else:
            out.append((ad_type, data))
    return tuple(out)


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp: float | None = None

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return False
        if self.stamp is not None:
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --- the engine ---------------------------------------------------------------------------------


class ScKeyManager:
    """The SC side of the pktc exchange for one service principal.

    suites_preference: ESP suites in the SC's order of preference (the first one the CTA also
        offers wins). sa_lifetime / grace_period: seconds; a Rekey goes out at
        lifetime - grace after establishment and the superseded pair stays usable for the grace
        period. ack_required: wait for SA Recovered before switching outbound traffic (AP Reply
        and Rekey are retransmitted with backoff until then). max_skew: seconds.
        replay_cache_size / ticket_cache_size: entries. rng: callable(n) -> n random bytes.
        rekey: send Rekey messages (False: the AP Reply's re-establish flag tells the CTA to run a
        new AP exchange itself). error_rate: Error Replies per second (a spoofed-source flood
        cannot turn the SC into a reflector). wake_up_interval: minimum seconds between Wake Ups
        to one peer.
    """

    def __init__(
        self,
        service_principal: Principal,
        keytab: Keytab,
        *,
        suites_preference: Iterable[Suite] = DEFAULT_SUITES,
        sa_lifetime: int = 3600,
        grace_period: int = 60,
        ack_required: bool = True,
        max_skew: int = 300,
        replay_cache_size: int = 65536,
        ticket_cache_size: int = 4096,
        rng: Callable[[int], bytes] = os.urandom,
        rekey: bool = True,
        error_rate: float = 100.0,
        wake_up_interval: float = 1.0,
        replay_window: int = 64,
    ) -> None:
        self.service = service_principal
        self.suites = tuple(suites_preference)
        if not self.suites:
            raise ValueError("suites_preference is empty")
        if sa_lifetime < 2 or not 0 <= grace_period < sa_lifetime:
            raise ValueError(f"need sa_lifetime >= 2 and 0 <= grace_period < sa_lifetime (got {sa_lifetime}, {grace_period})")
        self.sa_lifetime = int(sa_lifetime)
        self.grace_period = int(grace_period)
        self.ack_required = bool(ack_required)
        self.max_skew = max_skew
        self.replay_cache_size = replay_cache_size
        self.ticket_cache_size = ticket_cache_size
        self.rng = rng
        self.rekey = rekey
        self.wake_up_interval = wake_up_interval
        self.replay_window = replay_window
        self.stats: Counter[str] = Counter()
        self._keys: dict[tuple[int, int], Key] = {}
        self._latest: dict[int, int] = {}
        self.update_keytab(keytab)
        self._wake_ups: OrderedDict[Peer, float] = OrderedDict()  # peer -> when we last sent a Wake Up
        self._peers: dict[Peer, _PeerState] = {}
        self._by_spi: dict[int, _Pair] = {}
        self._replay: OrderedDict[tuple, datetime] = OrderedDict()
        self._tickets: OrderedDict[tuple, _TicketInfo] = OrderedDict()
        self._ticket_memo = TicketMemo(ticket_cache_size)  # tickets' clear parts, read once
        self._timers: list[tuple[float, int, _Pair, str]] = []
        self._seq = itertools.count()
        self._errors = _TokenBucket(error_rate)
        self._principal_text = str(service_principal)

    # --- lookups for the ESP path ---

    def update_keytab(self, keytab) -> list[int]:
        """Take the service keys from `keytab` (SIGHUP after a key rotation); SAs are kept.
        Returns the kvnos now known. ValueError, and nothing changes, if it has no key for us."""
        keys = {(e.key.enctype, e.kvno): e.key for e in keytab if e.principal.same_name(self.service)}
        if not keys:
            raise ValueError(f"the keytab has no key for {self.service}")
        latest: dict[int, int] = {}
        for enctype, kvno in keys:
            latest[enctype] = max(kvno, latest.get(enctype, kvno))
        self._keys, self._latest = keys, latest
        return sorted({kvno for (_, kvno) in keys})

    def inbound_sa(self, spi: int) -> EspSa | None:
        pair = self._by_spi.get(spi)
        return pair.inbound if pair is not None else None

    def inbound_peer(self, spi: int) -> tuple[Peer, Principal] | None:
        pair = self._by_spi.get(spi)
        return (pair.peer, pair.client) if pair is not None else None

    def outbound_sa(self, peer: Peer) -> EspSa | None:
        state = self._peers.get(peer)
        if state is None or state.current is None:
            return None
        return state.current.outbound

    def peers(self) -> list[Peer]:
        return list(self._peers)

    # --- inputs ---

    def receive(self, data: bytes, peer: Peer, *, now: float, wallclock: datetime) -> list:
        try:
            return self._receive(bytes(data), peer, now, wallclock)
        except _Refusal as refusal:
            return self._refuse(peer, refusal.error, refusal.context, refusal.reply, now, wallclock)
        except Exception as exc:  # noqa: BLE001 - the boundary: peer input never escapes as an exception
            self.stats["internal_error"] += 1
            error = KrbError(ErrorCode.KRB_ERR_GENERIC, f"internal error ({type(exc).__name__})", log_level="error")
            return self._refuse(peer, error, ErrorContext(self.service.realm, self.service), True, now, wallclock)

    def wake_up(self, peer: Peer, *, now: float, wallclock: datetime) -> list:
        """Ask the CTA at `peer` to run an AP exchange (e.g. ESP from it arrived on an unknown
        SPI after a restart). At most one per `wake_up_interval` per peer."""
        # Wake Ups answer unauthenticated packets, so their rate memory is a bounded map of its
        # own: a stranger must not become per-CTA state (nor count as a keyed CTA).
        last = self._wake_ups.get(peer)
        if last is not None and now - last < self.wake_up_interval:
            self.stats["wake_up_suppressed"] += 1
            return []
        self._wake_ups[peer] = now
        self._wake_ups.move_to_end(peer)
        while len(self._wake_ups) > WAKE_UP_MEMORY:
            self._wake_ups.popitem(last=False)
        nonce = _U32.unpack(self.rng(4))[0]
        self.stats["wake_up"] += 1
        return [SendTo(peer, bytes(WakeUp(nonce, self._principal_text)))]

    def get_timer(self) -> float | None:
        while self._timers:
            when, _, pair, kind = self._timers[0]
            if self._timer_valid(when, pair, kind):
                return when
            heapq.heappop(self._timers)
        return None

    def handle_timer(self, now: float, wallclock: datetime) -> list:
        events: list = []
        while self._timers and self._timers[0][0] <= now:
            when, _, pair, kind = heapq.heappop(self._timers)
            if not self._timer_valid(when, pair, kind):
                continue
            if kind == "retransmit":
                self._retransmit(pair, now, events)
            elif kind == "rekey":
                self._start_rekey(pair, now, wallclock, events)
            elif kind in ("expire", "remove"):
                self._drop(pair, events)
        return events

    # --- timers ---

    def _schedule(self, when: float, pair: _Pair, kind: str) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), pair, kind))

    def _timer_valid(self, when: float, pair: _Pair, kind: str) -> bool:
        state = self._peers.get(pair.peer)
        if state is None or self._by_spi.get(pair.sc_spi) is not pair:
            return False
        if kind == "retransmit":
            return pair is state.pending and pair.retransmit_at == when
        if kind == "rekey":
            return pair is state.current and state.pending is None and pair.remove_at is None and self.rekey
        if kind == "remove":
            return pair.remove_at == when
        return kind == "expire" and pair.expires_at == when

    def _install(self, state: _PeerState, pair: _Pair, now: float) -> None:
        self._by_spi[pair.sc_spi] = pair
        self._schedule(pair.expires_at, pair, "expire")
        if pair.acked:
            self._promote(state, pair, now)
        else:
            if state.pending is not None:
                self._supersede(state.pending, now)
                state.old.append(state.pending)
            state.pending = pair
            pair.retransmit_at = now + pair.retransmit_interval
            self._schedule(pair.retransmit_at, pair, "retransmit")

    def _promote(self, state: _PeerState, pair: _Pair, now: float) -> None:
        if state.pending is pair:
            state.pending = None
        pair.acked = True
        pair.retransmit_at = None
        if state.current is not None and state.current is not pair:
            self._supersede(state.current, now)
            state.old.append(state.current)
        state.current = pair
        if self.rekey:
            lead = self.grace_period if self.grace_period * 2 < pair.lifetime else pair.lifetime / 2
            self._schedule(pair.established_at + pair.lifetime - lead, pair, "rekey")

    def _supersede(self, pair: _Pair, now: float) -> None:
        pair.remove_at = min(pair.expires_at, now + self.grace_period)
        pair.retransmit_at = None
        self._schedule(pair.remove_at, pair, "remove")

    def _drop(self, pair: _Pair, events: list) -> None:
        state = self._peers.get(pair.peer)
        self._by_spi.pop(pair.sc_spi, None)
        events.append(SaExpired(pair.peer, pair.sc_spi, pair.cta_spi))
        self.stats["sa_expired"] += 1
        if state is None:
            return
        if state.current is pair:
            state.current = None
        if state.pending is pair:
            state.pending = None
        if pair in state.old:
            state.old.remove(pair)
        if not state.pairs():
            # Nothing left to key traffic with: forget the peer (the next AP Request starts over).
            del self._peers[pair.peer]

    def _retransmit(self, pair: _Pair, now: float, events: list) -> None:
        events.append(SendTo(pair.peer, pair.message))
        self.stats["retransmit"] += 1
        pair.retransmit_interval = min(pair.retransmit_interval * 2, 32.0)
        nxt = now + pair.retransmit_interval
        if nxt < pair.expires_at:
            pair.retransmit_at = nxt
            self._schedule(nxt, pair, "retransmit")
        else:
            pair.retransmit_at = None

    def _start_rekey(self, old: _Pair, now: float, wallclock: datetime, events: list) -> None:
        state = self._peers[old.peer]
        nonce = _U32.unpack(self.rng(4))[0]
        sc_spi = self._new_spi()
        stamp = wallclock.replace(microsecond=0)
        unsigned = Rekey(
            nonce, self._principal_text, stamp, sc_spi, ((old.suite.auth_id, old.suite.enc_id),),
            self.sa_lifetime, self.grace_period, not self.rekey,
        )
        subkey, cta_spi = rekey_material(old.subkey, unsigned, old.cta_spi)
        signed = bytes(unsigned)[:-20]
        message = signed + compute_hmac(hmac_key(old.subkey, PURPOSE_REKEY), signed)
        pair = self._make_pair(
            old.peer, old.client, old.restrictions, old.authorization_data, subkey, old.suite, sc_spi, cta_spi, now
        )
        pair.message = message
        pair.acked = not self.ack_required
        self._install(state, pair, now)
        events.append(SendTo(old.peer, message))
        events.append(pair.event(rekey=True))
        self.stats["rekey"] += 1

    # --- helpers ---

    def _new_spi(self) -> int:
        while True:
            spi = _U32.unpack(self.rng(4))[0]
            if spi >= 256 and spi not in self._by_spi:
                return spi

    def _make_pair(self, peer, client, restrictions, ad, subkey: bytes, suite: Suite, sc_spi: int, cta_spi: int, now: float) -> _Pair:
        inbound, outbound = derive_esp_keys(subkey, suite, cta_spi, sc_spi).sa_pair("sc", replay_window=self.replay_window)
        return _Pair(
            peer, client, restrictions, ad, subkey, suite, sc_spi, cta_spi, inbound, outbound,
            now, now + self.sa_lifetime, self.sa_lifetime, self.grace_period,
        )

    def _refuse(self, peer, error: KrbError, context: ErrorContext, reply: bool, now: float, wallclock: datetime) -> list:
        self.stats[f"refused_{error.name}"] += 1
        events: list = []
        replied = False
        if reply and self._errors.take(now):
            try:
                data = bytes(ErrorReply(encode_krb_error(error, context, wallclock=wallclock)))
                events.append(SendTo(peer, data))
                replied = True
            except Exception:  # noqa: BLE001 - an unencodable error context must not escape either
                self.stats["error_encode_failed"] += 1
        events.append(Refused(peer, error.code, error.text, replied))
        return events

    # --- message handling ---

    def _receive(self, data: bytes, peer: Peer, now: float, wallclock: datetime) -> list:
        context = ErrorContext(self.service.realm, self.service)
        try:
            message = parse_km_message(data)
        except PktcFormatError as exc:
            if data[:1] == bytes((MSG_ERROR_REPLY,)) or len(data) < 3:
                # Never answer an error with an error; a runt is not worth a KRB-ERROR either.
                raise _Refusal(KrbError(ErrorCode.KRB_ERR_GENERIC, str(exc)), context, reply=False) from None
            text = str(exc)
            if text.startswith("version "):
                code = ErrorCode.KRB_AP_ERR_BADVERSION
            elif text.startswith("unknown key-management message id"):
                code = ErrorCode.KRB_AP_ERR_MSG_TYPE
            else:
                code = ErrorCode.KRB_ERR_GENERIC
            raise _Refusal(KrbError(code, str(exc)), context) from None
        if isinstance(message, ApRequest):
            return self._ap_request(message, data, peer, now, wallclock, context)
        if isinstance(message, SaRecovered):
            return self._sa_recovered(message, peer, now, context)
        if isinstance(message, ErrorReply):
            self.stats["error_reply_received"] += 1
            return []
        raise _Refusal(KrbError(ErrorCode.KRB_AP_ERR_MSG_TYPE, f"{type(message).__name__} is not sent to a signaling controller"), context)

    def esp_authenticated(self, sc_spi: int, now: float) -> list:
        """An ESP packet on `sc_spi` passed its ICV. If that SA pair still waits for SA Recovered,
        the CTA evidently holds its keys: treat it as the acknowledgement. (SA Recovered and the
        first ESP packet use different ports, so they can arrive in either order.)"""
        pair = self._by_spi.get(sc_spi)
        state = self._peers.get(pair.peer) if pair is not None else None
        if state is None or state.pending is not pair:
            return []
        self._promote(state, pair, now)
        self.stats["sa_recovered_by_esp"] += 1
        return [SaRecoveredEvent(pair.peer, pair.sc_spi, pair.cta_spi)]

    def _sa_recovered(self, message: SaRecovered, peer: Peer, now: float, context: ErrorContext) -> list:
        state = self._peers.get(peer)
        if state is not None:
            pending = state.pending
            if pending is not None and verify_hmac_value(message.hmac, sa_recovered_hmac(pending.subkey, pending.sc_spi, pending.cta_spi)):
                self._promote(state, pending, now)
                self.stats["sa_recovered"] += 1
                return [SaRecoveredEvent(peer, pending.sc_spi, pending.cta_spi)]
            for pair in [state.current, *state.old]:
                if pair is not None and verify_hmac_value(message.hmac, sa_recovered_hmac(pair.subkey, pair.sc_spi, pair.cta_spi)):
                    self.stats["sa_recovered_duplicate"] += 1
                    return []
        raise _Refusal(KrbError(ErrorCode.KRB_AP_ERR_MODIFIED, "SA Recovered matches no SA pair of this peer"), context)

    def _ticket(self, fields: ApReqFields) -> _TicketInfo:
        service = self.service
        if fields.sname == service.components and fields.realm == service.realm:
            pass  # ours (the common case: no Principal to build)
        else:
            try:
                server = Principal(fields.sname, fields.realm, fields.sname_type)
            except ValueError as exc:
                raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed ticket: {exc}") from None
            if not server.same_name(service) or server.realm != service.realm:
                raise KrbError(ErrorCode.KRB_AP_ERR_NOT_US, f"the ticket is for {server}, not {service}")
        etype, kvno, cipher = fields.ticket_etype, fields.ticket_kvno, fields.ticket_cipher
        if etype not in self._latest:
            raise KrbError(ErrorCode.KRB_AP_ERR_NOKEY, f"no {self.service} key for enctype {etype}")
        kvno = self._latest[etype] if kvno is None else kvno
        cache_key = (etype, kvno, cipher)
        info = self._tickets.get(cache_key)
        if info is not None:
            self._tickets.move_to_end(cache_key)
            self.stats["ticket_cache_hit"] += 1
            return info
        key = self._keys.get((etype, kvno))
        if key is None:
            raise KrbError(ErrorCode.KRB_AP_ERR_BADKEYVER, f"no {self.service} key with kvno {kvno} for enctype {etype}")
        try:
            part = decode_as(EncTicketPart, decrypt(key, KeyUsage.TICKET, cipher), padded=True)
            part.native  # noqa: B018 - decode every field now
        except (CryptoError, Asn1DecodeError, ValueError):
            raise KrbError(ErrorCode.KRB_AP_ERR_BAD_INTEGRITY, "the ticket does not decrypt with the service key") from None
        try:
            restrictions = find_restrictions(part["authorization-data"])
            if restrictions is not None:
                restrictions.native  # noqa: B018
            ad = _flatten_ad(part["authorization-data"])
        except (Asn1DecodeError, ValueError) as exc:
            # Fail closed: a restriction we cannot read must not become an unrestricted CTA.
            raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed ticket authorization-data: {exc}") from None
        start = part["starttime"].native or part["authtime"].native
        session_key = part["key"].to_key()
        client = principal_from_asn1(part["cname"], part["crealm"])
        try:
            decrypt_authenticator = decryptor(session_key, KeyUsage.AP_REQ_AUTH)
        except CryptoError:  # a session key we cannot use: decrypt() refuses each authenticator
            decrypt_authenticator = partial(decrypt, session_key, KeyUsage.AP_REQ_AUTH)
        request_hmac_key = hmac_key(session_key.contents, PURPOSE_AP_REQUEST)
        info = _TicketInfo(
            session_key, client, int(part["flags"].native),
            start, part["endtime"].native, restrictions, ad,
            str(client), request_hmac_key, HmacKey(request_hmac_key, "sha1"), decrypt_authenticator,
        )
        self._tickets[cache_key] = info
        if len(self._tickets) > self.ticket_cache_size:
            self._tickets.popitem(last=False)
        self.stats["ticket_decrypted"] += 1
        return info

    def _check_replay(self, key: tuple, wallclock: datetime) -> None:
        cache = self._replay
        while cache:
            oldest_key, expires = next(iter(cache.items()))
            if expires >= wallclock and len(cache) < self.replay_cache_size:
                break
            cache.popitem(last=False)
            if expires >= wallclock:
                # Evicted early: a replay of it could establish an SA whose sub-key the replayer
                # cannot read; size the cache for max_skew x the AP request rate.
                self.stats["replay_cache_evicted"] += 1
        if key in cache:
            raise KrbError(ErrorCode.KRB_AP_ERR_REPEAT, "the authenticator was seen before (replay)")

    def _ap_request(self, msg: ApRequest, raw: bytes, peer: Peer, now: float, wallclock: datetime, context: ErrorContext) -> list:
        state = self._peers.get(peer)
        if state is not None and state.last_request == raw and state.last_reply:
            # A duplicated datagram: answer it again rather than call it a replay.
            self.stats["duplicate_request"] += 1
            return [SendTo(peer, state.last_reply)]
        try:
            return self._ap_exchange(msg, raw, peer, now, wallclock, context)
        except KrbError as error:
            raise _Refusal(error, context) from None

    @staticmethod
    def _read_ap_req_reference(ap_req_bytes: bytes) -> ApReqFields:
        """asn1crypto's reading of an AP-REQ the strict reader passed on (BER deviations, or an
        error worded precisely)."""
        try:
            ap_req = decode(ap_req_bytes)
            if not isinstance(ap_req, AP_REQ):
                raise ValueError("not an AP-REQ")
            pvno, msg_type = ap_req["pvno"].native, ap_req["msg-type"].native
            options = int(ap_req["ap-options"].native)
            auth = ap_req["authenticator"]
            auth_etype, auth_kvno, auth_cipher = auth["etype"].native, auth["kvno"].native, auth["cipher"].native
        except (Asn1DecodeError, ValueError) as exc:
            raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed AP-REQ: {exc}") from None
        ticket = ap_req["ticket"]  # decode() parsed it all: reading it cannot fail
        sname, enc = ticket["sname"], ticket["enc-part"]
        return ApReqFields(
            pvno, msg_type, options, int(sname["name-type"].native), tuple(sname["name-string"].native),
            ticket["realm"].native, enc["etype"].native, enc["kvno"].native, enc["cipher"].native,
            auth_etype, auth_kvno, auth_cipher,
        )

    @staticmethod
    def _read_authenticator_reference(plaintext: bytes) -> tuple[Principal, datetime, int]:
        authenticator = decode(plaintext, padded=True)
        if not isinstance(authenticator, Authenticator):
            raise ValueError("not an Authenticator")
        a_client = principal_from_asn1(authenticator["cname"], authenticator["crealm"])
        return a_client, authenticator["ctime"].native, authenticator["cusec"].native

    def verify_ap_request(self, ap_req: bytes, wallclock: datetime, context: ErrorContext | None = None) -> VerifiedApRequest:
        """Verify one AP-REQ as `krb5_rd_req` does (no replay cache): structure, pvno and
        msg-type, no user-to-user, the ticket (service name, key, decryption -- or the bounded
        cache of decrypted tickets -- times and flags), the authenticator (decryption with the
        session key, the same client as the ticket, clock skew). Raises KrbError; `context` (the
        KRB-ERROR's) gets the client name and ctime/cusec as soon as they are known.

        The pktc HMAC, the replay cache and the suite choice are the exchange's (`receive`)."""
        fields = read_ap_req(ap_req, self._ticket_memo)
        if fields is None:
            fields = self._read_ap_req_reference(ap_req)
        pvno, msg_type = fields.pvno, fields.msg_type
        if pvno != 5:
            raise KrbError(ErrorCode.KRB_AP_ERR_BADVERSION, f"AP-REQ pvno {pvno} is not 5")
        if msg_type != 14:
            raise KrbError(ErrorCode.KRB_AP_ERR_MSG_TYPE, f"AP-REQ msg-type {msg_type} is not 14")
        if fields.ap_options & _USE_SESSION_KEY:
            raise KrbError(ErrorCode.KRB_AP_ERR_METHOD, "user-to-user (use-session-key) is not supported")
        ticket = self._ticket(fields)
        client = ticket.client
        if context is not None:
            context.cname = client
        skew = _seconds(self.max_skew)
        if ticket.flags & _INVALID or ticket.start - skew > wallclock:
            raise KrbError(ErrorCode.KRB_AP_ERR_TKT_NYV, f"the ticket is not valid before {ticket.start:%Y-%m-%dT%H:%M:%SZ}")
        if ticket.end + skew < wallclock:
            raise KrbError(ErrorCode.KRB_AP_ERR_TKT_EXPIRED, f"the ticket expired at {ticket.end:%Y-%m-%dT%H:%M:%SZ}")
        session_key = ticket.session_key
        auth_etype = fields.auth_etype
        if auth_etype != session_key.enctype:
            raise KrbError(ErrorCode.KRB_AP_ERR_BAD_INTEGRITY, f"authenticator enctype {auth_etype} is not the session key's {session_key.enctype}")
        try:
            plaintext = ticket.decrypt_authenticator(fields.auth_cipher)
            auth = read_authenticator(plaintext)
            if auth is not None:
                same = auth.cname == client.components and auth.crealm == client.realm
                ctime, cusec = auth.ctime, auth.cusec
                a_client = None if same else Principal(auth.cname, auth.crealm, auth.cname_type)
            else:
                a_client, ctime, cusec = self._read_authenticator_reference(plaintext)
                same = a_client.same_name(client) and a_client.realm == client.realm
        except (CryptoError, Asn1DecodeError, ValueError):
            raise KrbError(ErrorCode.KRB_AP_ERR_BAD_INTEGRITY, "the authenticator does not decrypt with the ticket session key") from None
        if context is not None:
            context.ctime, context.cusec = ctime, cusec
        if not same:
            raise KrbError(ErrorCode.KRB_AP_ERR_BADMATCH, f"the authenticator names {a_client}, the ticket {client}")
        offset = abs((wallclock - (ctime + timedelta(microseconds=cusec))).total_seconds())
        if offset > self.max_skew:
            raise KrbError(
                ErrorCode.KRB_AP_ERR_SKEW, f"authenticator time is {offset:.0f} s from the SC's clock (limit {self.max_skew} s)",
                ctime=ctime, cusec=cusec,
            )
        return VerifiedApRequest(ticket, ctime, cusec)

    def _ap_exchange(self, msg: ApRequest, raw: bytes, peer: Peer, now: float, wallclock: datetime, context: ErrorContext) -> list:
        verified = self.verify_ap_request(msg.ap_req, wallclock, context)
        ticket, ctime, cusec = verified.ticket, verified.ctime, verified.cusec
        # verify_hmac(ticket.request_hmac_key, msg.hmac, raw[:-20]), without hashing the key's pads again
        if not _hmac.compare_digest(ticket.request_mac.digest(raw[:-20]), bytes(msg.hmac)):
            raise KrbError(ErrorCode.KRB_AP_ERR_MODIFIED, "the AP Request HMAC does not verify")
        replay_key = (ticket.client_text, ctime, cusec, msg.server_nonce)
        self._check_replay(replay_key, wallclock)
        self._replay[replay_key] = ctime + _seconds(self.max_skew) + _ONE_SECOND
        offered = set(msg.suites)
        suite = next((s for s in self.suites if (s.auth_id, s.enc_id) in offered), None)
        if suite is None:
            ours = ", ".join(f"{s.name} ({s.auth_id}/{s.enc_id})" for s in self.suites)
            raise KrbError(ErrorCode.KDC_ERR_ETYPE_NOSUPP, f"no common ESP suite; the SC supports {ours}")
        # --- accept: sub-key, AP-REP, AP Reply, SA pair ---
        session_key = ticket.session_key
        cls = get_enctype(session_key.enctype)
        subkey = random_to_key(session_key.enctype, self.rng(cls.seed_bytes))
        enc_part = encode.enc_ap_rep_part(ctime, cusec, subkey, _U32.unpack(self.rng(4))[0] & 0x3FFFFFFF)
        ap_rep = encode.ap_rep(session_key.enctype, encrypt(session_key, KeyUsage.AP_REP_ENC_PART, enc_part))
        sc_spi = self._new_spi()
        unsigned = bytes(ApReply(
            ap_rep, sc_spi, (suite.auth_id, suite.enc_id), self.sa_lifetime, self.grace_period,
            not self.rekey, self.ack_required,
        ))[:-20]
        reply = unsigned + compute_hmac(hmac_key(subkey.contents, PURPOSE_AP_REPLY), unsigned)
        pair = self._make_pair(peer, ticket.client, ticket.restrictions, ticket.authorization_data,
                               subkey.contents, suite, sc_spi, msg.spi, now)
        pair.message = reply
        pair.acked = not self.ack_required
        state = self._peers.setdefault(peer, _PeerState())
        self._install(state, pair, now)
        state.last_request, state.last_reply = raw, reply
        self.stats["ap_exchange"] += 1
        return [SendTo(peer, reply), pair.event(rekey=False)]


def verify_hmac_value(received: bytes, expected: bytes) -> bool:
    return _hmac.compare_digest(received, expected)


class _Refusal(Exception):
    def __init__(self, error: KrbError, context: ErrorContext, reply: bool = True) -> None:
        super().__init__(error.text)
        self.error = error
        self.context = context
        self.reply = reply
