"""`kerbtel bench calls`: call setups per second end to end, through real scd processes.

    report = run_calls_bench(calls=200, concurrency=4, cross_sc=True)
    print(format_calls_report(report))

What it does, per run:

1. `create_deployment` in a temporary directory; with `cross_sc` cta2 is placed on sc2
   (`cta_scs={"cta2": "sc2"}`), so a call runs cta1 -> sc1 -> sc2 -> cta2 (the SC-SC leg inside
   the peers' ESP link); otherwise both CTAs are on sc1.
2. Starts kdcd (`kdcd.bench.start_kdcd`), then sc1 and sc2 as subprocesses (`python -m scd`,
   JSON logs to files) and waits for their `ready` log lines (and `peer link up` on both SCs with
   `cross_sc`).
3. Simulates both CTAs in this process (`SimCta`): a PKINIT ticket for its SC from
   `common.krb5client.AsExchange`, the AP exchange with `ctad.km.CtaKeyManager` over UDP, ESP to
   the SC with the SAs it yields, and SIP with `ctad.signaling.CtaUserAgent` +
   `ctad.calls.CallAgent` inside ESP: REGISTER, then calls A -> B. B answers every incoming call
   at once. Both CTAs share one select() loop.
4. Per call: INVITE -> both CTAs' call keys -> 200 at A (ACK by the agent) -> BYE. A call's
   *setup* is done when A has the 200 and both CTAs have keys for the same call reference with
   matching SRTP and CTA-CTA ESP keys (checked for every call); its latency is INVITE placed ->
   that moment. A hangs up at once; a slot is free again when both legs have ended. `concurrency`
   calls are in flight at a time.
5. Reports setups/s over the measured window (first INVITE to last call ended, so teardown is
   included: the sustained rate), latency p50/p99, each SC's CPU ms per call (utime+stime of the
   scd process tree from /proc, before/after) and this process's CPU per call (the two simulated
   CTAs: they compete with the SCs for cores on a small machine).

Nothing here asserts timings; the test runs it with tiny numbers for the plumbing only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CallsBenchError", "CallsBenchReport", "SimCta", "run_calls_bench", "format_calls_report"]

SDP_A = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
SDP_B = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n"
_SIP_PORT = 5060


class CallsBenchError(RuntimeError):
    """The bench could not run (a daemon did not start, a CTA did not register, a call failed to set up)."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- scd processes --------------------------------------------------------------------------------


@dataclass
class ScdProcess:
    name: str
    process: subprocess.Popen
    log: Path

    def records(self) -> list[dict]:
        out = []
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_event(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for record in self.records():
                if record.get("event") == event:
                    return record
            if self.process.poll() is not None:
                raise CallsBenchError(f"scd {self.name} exited {self.process.returncode}:\n  {self.tail()}")
            if time.monotonic() > deadline:
                raise CallsBenchError(f"scd {self.name}: no {event!r} log line within {timeout} s:\n  {self.tail()}")
            time.sleep(0.05)

    def tail(self, lines: int = 8) -> str:
        try:
            return "\n  ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu(self) -> float:
        from kdcd.bench import process_tree_cpu

        return process_tree_cpu(self.process.pid)

    def stop(self) -> None:
        from common.daemon import stop_process

        stop_process(self.process)


def start_scd(sc, directory: Path) -> ScdProcess:
    """`python -m scd -c <sc.config>` with JSON logs to DIR/<name>.log (not yet waited for)."""
    log = directory / f"scd-{sc.name}.log"
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NOTIFY_SOCKET", None)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scd", "-c", str(sc.config), "--log-format", "json"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=directory)
    return ScdProcess(sc.name, proc, log)


# --- a simulated CTA --------------------------------------------------------------------------------


def pkinit_ticket(deployment, cta, sc, mode: str = "dh"):
    """A ticket for `sc` by one PKINIT AS exchange with the deployment's kdcd (an AsResult)."""
    from common.krb5client import AsClientConfig, AsExchange, AsResult, ClientIdentity, send_to_kdc
    from common.pki import load_certificates, load_private_key
    from common.principal import Principal

    config = AsClientConfig(
        identity=ClientIdentity(load_certificates(cta.cert)[0], load_private_key(cta.key)),
        client=Principal.parse(cta.principal), realm=deployment.realm,
        anchors=tuple(load_certificates(deployment.kdc_anchor)), service=Principal.parse(sc.principal), mode=mode)
    exchange = AsExchange(config)
    request = exchange.start(wallclock=_utcnow())
    for _ in range(4):
        reply = asyncio.run(send_to_kdc(deployment.host, deployment.port, request, timeout=30))
        step = exchange.receive(reply, wallclock=_utcnow())
        if isinstance(step, AsResult):
            return step
        request = step.request
    raise CallsBenchError(f"{cta.name}: no AS-REP from kdcd after 4 requests")


class SimCta:
    """One CTA in this process on one UDP socket: AP exchange with its SC, ESP, REGISTER, calls.

    Non-blocking: the owner select()s on `sock`, calls `readable()` when it is, and `pump()`
    after every round (timers, outgoing datagrams, events into `events`)."""

    def __init__(self, deployment, cta, sc) -> None:
        from common.principal import Principal
        from ctad import km as ckm
        from ctad.calls import CallAgent
        from ctad.signaling import CtaUserAgent

        self._ckm = ckm
        self.name = cta.name
        self.numbers = [cta.phone_number] if cta.phone_number else []
        self.km_addr = (deployment.host, sc.km_port)
        self.esp_addr = (deployment.host, sc.esp_port)
        ticket = pkinit_ticket(deployment, cta, sc)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((deployment.host, 0))
        self.sock.setblocking(False)
        port = self.sock.getsockname()[1]
        self.km = ckm.CtaKeyManager(Principal.parse(cta.principal), Principal.parse(sc.principal), ticket.ticket,
                                    ticket.session_key, sc_address=self.km_addr,
                                    retransmit_initial=0.3, retransmit_max=1.0)
        domain = sc.principal.split("/", 1)[1].split("@", 1)[0]
        self.ua = CtaUserAgent(self.numbers, domain=domain, local_host=deployment.host, local_port=port,
                               keepalive_interval=0)
        self.agent = CallAgent(self.ua)
        self.sa = None
        self.events: list = []
        self._km_events(self.km.start(time.monotonic(), _utcnow()))

    @property
    def registered(self) -> bool:
        return sorted(self.ua.registered) == sorted(self.numbers)

    def _km_events(self, events) -> None:
        for event in events:
            if isinstance(event, self._ckm.SendTo):
                self.sock.sendto(event.data, self.km_addr)
            elif isinstance(event, self._ckm.SaEstablished):
                first = self.sa is None
                self.sa = event
                if first:
                    self.ua.start(time.monotonic())

    def readable(self) -> None:
        from common.esp import NEXT_HEADER_UDP, EspError, parse_inner_udp

        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            now = time.monotonic()
            if addr == self.esp_addr:
                sa = self.sa
                if sa is None or int.from_bytes(data[:4], "big") != sa.cta_spi:
                    continue
                try:
                    next_header, inner = sa.inbound.unprotect(data)
                except EspError:
                    continue
                if next_header == NEXT_HEADER_UDP:
                    self.ua.receive(parse_inner_udp(inner)[2], now)
            else:
                self._km_events(self.km.receive(data, now, _utcnow()))

    def pump(self) -> None:
        from common.esp import NEXT_HEADER_UDP, inner_udp

        now = time.monotonic()
        self._km_events(self.km.handle_timer(now, _utcnow()))
        timer = self.agent.get_timer()
        if timer is not None and timer <= now:
            self.agent.handle_timer(now)
        if self.sa is not None:
            for data in self.agent.datagrams_to_send():
                packet = self.sa.outbound.protect(inner_udp(self.ua.local_port, _SIP_PORT, data), NEXT_HEADER_UDP)
                self.sock.sendto(packet, self.esp_addr)
        while (event := self.agent.next_event()) is not None:
            self.events.append(event)

    def close(self) -> None:
        self.sock.close()


def _loop_once(ctas: list[SimCta], wait: float = 0.005) -> None:
    ready, _, _ = select.select([c.sock for c in ctas], [], [], wait)
    for cta in ctas:
        if cta.sock in ready:
            cta.readable()
    for cta in ctas:
        cta.pump()


def _run_until(ctas: list[SimCta], predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise CallsBenchError(f"timed out waiting for {what}")
        _loop_once(ctas, 0.01)


# --- the calls ------------------------------------------------------------------------------------


@dataclass
class _Call:
    a_id: str
    placed: float
    ref: str | None = None
    keys_a: object = None
    established: bool = False
    setup_done: float | None = None
    a_ended: bool = False
    b_id: str | None = None
    b_ended: bool = False


class _CallDriver:
    """Places calls from A to B, B answering; tracks each call through setup and teardown."""

    def __init__(self, a: SimCta, b: SimCta, call_timeout: float) -> None:
        self.a, self.b = a, b
        self.call_timeout = call_timeout
        self.calls: dict[str, _Call] = {}  # by A's Call-ID
        self.by_ref: dict[str, _Call] = {}
        self.b_keys: dict[str, object] = {}  # call_ref -> B's CallKeysReady
        self.b_ref: dict[str, str] = {}  # B's Call-ID -> call_ref
        self.b_ended: set[str] = set()  # B Call-IDs that ended
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.completed = 0

    def place(self) -> None:
        now = time.monotonic()
        call_id = self.a.agent.place_call(self.b.numbers[0], SDP_A, now, line=self.a.numbers[0])
        self.calls[call_id] = _Call(call_id, now)

    def in_flight(self) -> int:
        return len(self.calls)

    def _process_events(self) -> None:
        from ctad.calls import CallEnded, CallEstablished, CallKeysReady, IncomingCall

        now = time.monotonic()
        b_events, self.b.events = self.b.events, []
        for event in b_events:
            if isinstance(event, IncomingCall):
                self.b.agent.answer(event.call_id, SDP_B, now)
            elif isinstance(event, CallKeysReady):
                self.b_keys[event.call_ref] = event
                self.b_ref[event.call_id] = event.call_ref
                call = self.by_ref.get(event.call_ref)
                if call is not None:
                    call.b_id = event.call_id
            elif isinstance(event, CallEnded):
                self.b_ended.add(event.call_id)
        a_events, self.a.events = self.a.events, []
        for event in a_events:
            call = self.calls.get(getattr(event, "call_id", ""))
            if call is None:
                continue
            if isinstance(event, CallKeysReady):
                call.ref, call.keys_a = event.call_ref, event
                self.by_ref[event.call_ref] = call
                call.b_id = next((b for b, r in self.b_ref.items() if r == event.call_ref), None)
            elif isinstance(event, CallEstablished):
                call.established = True
            elif isinstance(event, CallEnded):
                call.a_ended = True
                if call.setup_done is None:
                    self._fail(call, f"ended before setup: {event.reason} ({event.status})")

    def _keys_match(self, call: _Call) -> bool:
        keys_b = self.b_keys.get(call.ref)
        if keys_b is None:
            return False
        ka = call.keys_a
        ok = (ka.role == "A" and keys_b.role == "B" and ka.spi == keys_b.spi
              and ka.media_tx.libsrtp_key() == keys_b.media_rx.libsrtp_key()
              and ka.media_rx.libsrtp_key() == keys_b.media_tx.libsrtp_key()
              and ka.esp_out.enc_key == keys_b.esp_in.enc_key and ka.esp_in.enc_key == keys_b.esp_out.enc_key)
        if not ok:
            self._fail(call, "the two CTAs' call keys differ")
        return ok

    def _fail(self, call: _Call, reason: str) -> None:
        self.failures.append(f"{call.a_id}: {reason}")
        self.calls.pop(call.a_id, None)
        if call.ref:
            self.by_ref.pop(call.ref, None)
        with contextlib.suppress(Exception):
            self.a.agent.hangup(call.a_id, time.monotonic())

    def progress(self) -> None:
        self._process_events()
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.setup_done is None:
                if call.established and call.keys_a is not None and self._keys_match(call):
                    call.setup_done = now
                    self.latencies.append(now - call.placed)
                    self.a.agent.hangup(call.a_id, now)
                elif now - call.placed > self.call_timeout and call.a_id in self.calls:
                    self._fail(call, f"no setup within {self.call_timeout} s")
                continue
            if call.b_id is not None and call.b_id in self.b_ended:
                call.b_ended = True
            if call.a_ended and call.b_ended:
                self.completed += 1
                self.calls.pop(call.a_id, None)
                self.by_ref.pop(call.ref, None)
                self.b_keys.pop(call.ref, None)
                self.b_ref.pop(call.b_id, None)
                self.b_ended.discard(call.b_id)
            elif now - call.setup_done > self.call_timeout:
                self._fail(call, f"not torn down within {self.call_timeout} s")


def _run_calls(a: SimCta, b: SimCta, count: int, concurrency: int, call_timeout: float) -> _CallDriver:
    driver = _CallDriver(a, b, call_timeout)
    placed = 0
    while placed < count or driver.in_flight():
        while placed < count and driver.in_flight() < concurrency:
            driver.place()
            placed += 1
        for cta in (a, b):  # send what place/answer/hangup queued before waiting in select()
            cta.pump()
        _loop_once([a, b], 0.005)
        driver.progress()
    return driver


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class CallsBenchReport:
    calls: int
    concurrency: int
    cross_sc: bool
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    sc_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds in the window, per SC
    gen_cpu: float = 0.0
    register_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]

    def cpu_ms_per_call(self, sc: str) -> float:
        return 1000 * self.sc_cpu.get(sc, 0.0) / self.completed if self.completed else float("nan")


def run_calls_bench(calls: int = 200, concurrency: int = 1, cross_sc: bool = True, *, warmup: int = 2,
                    call_timeout: float = 10.0, directory: Path | None = None, progress=None) -> CallsBenchReport:
    """Run the whole benchmark (module docstring); `progress(text)` gets one line per step."""
    from kdcd.bench import _workdir, start_kdcd
    from kdcd.deployment import create_deployment

    if calls < 1 or concurrency < 1:
        raise ValueError("calls and concurrency must be at least 1")
    say = progress or (lambda text: None)
    report = CallsBenchReport(calls, concurrency, cross_sc)
    with _workdir(directory) as work, contextlib.ExitStack() as stack:
        say("building the deployment")
        deployment = create_deployment(work / "realm", cta_scs={"cta2": "sc2"} if cross_sc else None)
        say("starting kdcd")
        kdc = start_kdcd(deployment, workers=1)
        stack.callback(kdc.stop)
        scs = {sc.name: sc for sc in deployment.scs}
        procs: dict[str, ScdProcess] = {}
        for name in ("sc1", "sc2"):
            say(f"starting scd {name}")
            procs[name] = start_scd(scs[name], work)
            stack.callback(procs[name].stop)
        for proc in procs.values():
            proc.wait_event("ready", 30)
        if cross_sc:
            for proc in procs.values():
                proc.wait_event("peer link up", 30)
        ctas = {c.name: c for c in deployment.ctas}
        say("PKINIT, AP exchange and REGISTER for cta1 and cta2")
        started = time.monotonic()
        a = SimCta(deployment, ctas["cta1"], scs["sc1"])
        stack.callback(a.close)
        b = SimCta(deployment, ctas["cta2"], scs["sc2" if cross_sc else "sc1"])
        stack.callback(b.close)
        _run_until([a, b], lambda: a.registered and b.registered, 20, "both CTAs to register")
        report.register_seconds = time.monotonic() - started
        if warmup:
            say(f"{warmup} warm-up calls")
            driver = _run_calls(a, b, warmup, 1, call_timeout)
            if driver.failures:
                raise CallsBenchError("warm-up call failed: " + "; ".join(driver.failures[:3]))
        say(f"{calls} calls, {concurrency} at a time ({'cross-SC' if cross_sc else 'same SC'})")
        cpu_before = {name: p.cpu() for name, p in procs.items()}
        gen_before = time.process_time()
        t0 = time.perf_counter()
        driver = _run_calls(a, b, calls, concurrency, call_timeout)
        report.seconds = time.perf_counter() - t0
        report.gen_cpu = time.process_time() - gen_before
        report.sc_cpu = {name: p.cpu() - cpu_before[name] for name, p in procs.items()}
        report.completed = driver.completed
        report.failures = driver.failures
        report.latencies = driver.latencies
    return report


def format_calls_report(report: CallsBenchReport) -> str:
    mode = "cross-SC (cta1 -> sc1 -> sc2 -> cta2)" if report.cross_sc else "same SC (cta1 -> sc1 -> cta2)"
    per_call = (lambda s: f"{1000 * s / report.completed:.2f}") if report.completed else (lambda s: "-")
    lines = [
        f"kerbtel bench calls: {mode}, {report.calls} calls, concurrency {report.concurrency}",
        f"(PKINIT + AP exchange + REGISTER of both CTAs took {report.register_seconds:.2f} s, not measured)",
        "",
        f"{'calls':>6} {'ok':>5} {'failed':>6} {'seconds':>8} {'setups/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'sc1 CPU ms/call':>16} {'sc2 CPU ms/call':>16} {'CTAs CPU ms/call':>17}",
        f"{report.calls:>6} {report.completed:>5} {len(report.failures):>6} {report.seconds:>8.2f} {report.rate:>9.1f}"
        f" {1000 * report.percentile(50):>8.2f} {1000 * report.percentile(99):>8.2f}"
        f" {per_call(report.sc_cpu.get('sc1', 0.0)):>16} {per_call(report.sc_cpu.get('sc2', 0.0)):>16}"
        f" {per_call(report.gen_cpu):>17}",
        "",
        "setups/s: completed calls over the window from the first INVITE to the last call torn down (BYE"
        " included); latency: INVITE placed -> 200 at A with both CTAs' keys matching.",
    ]
    for failure in report.failures[:5]:
        lines.append(f"failed: {failure}")
    return "\n".join(lines)
