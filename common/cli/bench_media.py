"""`kerbtel bench media [--packets N] [--suite NAME[:BACKEND] ...] [--loop uvloop|asyncio ...]
[--window W]`: packets per second through a CTA's media path, against a plain-UDP relay.

A relay process runs one `ctad.media.MediaSession` (role A) on loopback, on uvloop and on the
default asyncio loop in turn. This process plays the softphone and the remote CTA with two
blocking sockets and drives the two directions one after the other: line RTP in -> SRTP out
("encrypt"), then SRTP in -> RTP out ("decrypt"), PCMU-sized packets (12-byte header + 160),
at most W packets in flight. Per suite and backend it prints packets/s, the relay process's CPU
microseconds per packet, and both as a ratio to the baseline measured in the same run: the same
MediaSession forwarding without any crypto (`MediaRelay.plaintext_baseline`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

__all__ = ["BenchResult", "DEFAULT_SUITES", "format_table", "parse_suite", "register", "run_media_bench"]

BASELINE = "baseline"
DEFAULT_SUITES = (
    BASELINE,
    "AES_CM_128_HMAC_SHA1_80:libsrtp",
    "AES_CM_128_HMAC_SHA1_80:python",
    "AEAD_AES_128_GCM:libsrtp",
    "AEAD_AES_128_GCM:python",
    "3DES_CBC_SEED:python",
)
DIRECTIONS = ("encrypt", "decrypt")
DIRECTION_TEXT = {"encrypt": "line RTP -> SRTP", "decrypt": "SRTP -> line RTP"}
_SUBKEY = bytes(range(32))  # fixed, public: benchmark keys only
_SPI = 0x0BE4C4
_SSRC = 0x5EED5EED
_PAYLOAD = bytes((i * 37) & 0xFF for i in range(160))
HOST = "127.0.0.1"


@dataclass(frozen=True)
class BenchResult:
    loop: str
    suite: str          # "baseline" or "PROFILE:BACKEND"
    direction: str      # "encrypt" | "decrypt"
    packets: int        # measured packets that came out of the relay
    lost: int
    seconds: float
    relay_cpu: float    # seconds of relay-process CPU during the measurement

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.relay_cpu / self.packets * 1e6 if self.packets else float("nan")


def parse_suite(text: str) -> tuple[str, str | None]:
    """"baseline", "PROFILE" or "PROFILE:BACKEND" -> (profile, backend or None)."""
    from common.srtp import LEGACY_3DES, PROFILES

    if text == BASELINE:
        return BASELINE, None
    profile, _, backend = text.partition(":")
    if profile not in PROFILES and profile != LEGACY_3DES:
        raise ValueError(f"unknown suite {text!r} (profiles: {', '.join([*PROFILES, LEGACY_3DES])})")
    if backend not in ("", "python", "libsrtp"):
        raise ValueError(f"unknown backend {backend!r} in {text!r} (python or libsrtp)")
    if profile == LEGACY_3DES and backend == "libsrtp":
        raise ValueError("3DES_CBC_SEED has no libsrtp backend")
    return profile, backend or None


# --------------------------------------------------------------------------------------------
# The relay process: `python -m common.cli.bench_media --worker LOOP`, JSON lines on stdin/stdout


async def _worker(stdin, stdout) -> None:
    from ctad.media import MediaRelay, MediaSession
    from common.srtp import derive_media_keys

    loop = asyncio.get_running_loop()
    session: MediaSession | None = None

    def reply(obj) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    reply({"ready": type(loop).__module__.split(".")[0]})
    while True:
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "setup":
            line_peer, network_peer = tuple(cmd["line_peer"]), tuple(cmd["network_peer"])
            if cmd["profile"] == BASELINE:
                relay = MediaRelay.plaintext_baseline("bench", line_peer=line_peer, network_peer=network_peer)
            else:
                keys = derive_media_keys(bytes.fromhex(cmd["subkey"]), cmd["profile"], cmd["spi"])
                relay = MediaRelay("bench", "A", keys, backend=cmd["backend"], line_peer=line_peer,
                                   network_peer=network_peer)
            session = MediaSession(relay, line_host=HOST, network_host=HOST)
            await session.start()
            reply({"line": session.line_address, "network": session.network_address, "backend": relay.backend})
        elif op == "cpu":
            reply({"cpu": time.process_time()})
        elif op == "teardown":
            stats = session.stats() if session is not None else {}
            if session is not None:
                await session.stop()
            session = None
            reply({"stats": stats})
        elif op == "exit":
            break


def _worker_main(loop_name: str) -> int:
    from common.logsetup import configure_logging

    configure_logging("warning", "json", stream=sys.stderr)  # stdout carries the JSON protocol
    factory = None
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_worker(sys.stdin, sys.stdout))
    return 0


class _Relay:
    """The parent's handle on one relay process."""

    def __init__(self, loop_name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "common.cli.bench_media", "--worker", loop_name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_repo_root(),
            env={**os.environ, "PYTHONPATH": _repo_root() + os.pathsep + os.environ.get("PYTHONPATH", "")},
        )
        self.loop = self.call(None)["ready"]

    def call(self, cmd: dict | None) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench relay process exited (code {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------------------------
# The load: this process as the softphone and the remote CTA


def _rtp_packets(count: int) -> list[bytes]:
    return [bytes([0x80, 0, (i >> 8) & 0xFF, i & 0xFF]) + ((160 * i) & 0xFFFFFFFF).to_bytes(4, "big")
            + _SSRC.to_bytes(4, "big") + _PAYLOAD for i in range(count)]


def _network_packets(profile: str, backend: str | None, count: int) -> list[bytes]:
    """What the remote CTA (role B) sends: its B-to-A protection of the RTP packets."""
    from common.rtp_3des import Legacy3desTx
    from common.srtp import LEGACY_3DES, SrtpTx, derive_media_keys

    rtp = _rtp_packets(count)
    if profile == BASELINE:
        return rtp
    keys = derive_media_keys(_SUBKEY, profile, _SPI)
    if profile == LEGACY_3DES:
        tx = Legacy3desTx(keys.b_to_a.master_key, keys.b_to_a.master_salt)
    else:
        tx = SrtpTx(profile, keys.b_to_a.master_key, keys.b_to_a.master_salt, backend="python")
    return [tx.protect(p) for p in rtp]


def _blast(sender: socket.socket, destination, receiver: socket.socket, packets: list[bytes], window: int) -> tuple[int, int]:
    """Send `packets` keeping at most `window` in flight; (received, lost)."""
    sent = received = lost = 0
    total = len(packets)
    send, recv = sender.sendto, receiver.recv
    while received + lost < total:
        while sent < total and sent - received - lost < window:
            send(packets[sent], destination)
            sent += 1
        try:
            recv(4096)
            received += 1
        except socket.timeout:
            lost += sent - received - lost  # the relay dropped them (or the kernel did): count and go on
    return received, lost


def run_media_bench(*, packets: int = 20000, suites: tuple[str, ...] = DEFAULT_SUITES,
                    loops: tuple[str, ...] = ("uvloop", "asyncio"), window: int = 32, warmup: int = 500,
                    progress=None) -> list[BenchResult]:
    """Every (loop, suite, direction), baseline first in each loop; see the module doc."""
    from common.srtp import libsrtp_available

    wanted = [s for s in suites if s != BASELINE]
    if not libsrtp_available():
        skipped = [s for s in wanted if s.endswith(":libsrtp")]
        if skipped and progress:
            progress(f"pylibsrtp not installed: skipping {', '.join(skipped)}")
        wanted = [s for s in wanted if not s.endswith(":libsrtp")]
    for s in wanted:
        parse_suite(s)
    order = [BASELINE, *wanted]
    total = warmup + packets
    results: list[BenchResult] = []
    for loop_name in loops:
        if loop_name == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                if progress:
                    progress("uvloop not installed: skipping it")
                continue
        relay = _Relay(loop_name)
        try:
            for suite in order:
                profile, backend = parse_suite(suite)
                plain = _rtp_packets(total)
                protected = _network_packets(profile, backend, total)
                phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                cta = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    for s in (phone, cta):
                        s.bind((HOST, 0))
                        s.settimeout(1.0)
                    setup = relay.call({"op": "setup", "profile": profile, "backend": backend, "subkey": _SUBKEY.hex(),
                                        "spi": _SPI, "line_peer": phone.getsockname(), "network_peer": cta.getsockname()})
                    line, network = tuple(setup["line"]), tuple(setup["network"])
                    name = BASELINE if profile == BASELINE else f"{profile}:{setup['backend']}"
                    for direction in DIRECTIONS:
                        if progress:
                            progress(f"{relay.loop} {name} {direction}")
                        if direction == "encrypt":
                            src, dst, sink, data = phone, line, cta, plain
                        else:
                            src, dst, sink, data = cta, network, phone, protected
                        _blast(src, dst, sink, data[:warmup], window)
                        cpu0 = relay.call({"op": "cpu"})["cpu"]
                        t0 = time.perf_counter()
                        received, lost = _blast(src, dst, sink, data[warmup:], window)
                        seconds = time.perf_counter() - t0
                        cpu1 = relay.call({"op": "cpu"})["cpu"]
                        results.append(BenchResult(relay.loop, name, direction, received, lost, seconds, cpu1 - cpu0))
                    relay.call({"op": "teardown"})
                finally:
                    phone.close()
                    cta.close()
        finally:
            relay.close()
    return results


def format_table(results: list[BenchResult]) -> str:
    base = {(r.loop, r.direction): r for r in results if r.suite == BASELINE}
    head = (f"{'loop':8} {'direction':17} {'suite':32} {'packets/s':>10} {'x base':>7} "
            f"{'relay CPU µs/pkt':>17} {'x base':>7} {'lost':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        b = base.get((r.loop, r.direction))
        pps_ratio = f"{r.pps / b.pps:.2f}" if b and b.pps else "-"
        cpu_ratio = f"{r.cpu_us / b.cpu_us:.2f}" if b and b.cpu_us else "-"
        suite = "plain UDP relay (baseline)" if r.suite == BASELINE else r.suite
        lines.append(f"{r.loop:8} {DIRECTION_TEXT[r.direction]:17} {suite:32} {r.pps:10,.0f} {pps_ratio:>7} "
                     f"{r.cpu_us:17.1f} {cpu_ratio:>7} {r.lost:5}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI


def _cmd_media(args: argparse.Namespace) -> int:
    from common.cli import CliError

    suites = tuple(dict.fromkeys(args.suite or DEFAULT_SUITES))
    try:
        for s in suites:
            parse_suite(s)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    loops = tuple(dict.fromkeys(args.loop or ("uvloop", "asyncio")))
    progress = (lambda text: print(f"... {text}", file=sys.stderr, flush=True)) if not args.quiet else None
    results = run_media_bench(packets=args.packets, suites=suites, loops=loops, window=args.window,
                              warmup=args.warmup, progress=progress)
    print(f"kerbtel bench media: {args.packets} packets per row (after {args.warmup} warm-up), PCMU 172-byte RTP, "
          f"window {args.window}, loopback, relay in its own process")
    print(format_table(results))
    return 1 if not results or any(r.packets == 0 for r in results) else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(sub) -> None:
    media = sub.add_parser("media", help="CTA media path packets/s per suite vs a plain-UDP relay",
                           description=__doc__.split("\n\n")[0])
    media.add_argument("--packets", type=_positive, default=20000, help="measured packets per row (default 20000)")
    media.add_argument("--warmup", type=int, default=500, help="packets sent before measuring (default 500)")
    media.add_argument("--suite", action="append", metavar="NAME[:BACKEND]",
                       help=f"a suite (repeatable; default: {', '.join(DEFAULT_SUITES)}); the baseline always runs")
    media.add_argument("--loop", action="append", choices=("uvloop", "asyncio"),
                       help="event loop of the relay (repeatable; default both)")
    media.add_argument("--window", type=_positive, default=32, help="packets in flight (default 32)")
    media.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    media.set_defaults(func=_cmd_media)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    sys.exit("usage: python -m common.cli.bench_media --worker uvloop|asyncio (kerbtel bench media runs it)")
