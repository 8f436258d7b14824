"""`kerbtel bench km`: scd's AP engine against MIT's `krb5_rd_req` on the same tickets, and ESP
protect+unprotect packets per second per suite.

Two comparisons, both printed, so like is compared with like:

(a) AP-REQ verification alone: MIT `krb5_rd_req` (libkrb5.so.3 through ctypes, MEMORY keytab,
    `KRB5RCACHENAME=none:`) against `ScKeyManager.verify_ap_request` with its ticket cache warm.
    Both do the same work: parse the AP-REQ, find the service key, decrypt the ticket (kerbtel: a
    bounded cache of decrypted tickets, which the issue allows since a CTA reuses its ticket for
    many exchanges; MIT decrypts it every time), decrypt and parse the authenticator, check
    client match, ticket times and clock skew. Neither keeps a replay cache here. The ratio is
    for this pair.
(b) The whole exchange in `ScKeyManager.receive`: pktc parse, (a), the pktc HMAC, the replay
    cache, a random sub-key, the AP-REP (EncAPRepPart encrypted with the session key), the HMAC'd
    AP Reply, both ESP SAs derived (HKDF) and built. MIT has no counterpart (rd_req is only the
    first part); the line shows how many rd_req-times one exchange costs.

The AP Requests are made beforehand by `CtaKeyManager` (N clients, each with its own ticket,
several authenticators per ticket), so both verifiers see identical AP-REQ bytes. The machine is
shared and its speed drifts, so MIT and kerbtel are timed in interleaved rounds and each figure is
the best round (per-request mean of that round); the median round is shown too.

`MitRdReq` is also what tests/test_km_interop.py uses to have MIT verify ctad's AP-REQs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

__all__ = ["MitRdReq", "MitError", "find_libkrb5", "KmBenchReport", "run_km_bench", "format_report"]


def find_libkrb5() -> str | None:
    name = ctypes.util.find_library("krb5")
    if name:
        return name
    for candidate in ("/usr/lib/x86_64-linux-gnu/libkrb5.so.3", "/usr/lib/aarch64-linux-gnu/libkrb5.so.3", "/usr/lib64/libkrb5.so.3"):
        if os.path.exists(candidate):
            return candidate
    return None


class MitError(RuntimeError):
    def __init__(self, what: str, code: int, message: str) -> None:
        super().__init__(f"{what} failed: {code} {message}")
        self.code = code


class _Data(ctypes.Structure):
    _fields_ = [("magic", ctypes.c_int32), ("length", ctypes.c_uint), ("data", ctypes.c_void_p)]


class _Keyblock(ctypes.Structure):
    _fields_ = [("magic", ctypes.c_int32), ("enctype", ctypes.c_int32), ("length", ctypes.c_uint), ("contents", ctypes.c_void_p)]


class _KeytabEntry(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_int32), ("principal", ctypes.c_void_p), ("timestamp", ctypes.c_uint32),
        ("vno", ctypes.c_uint32), ("key", _Keyblock),
    ]


class MitRdReq:
    """krb5_rd_req over a keytab held in a MEMORY keytab (copied from `keytab_path`).

    `KRB5RCACHENAME=none:` is set in this process's environment (no replay cache: the same
    comparison as a service that keeps its own). Close with `close()`.
    """

    def __init__(self, keytab_path: str | os.PathLike[str]) -> None:
        path = find_libkrb5()
        if path is None:
            raise FileNotFoundError("libkrb5 (MIT krb5) is not installed")
        os.environ["KRB5RCACHENAME"] = "none:"
        self.lib = lib = ctypes.CDLL(path)
        lib.krb5_get_error_message.restype = ctypes.c_char_p
        lib.krb5_get_error_message.argtypes = [ctypes.c_void_p, ctypes.c_int32]
        lib.krb5_rd_req.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_Data), ctypes.c_void_p,
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_void_p),
        ]
        lib.krb5_auth_con_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.krb5_free_ticket.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.ctx = ctypes.c_void_p()
        self._check(lib.krb5_init_context(ctypes.byref(self.ctx)), "krb5_init_context")
        self.keytab = ctypes.c_void_p()
        name = f"MEMORY:kerbtel-bench-{id(self)}".encode()
        self._check(lib.krb5_kt_resolve(self.ctx, name, ctypes.byref(self.keytab)), "krb5_kt_resolve MEMORY")
        source = ctypes.c_void_p()
        self._check(lib.krb5_kt_resolve(self.ctx, f"FILE:{os.fspath(keytab_path)}".encode(), ctypes.byref(source)), "krb5_kt_resolve FILE")
        cursor = ctypes.c_void_p()
        self._check(lib.krb5_kt_start_seq_get(self.ctx, source, ctypes.byref(cursor)), "krb5_kt_start_seq_get")
        entry = _KeytabEntry()
        while lib.krb5_kt_next_entry(self.ctx, source, ctypes.byref(entry), ctypes.byref(cursor)) == 0:
            self._check(lib.krb5_kt_add_entry(self.ctx, self.keytab, ctypes.byref(entry)), "krb5_kt_add_entry")
            lib.krb5_free_keytab_entry_contents(self.ctx, ctypes.byref(entry))
        lib.krb5_kt_end_seq_get(self.ctx, source, ctypes.byref(cursor))
        lib.krb5_kt_close(self.ctx, source)

    def _check(self, code: int, what: str) -> None:
        if code:
            message = self.lib.krb5_get_error_message(self.ctx, code) or b""
            raise MitError(what, code, message.decode(errors="replace"))

    def rd_req(self, ap_req: bytes) -> int:
        """Verify one AP-REQ; returns the ap_req_options MIT saw. MitError on refusal."""
        buf = ctypes.create_string_buffer(ap_req, len(ap_req))
        data = _Data(0, len(ap_req), ctypes.cast(buf, ctypes.c_void_p))
        auth_context = ctypes.c_void_p()
        options = ctypes.c_int32()
        ticket = ctypes.c_void_p()
        code = self.lib.krb5_rd_req(self.ctx, ctypes.byref(auth_context), ctypes.byref(data), None, self.keytab,
                                    ctypes.byref(options), ctypes.byref(ticket))
        if ticket:
            self.lib.krb5_free_ticket(self.ctx, ticket)
        if auth_context:
            self.lib.krb5_auth_con_free(self.ctx, auth_context)
        self._check(code, "krb5_rd_req")
        return options.value

    def close(self) -> None:
        if self.ctx:
            self.lib.krb5_kt_close(self.ctx, self.keytab)
            self.lib.krb5_free_context(self.ctx)
            self.ctx = ctypes.c_void_p()


# --- the benchmark -------------------------------------------------------------------------------


@dataclass
class KmBenchReport:
    requests: int
    clients: int
    rounds: int
    kerbtel_verify_us: float  # (a) verify_ap_request, ticket cache warm: best round
    kerbtel_verify_median_us: float
    mit_us: float | None  # (a) krb5_rd_req: best round
    mit_median_us: float | None
    mit_error: str | None
    kerbtel_us: float  # (b) whole AP exchange, ticket cache warm: best round
    kerbtel_median_us: float
    kerbtel_cold_us: float  # (b) every ticket decrypted (cache size 0): best round
    esp: list[tuple[str, int, float]]  # (suite, payload bytes, microseconds per protect+unprotect)


def _requests(n_clients: int, per_client: int, wallclock: datetime):
    from common.keytab import Keytab, KeytabEntry
    from common.crypto import random_to_key
    from common.principal import Principal
    from ctad.km import CtaKeyManager, _Exchange
    from common.asn1.krb5 import EncryptionKey, EncTicketPart, Ticket, principal_to_asn1
    from common.crypto import KeyUsage, encrypt, get_enctype

    realm = "BENCH.TEST"
    service = Principal(("sc", "sc1.bench.test"), realm, 2)
    keytab = Keytab([KeytabEntry(service, 1, random_to_key(18, os.urandom(32)))])
    key = keytab.key_for(service, 18, 1)
    sname, srealm = principal_to_asn1(service)
    requests = []
    for i in range(n_clients):
        client = Principal(("cta", f"bench{i:06d}"), realm, 1)
        session = random_to_key(18, os.urandom(get_enctype(18).seed_bytes))
        cname, crealm = principal_to_asn1(client)
        part = EncTicketPart({
            "flags": 0x40810000, "key": EncryptionKey.from_key(session), "crealm": crealm, "cname": cname,
            "transited": {"tr-type": 1, "contents": b""}, "authtime": wallclock - timedelta(minutes=5),
            "endtime": wallclock + timedelta(hours=10),
        }).dump()
        ticket = Ticket({"realm": srealm, "sname": sname, "enc-part": {"etype": 18, "kvno": 1, "cipher": encrypt(key, KeyUsage.TICKET, part)}}).dump()
        cta = CtaKeyManager(client, service, ticket, session)
        exchange = _Exchange(0x1000 + i, 0, False)
        for j in range(per_client):
            when = wallclock + timedelta(microseconds=i * per_client + j)
            data, stamp = cta._build_request(when, exchange)
            exchange.sent.add(stamp)
            requests.append(data)
    return service, keytab, requests


def _per_request_us(fn, items) -> float:
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t0) / len(items) * 1e6


def run_km_bench(*, clients: int = 50, per_client: int = 20, esp_packets: int = 20000, payload: int = 400,
                 mit: bool = True, rounds: int = 15, progress=None) -> KmBenchReport:
    import statistics
    import tempfile

    from common.esp import SUITES, EspSa, derive_esp_keys
    from common.pktc import ApRequest
    from scd.km import ScKeyManager

    say = progress or (lambda text: None)
    rounds = max(1, rounds)
    wallclock = datetime.now(timezone.utc)
    say(f"making {clients * per_client} AP Requests ({clients} tickets)")
    service, keytab, requests = _requests(clients, per_client, wallclock)
    ap_reqs = [ApRequest.parse(d).ap_req for d in requests]
    peers = [("192.0.2.1", i) for i in range(len(requests))]

    def new_engine(cache: int) -> ScKeyManager:
        return ScKeyManager(service, keytab, ticket_cache_size=cache, replay_cache_size=len(requests) + 1, error_rate=0)

    def exchange_round(cache: int) -> float:
        sc = new_engine(cache)
        for data in ap_reqs[::per_client]:  # warm the ticket cache (no replay state is kept)
            if cache:
                sc.verify_ap_request(data, wallclock)
        t0 = time.perf_counter()
        for data, peer in zip(requests, peers):
            events = sc.receive(data, peer, now=1.0, wallclock=wallclock)
            if len(events) != 2:
                raise RuntimeError(f"ScKeyManager refused a bench request: {events[-1]}")
        return (time.perf_counter() - t0) / len(requests) * 1e6

    verifier_engine = new_engine(clients * 2)
    for data in ap_reqs:  # warm-up: imports, first-call costs, the ticket cache
        verifier_engine.verify_ap_request(data, wallclock)
    verify = lambda data: verifier_engine.verify_ap_request(data, wallclock)  # noqa: E731

    mit_rd_req = mit_error = verifier = None
    if mit:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "sc.keytab"
                keytab.save(path)
                verifier = MitRdReq(path)
            for data in ap_reqs[:10]:
                verifier.rd_req(data)
            mit_rd_req = verifier.rd_req
        except (OSError, MitError) as exc:
            mit_error = str(exc)
            if verifier is not None:
                verifier.close()
                verifier = None
    say(f"verification: {rounds} interleaved rounds" + (" (MIT, kerbtel)" if mit_rd_req else ""))
    mit_times: list[float] = []
    verify_times: list[float] = []
    warm_times: list[float] = []
    try:
        for _ in range(rounds):
            if mit_rd_req is not None:
                mit_times.append(_per_request_us(mit_rd_req, ap_reqs))
            verify_times.append(_per_request_us(verify, ap_reqs))
        say("whole exchanges: ScKeyManager.receive")
        for _ in range(max(3, rounds // 3)):
            warm_times.append(exchange_round(clients * 2))
            if mit_rd_req is not None:  # keep the two interleaved here too
                mit_times.append(_per_request_us(mit_rd_req, ap_reqs))
    finally:
        if verifier is not None:
            verifier.close()
    cold = min(exchange_round(0) for _ in range(2))
    esp = []
    inner = os.urandom(payload)
    for suite in SUITES.values():
        say(f"ESP {suite.name}")
        keys = derive_esp_keys(os.urandom(32), suite, 0x1001, 0x2002)
        tx = EspSa.from_keys(suite, keys.cta_to_sc, replay_window=1024)
        rx = EspSa.from_keys(suite, keys.cta_to_sc, replay_window=1024)
        t0 = time.perf_counter()
        for _ in range(esp_packets):
            rx.unprotect(tx.protect(inner))
        esp.append((suite.name, payload, (time.perf_counter() - t0) / esp_packets * 1e6))
    return KmBenchReport(
        len(requests), clients, rounds,
        min(verify_times), statistics.median(verify_times),
        min(mit_times) if mit_times else None, statistics.median(mit_times) if mit_times else None, mit_error,
        min(warm_times), statistics.median(warm_times), cold, esp,
    )


def format_report(report: KmBenchReport) -> str:
    r = report
    lines = [
        f"{r.requests} AP Requests over {r.clients} tickets, one process, one core; "
        f"best of {r.rounds} interleaved rounds (median in brackets)",
        "(a) AP-REQ verification alone (the krb5_rd_req part; no replay cache on either side):",
    ]
    if r.mit_us is not None:
        lines.append(f"  MIT krb5_rd_req (MEMORY keytab, rcache none:)    : {r.mit_us:7.1f} us  [{r.mit_median_us:6.1f}]  {1e6 / r.mit_us:8.0f} /s")
    else:
        lines.append(f"  MIT krb5_rd_req: not run ({r.mit_error or 'disabled'})")
    lines.append(f"  kerbtel verify_ap_request (ticket cache warm)    : {r.kerbtel_verify_us:7.1f} us  [{r.kerbtel_verify_median_us:6.1f}]  {1e6 / r.kerbtel_verify_us:8.0f} /s")
    if r.mit_us is not None:
        ratio = r.kerbtel_verify_us / r.mit_us
        verdict = "kerbtel faster" if ratio < 1 else "MIT faster"
        median_ratio = r.kerbtel_verify_median_us / r.mit_median_us
        lines.append(f"  ratio kerbtel/MIT time                           : {ratio:7.2f}x ({verdict}; medians {median_ratio:.2f}x)")
    lines.append("(b) whole AP exchange, ScKeyManager.receive (pktc + (a) + HMAC + replay cache + sub-key + AP-REP + AP Reply + ESP SA pair):")
    lines.append(f"  ticket cache warm                                : {r.kerbtel_us:7.1f} us  [{r.kerbtel_median_us:6.1f}]  {1e6 / r.kerbtel_us:8.0f} /s")
    lines.append(f"  no ticket cache (every ticket decrypted)         : {r.kerbtel_cold_us:7.1f} us")
    if r.mit_us is not None:
        lines.append(f"  one exchange costs {r.kerbtel_us / r.mit_us:.2f} MIT rd_req times (rd_req is only its first part)")
    lines.append("ESP protect+unprotect, transport mode:")
    for name, size, us in r.esp:
        lines.append(f"  {name:<28} {size:4d} B : {us:7.1f} us/packet  {1e6 / us:9.0f} packets/s")
    return "\n".join(lines)
