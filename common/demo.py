"""`kerbtel demo`: one secure call through a whole loopback deployment, with a short report.

    from common.demo import DemoOptions, run_demo
    exit_code = run_demo(DemoOptions(directory=None, softphone="auto"))

What it does, each step named in the output when it fails:

1. **init** -- `kerbtel init --key-log` (kdcd/deployment.py) in a temporary directory (or
   `directory`), then cta2 is moved onto sc2 (sc1 owns cta1's number and routes cta2's to sc2,
   sc2 the other way round), so the call crosses the SC-to-SC link: cta1 -> sc1 -> sc2 -> cta2.
2. **kdcd**, **sc1**, **sc2**, **cta1**, **cta2** -- each a separate process
   (`python -m kdcd|scd|ctad -c CONFIG --log-format json`, log in DIR/logs/NAME.log), waited for
   on its log: `ready`, then `peer link up` on both SCs, then every CTA `registered` with its SC
   and its `line side` open.
3. **capture** -- when tshark is installed and we are root: `tshark -i lo` on the deployment's
   KDC port and every other UDP port except the line sides (softphone <-> CTA on loopback, plain
   RTP by design), into DIR/demo.pcap, waited for until it is live.
4. **softphones** -- two baresip instances (ctad/baresip.py) registering on the CTAs' line sides
   when baresip is installed, else the built-in softphone (ctad/softphone.py); A sends 1000 Hz,
   B 1500 Hz.
5. **call** -- A dials B's number on cta1's line side; both ends answer, ~3 s of audio, A hangs
   up, both ends see the call close.
6. **audio** -- `common.audio.ToneCheck`: 1000 Hz at B, 1500 Hz at A (frequency, RMS).
7. **counters** -- the CTAs' `media stopped` lines (SRTP packets encrypted/decrypted) and every
   daemon's status line (SIGHUP makes it log one).
8. **decrypt** -- with a capture: the options of `kerbtel keys wireshark DIR` applied to it; the
   ESP between CTAs and SCs and between the SCs must decrypt with good ICVs and show SIP.

The report lists the tickets (per CTA: client, service, enctype, PKINIT mode), the SAs and their
suites (CTA-SC, SC-SC, the per-call CTA-CTA ESP suite and SRTP profile), the call set-up time
(INVITE to 200 at phone A), packets (and, with a capture, bytes) encrypted, the audio verdicts
and the tshark command line that decrypts the capture.

Every process started here is stopped in a `finally` by its own handle (SIGTERM, then SIGKILL),
also on Ctrl-C. The directory is kept when a step failed, with `keep`, or when it holds a
capture (the report points into it); else a temporary directory is removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from common.daemon import stop_process
from common.ports import free_port_block

__all__ = ["DemoFailed", "DemoOptions", "run_demo"]

TONE_A, TONE_B = 1000.0, 1500.0
CROSS_SC = {"cta2": "sc2"}  # cta2 on sc2: the call crosses the SC-to-SC link


class DemoFailed(Exception):
    def __init__(self, step: str, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.log = log


@dataclass
class DemoOptions:
    directory: Path | None = None        # None: a temporary directory
    keep: bool = False
    softphone: str = "auto"              # auto | baresip | builtin
    capture: str = "auto"                # auto (root and tshark) | off
    talk: float = 3.0                    # seconds of audio each way
    timeout: float = 30.0                # per waiting step
    out: TextIO = field(default_factory=lambda: sys.stdout)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _free_udp_block(count: int, host: str = "127.0.0.1") -> int:
    """The first port of `count` consecutive UDP ports free right now (even base)."""
    return free_port_block(count, host, ("udp",), even=True)


# --------------------------------------------------------------------------------------------
# Processes


class _Proc:
    def __init__(self, name: str, popen: subprocess.Popen, log: Path) -> None:
        self.name, self.popen, self.log = name, popen, log

    def records(self) -> list[dict]:
        out = []
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def find(self, predicate: Callable[[dict], bool]) -> dict | None:
        return next((r for r in self.records() if predicate(r)), None)

    def wait(self, step: str, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            record = self.find(predicate)
            if record is not None:
                return record
            if self.popen.poll() is not None:
                raise DemoFailed(step, f"{self.name} exited with {self.popen.returncode} before {what}", self.log)
            if time.monotonic() > deadline:
                raise DemoFailed(step, f"{self.name}: no {what} within {timeout:g} s", self.log)
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.popen)

    def tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class _Capture:
    def __init__(self, path: Path, bpf: str, timeout: float) -> None:
        self.path, self.bpf = path, bpf
        self.command = ["tshark", "-i", "lo", "-f", bpf, "-w", str(path)]
        self.stderr_path = path.with_suffix(".tshark.log")
        self._err = open(self.stderr_path, "w+")
        self.popen = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=self._err)
        deadline = time.monotonic() + timeout
        while "Capturing on" not in self.stderr_path.read_text(errors="replace"):
            if self.popen.poll() is not None:
                raise DemoFailed("capture", f"tshark exited {self.popen.returncode}: "
                                 f"{self.stderr_path.read_text(errors='replace').strip()}", self.stderr_path)
            if time.monotonic() > deadline:
                raise DemoFailed("capture", f"tshark not capturing within {timeout:g} s", self.stderr_path)
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            time.sleep(0.3)  # the last packets
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._err.close()


# --------------------------------------------------------------------------------------------
# The demo


@dataclass
class _Result:
    setup_ms: float = 0.0
    talked: float = 0.0
    hung_up_by: str = "A"
    at_b: object = None   # ToneVerdict of A's tone at B
    at_a: object = None
    phone_kind: str = ""
    notes: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.opt = options
        self.out = options.out
        self.temporary = options.directory is None
        self.dir = Path(options.directory or tempfile.mkdtemp(prefix="kerbtel-demo-")).absolute()
        self.procs: dict[str, _Proc] = {}
        self.capture: _Capture | None = None
        self.capture_skipped = ""
        self.manifest: dict = {}
        self.result = _Result()
        self.step = "init"
        self.timings: dict[str, float] = {}

    # -- output ---------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        self.say(f"  .. {text}")

    # -- entry point ----------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        failed: DemoFailed | None = None
        interrupted = False
        self.say(f"kerbtel demo: a secure call through kdcd, sc1, sc2, cta1 and cta2 on loopback ({self.dir})")
        try:
            self._run_steps()
        except DemoFailed as exc:
            failed = exc
        except KeyboardInterrupt:
            interrupted = True
        except Exception as exc:  # noqa: BLE001 - any surprise is a failed step, reported as such
            failed = DemoFailed(self.step, f"{type(exc).__name__}: {exc}")
        finally:
            self._stop_all()
        elapsed = time.monotonic() - started
        if interrupted:
            self.say(f"\ninterrupted during step {self.step!r}; every process stopped; directory kept: {self.dir}")
            return 130
        if failed is None:
            try:
                self.step = "decrypt"
                self._decrypt_check()
            except DemoFailed as exc:
                failed = exc
        if failed is not None:
            self._report_failure(failed)
            return 1
        self._report(elapsed)
        keep = self.opt.keep or self.capture is not None or not self.temporary
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return 0

    def _run_steps(self) -> None:
        t = time.monotonic()
        self._init()
        self.timings["init"] = time.monotonic() - t
        t = time.monotonic()
        self._start_daemons()
        self.timings["daemons"] = time.monotonic() - t
        t = time.monotonic()
        self.step = "call"
        asyncio.run(self._call())
        self.timings["call"] = time.monotonic() - t
        self.step = "counters"
        self._collect_counters()

    # -- steps ----------------------------------------------------------------------------

    def _init(self) -> None:
        from kdcd import deployment as kdep

        self.step = "init"
        self.progress("kerbtel init --key-log (PKI, KDC database, SC keytabs, CTA identities)")
        # cta2 on sc2, so that the call crosses the SC-to-SC link.
        kdep.create_deployment(self.dir, realm="EXAMPLE.TEST", key_log=True, force=not self.temporary, cta_scs=CROSS_SC)
        self.manifest = kdep.load_manifest(self.dir)
        for stale in ("logs", "phones"):  # a re-used --dir: the log lines of an earlier run must not count
            shutil.rmtree(self.dir / stale, ignore_errors=True)
        (self.dir / "logs").mkdir()

    def sc(self, name: str) -> dict:
        return next(s for s in self.manifest["scs"] if s["name"] == name)

    def cta(self, name: str) -> dict:
        return next(c for c in self.manifest["ctas"] if c["name"] == name)

    def _spawn(self, name: str, module: str, config: str, level: str = "info") -> _Proc:
        log = self.dir / "logs" / f"{name}.log"
        with open(log, "wb") as fh:
            popen = subprocess.Popen([sys.executable, "-m", module, "-c", config, "--log-format", "json",
                                      "--log-level", level], stdin=subprocess.DEVNULL, stdout=fh,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        proc = self.procs[name] = _Proc(name, popen, log)
        return proc

    def _start_daemons(self) -> None:
        timeout = self.opt.timeout
        self.step = "kdcd"
        self.progress(f"kdcd on {self.manifest['kdc']['tcp']}")
        kdc = self._spawn("kdcd", "kdcd", self.manifest["kdc"]["config"])
        kdc.wait("kdcd", lambda r: r.get("event") == "ready", timeout, "ready line")
        self.step = "capture"
        self._start_capture()
        for name in ("sc1", "sc2"):
            self.step = name
            sc = self.sc(name)
            self.progress(f"scd {name} (km {sc['km']}, esp {sc['esp']})")
            self._spawn(name, "scd", sc["config"])
        for name in ("sc1", "sc2"):
            self.step = name
            self.procs[name].wait(name, lambda r: r.get("event") == "ready", timeout, "ready line")
        for name in ("sc1", "sc2"):
            self.step = name
            self.procs[name].wait(name, lambda r: r.get("event") == "peer link up", timeout, "SC-to-SC link")
        for name in ("cta1", "cta2"):
            self.step = name
            cta = self.cta(name)
            self.progress(f"ctad {name} ({cta['numbers'][0]} on {cta['sc']}, line side {cta['line']})")
            self._spawn(name, "ctad", cta["config"])
        for name in ("cta1", "cta2"):
            self.step = name
            cta, proc = self.cta(name), self.procs[name]
            proc.wait(name, lambda r: r.get("event") == "line side", timeout, "line side")
            proc.wait(name, lambda r: r.get("event") == "state" and r.get("state") in ("registered", "register refused"),
                      timeout, "registration with its SC")
            state = proc.find(lambda r: r.get("event") == "state" and r.get("state") in ("registered", "register refused"))
            if state and state.get("state") != "registered":
                raise DemoFailed(name, f"{cta['sc']} refused {name}'s lines: {state}", proc.log)

    def _start_capture(self) -> None:
        if self.opt.capture == "off":
            self.capture_skipped = "capture off (--no-capture)"
            return
        if shutil.which("tshark") is None:
            self.capture_skipped = "no capture: tshark is not installed"
            return
        if os.geteuid() != 0:
            self.capture_skipped = "no capture: capturing on lo needs root"
            return
        self.progress("tshark capture on lo")
        self._phone_ports = self._pick_phone_ports()
        self.capture = _Capture(self.dir / "demo.pcap", self._capture_filter(), self.opt.timeout)

    def _pick_phone_ports(self) -> dict:
        """SIP and RTP ports for both softphones, chosen now so the capture can leave them out."""
        from ctad.baresip import free_sip_port

        return {side: {"sip": free_sip_port(), "rtp": _free_udp_block(10)} for side in ("A", "B")}

    def _capture_filter(self) -> str:
        """KDC TCP/UDP, SC km/ESP and the media between the CTAs: all UDP on lo except the line
        sides (the CTAs' line SIP ports and the phones' SIP and RTP ports)."""
        kdc = _hostport(self.manifest["kdc"]["tcp"])[1]
        exclude = [_hostport(self.cta(n)["line"])[1] for n in ("cta1", "cta2")]
        exclude += [p["sip"] for p in self._phone_ports.values()]
        ranges = [f"portrange {p['rtp']}-{p['rtp'] + 9}" for p in self._phone_ports.values()]
        line_side = " or ".join([f"port {p}" for p in exclude] + ranges)
        return f"tcp port {kdc} or (udp and not ({line_side}))"

    # -- the call -------------------------------------------------------------------------

    def _phone_kind(self) -> str:
        choice = self.opt.softphone
        if choice == "auto":
            return "baresip" if shutil.which("baresip") else "builtin"
        if choice == "baresip" and shutil.which("baresip") is None:
            raise DemoFailed("softphones", "baresip is not installed (apt-get install baresip)")
        return choice

    async def _call(self) -> None:
        kind = self.result.phone_kind = self._phone_kind()
        a, b = self.cta("cta1"), self.cta("cta2")
        self.progress(f"softphones ({kind}): A {a['numbers'][0]} on cta1 ({TONE_A:g} Hz), "
                      f"B {b['numbers'][0]} on cta2 ({TONE_B:g} Hz)")
        if kind == "baresip":
            await self._baresip_call(a, b)
        else:
            await self._builtin_call(a, b)

    def _ports(self, side: str) -> dict | None:
        return getattr(self, "_phone_ports", {}).get(side)

    async def _builtin_call(self, a: dict, b: dict) -> None:
        from common.audio import ToneCheck
        from ctad.softphone import CallFailed, Softphone, SoftphoneConfig

        def config(cta: dict, side: str, tone: float) -> SoftphoneConfig:
            ports = self._ports(side) or {"sip": 0, "rtp": 0}
            return SoftphoneConfig(number=cta["numbers"][0], line=_hostport(cta["line"]), tone_hz=tone,
                                   sip_port=ports["sip"], rtp_port=ports["rtp"], register=False)

        a_cfg, b_cfg = config(a, "A", TONE_A), config(b, "B", TONE_B)
        timeout = self.opt.timeout
        async with Softphone(a_cfg) as pa, Softphone(b_cfg) as pb:
            self.step = "softphones"
            for phone in (pa, pb):
                try:
                    await phone.register(timeout=timeout)
                except (CallFailed, asyncio.TimeoutError) as exc:
                    raise DemoFailed("softphones", f"phone {phone.config.number} did not register: {exc}") from None
            self.step = "call"
            self.progress(f"A dials {b_cfg.number}")
            t0 = time.monotonic()
            try:
                await pa.dial(b_cfg.number, timeout=timeout)
            except (CallFailed, asyncio.TimeoutError) as exc:
                raise DemoFailed("call", f"A's call to {b_cfg.number}: {exc}",
                                 self.procs["cta1"].log) from None
            self.result.setup_ms = (time.monotonic() - t0) * 1000
            try:
                await pb.wait_established(timeout=5)
            except asyncio.TimeoutError as exc:
                raise DemoFailed("call", f"B never saw the call established: {exc}", self.procs["cta2"].log) from None
            await asyncio.sleep(self.opt.talk)
            self.result.talked = self.opt.talk
            self.step = "hang up"
            try:
                closed = await pa.hangup(timeout=10)
                other = await pb.wait_closed(timeout=10)
            except (CallFailed, asyncio.TimeoutError) as exc:
                raise DemoFailed("hang up", str(exc)) from None
            if not other.by_remote:
                raise DemoFailed("hang up", f"B's leg ended without A's BYE: {other.reason}")
            self.result.notes.append(f"A: {closed.reason}; B: {other.reason}")
        self.step = "audio"
        self.result.at_b = ToneCheck(TONE_A).check(pb.received)
        self.result.at_a = ToneCheck(TONE_B).check(pa.received)
        self._check_audio()

    async def _baresip_call(self, a: dict, b: dict) -> None:
        from common.audio import ToneCheck
        from ctad.baresip import Baresip, BaresipConfig, BaresipError

        def config(cta: dict, side: str, tone: float) -> BaresipConfig:
            ports = self._ports(side)
            extra = {"sip_port": ports["sip"], "rtp_ports": (ports["rtp"], ports["rtp"] + 9)} if ports else {}
            return BaresipConfig(directory=self.dir / "phones" / side, user=cta["numbers"][0], tone_hz=tone,
                                 tone_seconds=max(60.0, self.opt.talk + 30), line=cta["line"], register=True,
                                 **extra)

        pa, pb = Baresip(config(a, "A", TONE_A)), Baresip(config(b, "B", TONE_B))
        timeout = self.opt.timeout
        try:
            self.step = "softphones"
            try:
                for phone in (pa, pb):
                    phone.start()
                    await phone.connect(timeout=timeout)
            except BaresipError as exc:
                raise DemoFailed("softphones", str(exc), pa.log_path) from None
            # baresip may register before ctrl_tcp is connected: wait for the line side's binding.
            for phone, name in ((pa, "cta1"), (pb, "cta2")):
                port = phone.sip_port
                await asyncio.to_thread(
                    self.procs[name].wait, "softphones",
                    lambda r, port=port: r.get("event") == "phone registered"
                    and f"@127.0.0.1:{port}" in r.get("contact", "") and r.get("expires", 0) > 0,
                    timeout, f"REGISTER from baresip {phone.config.user}")
            self.step = "call"
            target = f"sip:{b['numbers'][0]}@{a['line']}"
            self.progress(f"A dials {target}")
            t0 = time.monotonic()
            try:
                await pa.dial(target)
                est = await pa.wait_event("CALL_ESTABLISHED", timeout=timeout)
                await pb.wait_event("CALL_ESTABLISHED", timeout=5)
            except BaresipError as exc:
                raise DemoFailed("call", str(exc).splitlines()[0], self.procs["cta1"].log) from None
            self.result.setup_ms = (est.get("_received", time.monotonic()) - t0) * 1000
            await asyncio.sleep(self.opt.talk + 0.5)  # baresip's audio starts a little after the answer
            self.result.talked = self.opt.talk + 0.5
            self.step = "hang up"
            try:
                await pa.hangup()
                await pa.wait_event("CALL_CLOSED", timeout=10)
                await pb.wait_event("CALL_CLOSED", timeout=10)
            except BaresipError as exc:
                raise DemoFailed("hang up", str(exc).splitlines()[0]) from None
        finally:
            await pa.aclose()
            await pb.aclose()
        self.step = "audio"
        try:
            self.result.at_b = ToneCheck(TONE_A).check_wav(pb.recording())
            self.result.at_a = ToneCheck(TONE_B).check_wav(pa.recording())
        except (BaresipError, OSError, ValueError) as exc:
            raise DemoFailed("audio", f"no recording: {exc}") from None
        self._check_audio()

    def _check_audio(self) -> None:
        r = self.result
        bad = [f"A -> B {r.at_b}" for _ in [0] if not r.at_b.ok] + [f"B -> A {r.at_a}" for _ in [0] if not r.at_a.ok]
        if bad:
            raise DemoFailed("audio", "; ".join(bad))

    # -- counters -------------------------------------------------------------------------

    def _collect_counters(self) -> None:
        timeout = self.opt.timeout
        for name in ("cta1", "cta2"):
            self.procs[name].wait("counters", lambda r: r.get("event") == "media stopped", timeout,
                                  "media stopped line")
        self.status: dict[str, str] = {}
        for name in ("sc1", "sc2", "cta1", "cta2"):
            proc = self.procs[name]
            proc.popen.send_signal(signal.SIGHUP)
            record = proc.wait("counters", lambda r: r.get("event") == "reloaded", timeout, "status line after SIGHUP")
            self.status[name] = str(record.get("status", ""))

    # -- stop -----------------------------------------------------------------------------

    def _stop_all(self) -> None:
        if self.capture is not None:
            try:
                self.capture.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass
        for name in reversed(list(self.procs)):
            try:
                self.procs[name].stop()
            except Exception:  # noqa: BLE001
                pass

    # -- decrypting the capture ---------------------------------------------------------------

    def _decrypt_check(self) -> None:
        self.decrypt: dict = {}
        if self.capture is None:
            return
        from common.cli import CliError
        from common.cli.keys import load_key_records, wireshark_options

        try:
            options = wireshark_options(self.dir)
            _manifest, records = load_key_records(self.dir)
        except CliError as exc:
            raise DemoFailed("decrypt", f"kerbtel keys wireshark: {exc}") from None
        # each call's direct CTA-to-CTA channel runs between the CTAs' own ports (key log)
        cta_ports = {int(rec[end].rsplit(":", 1)[1]) for rec in records if rec.get("type") == "call_keys"
                     for end in ("local", "peer") if rec.get(end)}
        esp_ports = {_hostport(s["esp"])[1] for s in self.manifest["scs"]}
        km_ports = {_hostport(s["km"])[1] for s in self.manifest["scs"]}
        kdc_port = _hostport(self.manifest["kdc"]["tcp"])[1]
        self.tshark_command = ["tshark", "-r", str(self.capture.path), *options]
        fields = ["frame.len", "ip.proto", "udp.srcport", "udp.dstport", "tcp.port", "frame.protocols",
                  "esp.icv_good", "esp.icv_bad", "sip.Method", "sip.Status-Code"]
        try:
            out = subprocess.run([*self.tshark_command, "-T", "fields", "-E", "separator=|",
                                  *[a for f in fields for a in ("-e", f)]],
                                 capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DemoFailed("decrypt", f"tshark -r: {exc}") from None
        if out.returncode != 0:
            raise DemoFailed("decrypt", f"tshark -r exited {out.returncode}: {out.stderr.strip()[-500:]}")
        stats = {k: [0, 0] for k in ("kdc", "km", "esp", "media")}
        esp_good = esp_bad = sip = 0
        sip_methods: set[str] = set()
        hops = {hop: {"packets": 0, "good": 0, "sip": set()} for hop in ("CTA-SC", "SC-SC", "CTA-CTA")}
        for line in out.stdout.splitlines():
            row = dict(zip(fields, line.split("|")))
            size = int(row["frame.len"] or 0)
            sport = row["udp.srcport"].split(",")[0]
            dport = row["udp.dstport"].split(",")[0]
            ports = {int(p) for p in (sport, dport) if p.isdigit()}
            tcp_ports = {int(p) for p in row["tcp.port"].split(",") if p.isdigit()}
            hop = None
            if kdc_port in ports or kdc_port in tcp_ports:
                kind = "kdc"
            elif ports & esp_ports:
                kind, hop = "esp", "SC-SC" if ports <= esp_ports else "CTA-SC"
            elif ports and ports <= cta_ports:
                kind, hop = "esp", "CTA-CTA"
            elif ports & km_ports:
                kind = "km"
            elif ports:
                kind = "media"
            else:
                continue
            stats[kind][0] += 1
            stats[kind][1] += size
            if kind == "esp":
                if row["esp.icv_good"] == "1":
                    esp_good += 1
                if row["esp.icv_bad"] == "1":
                    esp_bad += 1
                if ":sip" in row["frame.protocols"]:
                    sip += 1
                    sip_methods.update(m for m in row["sip.Method"].split(",") if m)
                h = hops[hop]
                h["packets"] += 1
                h["good"] += row["esp.icv_good"] == "1"
                h["sip"].update(m for m in row["sip.Method"].split(",") if m)
                h["sip"].update(f"{c}" for c in row["sip.Status-Code"].split(",") if c)
        self.decrypt = {"stats": stats, "esp_good": esp_good, "esp_bad": esp_bad, "sip": sip,
                        "methods": sorted(sip_methods), "hops": hops}
        if not stats["esp"][0]:
            raise DemoFailed("decrypt", f"no ESP in {self.capture.path}", self.capture.stderr_path)
        if esp_bad or esp_good < stats["esp"][0] or "INVITE" not in sip_methods:
            raise DemoFailed("decrypt", f"{stats['esp'][0]} ESP packets: {esp_good} with a good ICV, {esp_bad} bad, "
                             f"{sip} decrypted to SIP ({', '.join(sorted(sip_methods)) or 'none'})")
        missing = [hop for hop, h in hops.items() if not h["sip"]]
        if missing or "BYE" not in hops["CTA-CTA"]["sip"]:
            raise DemoFailed("decrypt", "no SIP decrypted on the " + (", ".join(missing) or "CTA-CTA")
                             + " hop(s) (the hang-up's BYE goes CTA to CTA): "
                             + "; ".join(f"{k} {v['packets']} packets {sorted(v['sip'])}" for k, v in hops.items()))

    # -- the report ---------------------------------------------------------------------------

    def _tickets(self) -> list[str]:
        from common.ccache import Ccache
        from common.crypto.enctypes import get_enctype
        from common.principal import Principal

        lines = []
        for name in ("cta1", "cta2"):
            cta = self.cta(name)
            service = self.sc(cta["sc"])["principal"]
            pk = self.procs[name].find(lambda r: r.get("event") == "pkinit") or {}
            try:
                cred = Ccache.load(Path(cta["identity_dir"]) / "ccache").find(Principal.parse(service))
                enctype = get_enctype(cred.key.enctype).name
            except Exception as exc:  # noqa: BLE001 - the report says what it could not read
                enctype = f"? ({type(exc).__name__})"
            mode = pk.get("mode", "?")
            mode_text = {"dh": "Diffie-Hellman", "ecdh": "ECDH", "rsa": "RSA key transport"}.get(mode, mode)
            kdf = f", KDF {pk['kdf']}" if pk.get("kdf") else ""
            lines.append(f"  {name}  {cta['principal']}")
            lines.append(f"        -> {service}  {enctype}  PKINIT {mode_text}{kdf}")
        for name in ("sc1",):
            t = self.procs[name].find(lambda r: r.get("event") == "peer ticket")
            if t:
                lines.append(f"  {name}   {self.sc(name)['principal']}")
                lines.append(f"        -> {t.get('server')}  (SC-to-SC, {t.get('mode')})")
        return lines

    def _sas(self) -> list[str]:
        lines = []
        for name in ("cta1", "cta2"):
            sc = self.cta(name)["sc"]
            r = self.procs[sc].find(lambda r: r.get("event") == "sa established"
                                    and r.get("principal") == self.cta(name)["principal"]) or {}
            lines.append(f"  CTA-SC   {name} <-> {sc}   ESP {r.get('suite', '?')}  "
                         f"SPIs {r.get('cta_spi', '?')} / {r.get('spi', '?')}")
        r = self.procs["sc1"].find(lambda r: r.get("event") == "peer link up") or {}
        lines.append(f"  SC-SC    sc1 <-> sc2    ESP {r.get('suite', '?')}  SPIs {r.get('spi', '?')} / {r.get('peer_spi', '?')}")
        calls = self.procs["sc1"].find(lambda r: r.get("event") == "calls on") or {}
        media = self.procs["cta1"].find(lambda r: r.get("event") == "media stopped") or {}
        lines.append(f"  CTA-CTA  cta1 <-> cta2   ESP {calls.get('esp_suite', '?')} (per-call sub-key from sc1), "
                     f"media {media.get('profile', calls.get('media_profile', '?'))} ({media.get('backend', '?')})")
        return lines

    def _traffic(self) -> list[str]:
        lines = []
        for name in ("cta1", "cta2"):
            m = self.procs[name].find(lambda r: r.get("event") == "media stopped") or {}
            size = ""
            if "encrypted_bytes" in m:
                size = f" ({m['encrypted_bytes']} bytes)"
            lines.append(f"  {name} media  {m.get('encrypted_packets', '?')} packets encrypted{size}, "
                         f"{m.get('decrypted_packets', '?')} decrypted, {m.get('dropped', 0)} dropped")
        for name in ("sc1", "sc2", "cta1", "cta2"):
            lines.append(f"  {name} status {self.status.get(name, '?')}")
        if self.decrypt:
            s = self.decrypt["stats"]
            lines.append(f"  on the wire (capture): ESP {s['esp'][0]} packets / {s['esp'][1]} bytes, "
                         f"SRTP {s['media'][0]} / {s['media'][1]} bytes, key management {s['km'][0]} / {s['km'][1]}, "
                         f"Kerberos {s['kdc'][0]} / {s['kdc'][1]}")
        return lines

    def _report(self, elapsed: float) -> None:
        r = self.result
        setup = self.procs_setup_line()
        self.say()
        self.say("Tickets (PKINIT with the KDC)")
        for line in self._tickets():
            self.say(line)
        self.say("Security associations")
        for line in self._sas():
            self.say(line)
        self.say("Call")
        self.say(f"  A {self.cta('cta1')['numbers'][0]} (cta1) -> B {self.cta('cta2')['numbers'][0]} (cta2), "
                 f"softphones: {r.phone_kind}, route cta1 -> sc1 -> sc2 -> cta2")
        self.say(f"  setup (INVITE to 200 at phone A): {r.setup_ms:.0f} ms; talked {r.talked:.1f} s; hung up by A")
        if setup:
            self.say(f"  {setup}")
        self.say("Packets encrypted")
        for line in self._traffic():
            self.say(line)
        self.say("Audio")
        self.say(f"  A -> B: {r.at_b}")
        self.say(f"  B -> A: {r.at_a}")
        self.say("Capture")
        if self.capture is not None:
            d = self.decrypt
            self.say(f"  {' '.join(shlex.quote(a) for a in self.capture.command)}")
            self.say(f"  decrypted: {d['esp_good']} of {d['stats']['esp'][0]} ESP packets with a good ICV, "
                     f"{d['sip']} carry SIP ({', '.join(d['methods'])})")
            for hop, h in d["hops"].items():
                self.say(f"    {hop:8} {h['packets']:4} ESP packets, {h['good']} good ICV, SIP {' '.join(sorted(h['sip']))}")
            self.say("  decrypt it with:")
            self.say(f"  {shlex.join(self.tshark_command)}")
        else:
            self.say(f"  {self.capture_skipped}")
        self.say(f"Logs: {self.dir / 'logs'}")
        times = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
        self.say(f"PASS: secure call A -> B and back verified in {elapsed:.1f} s ({times})")

    def procs_setup_line(self) -> str:
        s = self.procs["sc1"].find(lambda r: r.get("event") == "call setup" and r.get("role") == "source")
        if not s:
            return ""
        return f"sc1 call {s.get('call_id')}: {s.get('caller')} -> {s.get('callee')} via {s.get('next_hop')}"

    def _report_failure(self, failed: DemoFailed) -> None:
        self.say()
        self.say(f"FAILED at step {failed.step!r}: {failed}")
        log = failed.log
        if log is None:
            proc = self.procs.get(failed.step)
            log = proc.log if proc else None
        if log is not None:
            self.say(f"  log: {log}")
            try:
                tail = log.read_text(errors="replace").splitlines()[-8:]
            except OSError:
                tail = []
            for line in tail:
                self.say(f"    {line[:300]}")
        self.say(f"  all logs: {self.dir / 'logs'} (directory kept: {self.dir})")


def run_demo(options: DemoOptions) -> int:
    return Demo(options).run()
