"""Run baresip 1.0.0 (Debian) headless as a softphone on a CTA's line side (demo and tests).

    phone = Baresip(BaresipConfig(directory=tmp / "a", user="1000", tone_hz=1000,
                                  line="127.0.0.1:5062"))   # registrar/outbound proxy, optional
    phone.start()                         # writes the config dir, spawns baresip
    await phone.connect()                 # ctrl_tcp client
    await phone.dial("sip:1001@127.0.0.1:5062")
    await phone.wait_event("CALL_ESTABLISHED", timeout=5)
    ...; await phone.hangup(); await phone.wait_event("CALL_CLOSED")
    await phone.aclose()                  # quit over ctrl_tcp, then terminate/kill, always reaped
    phone.recording()                     # the newest snd_path/dump-*-dec.wav (received audio)

The configuration follows the tested recipe (`../shared/peers.md`): `net_interface 127.0.0.1`
(the name `lo` fails), `aufile` as the audio source playing a generated tone WAV longer than any
call (a call ends when the source file ends), `sndfile` recording the decoded received audio into
`snd_path`, no `alsa.so` (a null ALSA device spins a core), `g711` only, `ctrl_tcp` on a free
port. The account answers automatically and does not register unless asked (`register=True`
registers with `line`; then wait for REGISTER_OK before dialing).

ctrl_tcp speaks netstrings `LEN:JSON,`. Commands are `{"command": ..., "params": ..., "token":
...}` answered by `{"response": true, "ok": ..., "data": ..., "token": ...}`; events are
`{"event": true, "type": "CALL_ESTABLISHED", ...}`. Events are kept in order so a test can wait
for one that already arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from common import ports
from common.audio import tone, write_wav

__all__ = ["Baresip", "BaresipConfig", "BaresipError", "free_port", "free_sip_port", "netstring", "NetstringDecoder"]

MODULE_PATH = "/usr/lib/baresip/modules"


class BaresipError(Exception):
    pass


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_DGRAM) -> int:
    """A port free on both UDP and TCP (baresip listens on both for SIP); see common.ports."""
    return ports.free_port(host)


def free_sip_port(host: str = "127.0.0.1") -> int:
    """A port for baresip's `sip_listen`: baresip binds SIP on UDP and TCP at the port and, always
    in 1.0 (no way to turn it off), SIP/TLS on TCP at port + 1; all three must be free."""
    for _ in range(200):
        port = free_port(host)
        if ports.bindable(host, port + 1, ("tcp",)):
            return port
    raise BaresipError("no free port pair for SIP and SIP/TLS")


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class NetstringDecoder:
    """Incremental netstring decoder: `feed(data)` returns the complete payloads."""

    MAX = 1 << 20

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                if len(self._buf) > 10:
                    raise BaresipError(f"netstring: no length in {self._buf[:20]!r}")
                return out
            head = self._buf[:colon]
            if not head.isdigit() or len(head) > 9:
                raise BaresipError(f"netstring: bad length {head[:20]!r}")
            size = int(head)
            if size > self.MAX:
                raise BaresipError(f"netstring: {size} bytes is too long")
            end = colon + 1 + size
            if len(self._buf) < end + 1:
                return out
            if self._buf[end:end + 1] != b",":
                raise BaresipError("netstring: missing ','")
            out.append(self._buf[colon + 1:end])
            self._buf = self._buf[end + 1:]


@dataclass
class BaresipConfig:
    directory: Path                  # the instance's config dir (created)
    user: str = "1000"               # the account's user part (the line's number)
    host: str = "127.0.0.1"
    sip_port: int = 0                # 0: a free port
    ctrl_port: int = 0               # 0: a free port
    rtp_ports: tuple[int, int] | None = None   # None: 100 ports from a free-looking base
    tone_hz: float = 1000.0
    tone_amplitude: float = 0.5
    tone_seconds: float = 60.0       # longer than any call: the call ends when the file ends
    source_wav: Path | None = None   # play this instead of a generated tone
    line: str | None = None          # "HOST:PORT" of the line side (registrar / outbound proxy)
    register: bool = False           # register with `line` (regint=60) instead of regint=0
    outbound: bool = False           # route every request via `line` (outbound proxy, adds Route)
    codecs: str = "pcmu"             # audio_codecs account parameter, e.g. "pcmu,pcma"
    answermode: str = "auto"
    mediaenc: str | None = None      # e.g. "srtp" (SDES, best effort) or "srtp-mand" (RTP/SAVP)
    sip_trace: bool = False          # baresip -s (SIP messages into the log)
    executable: str = "baresip"


class Baresip:
    def __init__(self, config: BaresipConfig) -> None:
        self.config = config
        self.dir = Path(config.directory).resolve()
        self.rec_dir = self.dir / "rec"
        self.log_path = self.dir / "baresip.log"
        self.sip_port = config.sip_port
        self.ctrl_port = config.ctrl_port
        self.proc: subprocess.Popen | None = None
        self.events: list[dict] = []
        self._log_fh = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task | None = None
        self._responses: dict[str, asyncio.Future] = {}
        self._event_added: asyncio.Event | None = None
        self._tokens = itertools.count(1)

    # -- addresses ------------------------------------------------------------------------

    @property
    def aor(self) -> str:
        """The account's SIP URI (what another phone dials to reach this one directly)."""
        return f"sip:{self.config.user}@{self.config.host}:{self.sip_port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.config.host, self.sip_port

    # -- configuration --------------------------------------------------------------------

    def write_config(self) -> None:
        c = self.config
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(exist_ok=True)
        if not self.sip_port:
            self.sip_port = free_sip_port(c.host)
        if not self.ctrl_port:
            self.ctrl_port = free_port(c.host, socket.SOCK_STREAM)
        if c.source_wav is not None:
            source = Path(c.source_wav).resolve()
        else:
            source = self.dir / f"tone-{c.tone_hz:g}.wav"
            write_wav(source, tone(c.tone_hz, c.tone_seconds, c.tone_amplitude))
        low, high = c.rtp_ports or _rtp_range()
        lines = [
            "poll_method\tepoll",
            f"sip_listen\t{c.host}:{self.sip_port}",
            f"net_interface\t{c.host}",
            f"audio_source\taufile,{source}",
            f"rtp_ports\t{low}-{high}",
            "rtcp_mux\tno",
            f"module_path\t{MODULE_PATH}",
            "module\tg711.so",
            "module\taufile.so",
            "module\tsndfile.so",
            "module\tctrl_tcp.so",
            *(["module\tsrtp.so"] if c.mediaenc else []),
            "module_tmp\tuuid.so",
            "module_tmp\taccount.so",
            "module_app\tmenu.so",
            f"snd_path\t{self.rec_dir}",
            f"ctrl_tcp_listen\t{c.host}:{self.ctrl_port}",
        ]
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        (self.dir / "accounts").write_text(self.account_line() + "\n")

    def account_line(self) -> str:
        c = self.config
        params = [f"answermode={c.answermode}", f"audio_codecs={c.codecs}"]
        if c.mediaenc:
            params.append(f"mediaenc={c.mediaenc}")
        if c.register:
            if not c.line:
                raise BaresipError("register=True needs line=HOST:PORT")
            aor = f"<sip:{c.user}@{c.line}>"
            params.insert(0, "regint=60")
        else:
            aor = f"<sip:{c.user}@{c.host}:{self.sip_port}>"
            params.insert(0, "regint=0")
        if c.line and c.outbound:
            # Every request via the line side, with a Route: <sip:H:P;lr> the line side must strip.
            params.append(f'outbound="sip:{c.line}"')
        return aor + ";" + ";".join(params)

    # -- process --------------------------------------------------------------------------

    def start(self) -> None:
        if shutil.which(self.config.executable) is None:
            raise BaresipError(f"{self.config.executable} is not installed (apt-get install baresip)")
        self.write_config()
        args = [self.config.executable, "-f", str(self.dir)]
        if self.config.sip_trace:
            args.append("-s")
        self._log_fh = open(self.log_path, "ab")
        # stdin stays an open pipe: the menu's stdio UI must not see EOF.
        self.proc = subprocess.Popen(args, cwd=self.dir, stdin=subprocess.PIPE, stdout=self._log_fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect to ctrl_tcp (retrying while baresip starts up)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise BaresipError(f"baresip exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            try:
                self._reader, self._writer = await asyncio.open_connection(self.config.host, self.ctrl_port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"ctrl_tcp {self.ctrl_port} did not open in {timeout} s:\n"
                                       f"{self.log()[-2000:]}") from None
                await asyncio.sleep(0.05)
        self._event_added = asyncio.Event()
        self._read_task = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self._reader is not None and self._event_added is not None
        decoder = NetstringDecoder()
        try:
            while data := await self._reader.read(65536):
                for payload in decoder.feed(data):
                    try:
                        msg = json.loads(payload)
                    except ValueError:
                        continue
                    if msg.get("event"):
                        msg["_received"] = time.monotonic()
                        self.events.append(msg)
                        self._event_added.set()
                    elif msg.get("response"):
                        fut = self._responses.pop(str(msg.get("token")), None)
                        if fut is not None and not fut.done():
                            fut.set_result(msg)
        except (OSError, BaresipError):
            pass
        finally:
            for fut in self._responses.values():
                if not fut.done():
                    fut.set_exception(BaresipError("ctrl_tcp connection closed"))
            self._event_added.set()

    async def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> dict:
        if self._writer is None:
            raise BaresipError("not connected (call connect() first)")
        token = f"k{next(self._tokens)}"
        body: dict = {"command": command, "token": token}
        if params is not None:
            body["params"] = params
        fut = asyncio.get_running_loop().create_future()
        self._responses[token] = fut
        self._writer.write(netstring(json.dumps(body).encode()))
        await self._writer.drain()
        return await asyncio.wait_for(fut, timeout)

    async def dial(self, uri: str) -> dict:
        return await self.command("dial", uri)

    async def hangup(self) -> dict:
        return await self.command("hangup")

    async def wait_event(self, kind: str, timeout: float = 10.0, *, after: int = 0) -> dict:
        """The first event of type `kind` at index >= `after` in `self.events` (waiting for it)."""
        assert self._event_added is not None, "not connected"
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[after:]:
                if event.get("type") == kind:
                    return event
            if self._read_task is not None and self._read_task.done():
                raise BaresipError(f"ctrl_tcp closed before {kind}; events: {self.event_types()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BaresipError(f"no {kind} within {timeout} s; events: {self.event_types()}\n"
                                   f"{self.log()[-1500:]}")
            self._event_added.clear()
            try:
                await asyncio.wait_for(self._event_added.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    async def aclose(self, timeout: float = 3.0) -> int | None:
        """Quit (BYE for a live call), then terminate/kill; the process is always reaped."""
        try:
            if self._writer is not None and self.proc is not None and self.proc.poll() is None:
                try:
                    await asyncio.wait_for(self.command("quit", timeout=timeout), timeout)
                except (BaresipError, OSError, asyncio.TimeoutError):
                    pass
                await _wait_exit(self.proc, timeout)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._read_task is not None:
                self._read_task.cancel()
                try:
                    await self._read_task
                except (asyncio.CancelledError, Exception):
                    pass
                self._read_task = None
            self.stop()
        return self.proc.returncode if self.proc else None

    def stop(self, timeout: float = 3.0) -> None:
        """Synchronous last resort: SIGTERM, then SIGKILL; always waits for the process."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    # -- recordings -----------------------------------------------------------------------

    def recordings(self) -> list[Path]:
        """Received-audio dumps (sndfile's dump-<time>-dec.wav), oldest first."""
        return sorted(self.rec_dir.glob("dump-*-dec.wav"), key=lambda p: (p.stat().st_mtime, p.name))

    def recording(self) -> Path:
        files = self.recordings()
        if not files:
            raise BaresipError(f"no dump-*-dec.wav in {self.rec_dir}: {os.listdir(self.rec_dir)}")
        return files[-1]


async def _wait_exit(proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _rtp_range() -> tuple[int, int]:
    """100 UDP ports free right now (baresip picks its RTP ports within them)."""
    base = ports.free_port_block(100, kinds=("udp",), even=True)
    return base, base + 99
