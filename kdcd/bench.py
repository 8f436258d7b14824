"""`kerbtel bench kdc`: PKINIT AS exchanges per second against kdcd and, optionally, MIT krb5kdc.

    report = run_kdc_bench(BenchOptions(modes=("dh", "rsa"), clients=4, requests=400, vs_mit=True))
    print(format_report(report))

What it does, per run:

1. `create_deployment` in a temporary directory (PKI, database, kdcd.toml, CTA identities).
2. Starts kdcd as a subprocess (`python -m kdcd -c DIR/kdcd.toml`, `workers = W`, JSON logs to a
   file) and waits for its READY=1 on a private NOTIFY_SOCKET. With `vs_mit`, also an MIT
   `krb5kdc -n [-w W]` (its own `kdb5_util` database, the same KDC certificate and key, the
   same CA certificates as anchors, the same CTA and signaling-controller principals), logging
   to a file as MIT does by default.
3. For each mode and each KDC, the *same* load generator, in this process: a warm-up of
   `warmup` complete exchanges per client (`common.krb5client.AsExchange`, verified in full),
   then `requests` AS-REQs built *before* the timed phase (each with a fresh nonce, DH/ECDH key
   pair and RSA signature, ctime now: they are sent within seconds, well inside the clock skew;
   distinct nonces make distinct paChecksums, so neither kdcd's replay cache nor MIT's lookaside
   cache sees a repeat). The timed phase is N asyncio tasks that only connect, send and read,
   one TCP connection per exchange (MIT closes the connection after each reply, so both KDCs
   see the same pattern); each reply is checked to be an AS-REP. Building and verifying an
   exchange costs the client about as much CPU as the KDC, and on a small machine the
   generator would otherwise compete with the KDC for the cores and measure itself. After
   timing, the first reply of every client and every `verify_every`-th reply are verified in
   full (KDC signature and certificate chain, DH/ECDH or RSA reply key, the enc-part, nonce,
   names and times); a failure there turns that exchange into an error.
4. Measures wall-clock exchanges/s, latency p50/p99, the KDC's CPU per exchange (utime+stime of
   the KDC's whole process tree from /proc, before/after the timed phase), how many cores the
   KDC kept busy (= workers: saturated, the rate measures the KDC), and the generator's own CPU
   in the timed phase and for building the requests.
5. The crypto ceiling per mode: what one core could do if an exchange cost only its mandatory
   public-key operations on the KDC side (`crypto_ceiling`), timed in-process with
   `cryptography`, and, with `vs_mit`, whether twice MIT's per-core rate leaves room for them.

Nothing here asserts timings; tests run it with tiny numbers for the plumbing only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.daemon import stop_process

__all__ = [
    "BenchOptions",
    "BenchReport",
    "KdcProcess",
    "ModeResult",
    "crypto_ceiling",
    "format_report",
    "process_tree_cpu",
    "run_kdc_bench",
]

MODES = ("dh", "ecdh", "rsa")
MIT_MODES = ("dh", "rsa")  # MIT 1.20 has no ECDH (a P-256 request is refused or becomes MODP)
MIT_PROGRAMS = ("krb5kdc", "kdb5_util", "kadmin.local")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(RuntimeError):
    """The benchmark could not run (a KDC did not start, MIT is missing, ...)."""


@dataclass(frozen=True)
class BenchOptions:
    modes: tuple[str, ...] = MODES
    clients: int = 4
    requests: int = 400  # exchanges per mode and KDC, built before the timed phase
    seconds: float | None = None  # also stop each mode's timed phase after this long
    workers: int = 1
    vs_mit: bool = False
    verify_every: int = 16  # after timing, verify every n-th reply in full (1 = all)
    warmup: int = 2  # exchanges per client before measuring (caches, page cache)
    directory: Path | None = None  # keep the deployment here instead of a temporary directory


@dataclass
class ModeResult:
    server: str  # "kerbtel" or "MIT"
    mode: str
    ok: int
    errors: int
    wall: float
    kdc_cpu: float  # seconds, whole KDC process tree, during the timed phase
    gen_cpu: float  # seconds, this process (sending and reading only), during the timed phase
    prep_cpu: float = 0.0  # seconds this process spent building the requests before timing
    verified: int = 0  # replies verified in full after timing
    latencies: list[float] = field(default_factory=list, repr=False)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0

    @property
    def kdc_ms(self) -> float:
        return 1000 * self.kdc_cpu / self.ok if self.ok else float("nan")

    @property
    def gen_ms(self) -> float:
        return 1000 * self.gen_cpu / self.ok if self.ok else float("nan")

    @property
    def prep_ms(self) -> float:
        return 1000 * self.prep_cpu / self.ok if self.ok else float("nan")

    @property
    def kdc_cores(self) -> float:
        """Cores the KDC kept busy during the timed phase (workers = saturated)."""
        return self.kdc_cpu / self.wall if self.wall > 0 else float("nan")

    @property
    def gen_cores(self) -> float:
        return self.gen_cpu / self.wall if self.wall > 0 else float("nan")

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        index = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
        return 1000 * data[index]


@dataclass
class Ceiling:
    """The public-key operations one exchange of `mode` costs the KDC at least (none of them can
    be cached: each signs or agrees on something fresh), timed on this machine."""

    mode: str
    parts: dict[str, float]  # public-key operation -> seconds per operation
    skippable: tuple[str, ...] = ()  # parts a KDC may skip (DH key reuse with clientDHNonce)
    symmetric: dict[str, float] = field(default_factory=dict)  # the symmetric crypto, as kdcd calls it

    @property
    def total_seconds(self) -> float:
        """All the crypto of one exchange: public-key and symmetric."""
        return self.seconds + sum(self.symmetric.values())

    @property
    def reuse_seconds(self) -> float:
        return sum(v for k, v in self.parts.items() if k not in self.skippable)

    @property
    def seconds(self) -> float:
        return sum(self.parts.values())

    @property
    def rate(self) -> float:
        return 1.0 / self.seconds


@dataclass
class BenchReport:
    options: BenchOptions
    cpus: int
    results: list[ModeResult]
    ceilings: dict[str, Ceiling]
    notes: list[str] = field(default_factory=list)

    def result(self, server: str, mode: str) -> ModeResult | None:
        for r in self.results:
            if r.server == server and r.mode == mode:
                return r
        return None


# --- CPU accounting ---------------------------------------------------------------------------


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime ticks) of a live process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and all its live descendants."""
    stats: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read_stat(int(name))
            if st is not None:
                stats[int(name)] = st
    children: dict[int, list[int]] = {}
    for child, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(child)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
        todo.extend(children.get(p, ()))
    return total / _CLK_TCK


# --- the crypto ceiling -----------------------------------------------------------------------


def _time_op(fn, min_time: float = 0.15) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and n >= 5:
            return elapsed / n


def crypto_ceiling(modes: Sequence[str] = MODES) -> dict[str, Ceiling]:
    """Per mode: seconds of public-key work one KDC exchange needs at least, timed in-process.

    Every mode: RSA-2048 PKCS#1 v1.5 sign (the KDC's SignedData over KDCDHKeyInfo or
    ReplyKeyPack) and verify (the client's signature over its AuthPack; the client certificate's
    chain is cached by thumbprint, so its verification is not per exchange). DH: the MODP-2048
    key pair (skipped when the KDC reuses its key, which kdcd does only with a clientDHNonce,
    RFC 4556 3.2.3.1, and `dh_key_reuse_seconds`), the shared secret and the public value's
    subgroup check (the Legendre symbol, the cheapest form for a safe prime, in C through
    common.crypto.legendre when GMP or libcrypto loads). ECDH: the P-256 key pair and the shared secret (the point
    is checked on the curve by OpenSSL as part of it). RSA: encrypting the content-encryption
    key to the client's RSA-2048 key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from common.crypto.dh import MODP_2048
    from common.crypto.legendre import check_public_value

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = os.urandom(100)
    signature = client_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    client_public = client_key.public_key()
    sign = _time_op(lambda: key.sign(message, padding.PKCS1v15(), hashes.SHA256()))
    verify = _time_op(lambda: client_public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256()))
    symmetric = _symmetric_crypto()
    out: dict[str, Ceiling] = {}
    for mode in modes:
        parts = {"RSA-2048 sign": sign, "RSA-2048 verify": verify}
        skippable: tuple[str, ...] = ()
        if mode == "dh":
            peer_y = MODP_2048.generate_key_pair().public_value
            parts["DH-2048 keygen"] = _time_op(lambda: MODP_2048.generate_key_pair().public_value)
            mine = MODP_2048.generate_key_pair()
            parts["DH-2048 exchange"] = _time_op(lambda: mine.shared_secret(peer_y, check_subgroup=False))
            # The cheapest form of the mandatory check the KDC has (common.crypto.legendre: C when it loads).
            parts["DH-2048 subgroup check"] = _time_op(lambda: check_public_value(MODP_2048, peer_y))
            skippable = ("DH-2048 keygen",)
        elif mode == "ecdh":
            peer_pub = ec.generate_private_key(ec.SECP256R1()).public_key()
            parts["P-256 keygen"] = _time_op(lambda: ec.generate_private_key(ec.SECP256R1()).public_key())
            mine_ec = ec.generate_private_key(ec.SECP256R1())
            parts["P-256 ECDH"] = _time_op(lambda: mine_ec.exchange(ec.ECDH(), peer_pub))
            skippable = ("P-256 keygen",)
        elif mode == "rsa":
            parts["RSA-2048 encrypt"] = _time_op(lambda: client_public.encrypt(os.urandom(24), padding.PKCS1v15()))
        wanted = ("ticket", "enc-part") + (("asChecksum", ENC_KEY_PACK_LABEL) if mode == "rsa" else ("KDF",))
        out[mode] = Ceiling(mode, parts, skippable, {name: symmetric[name] for name in wanted})
    return out


def _symmetric_crypto() -> dict[str, float]:
    """The symmetric crypto of an exchange, with common.crypto as kdcd calls it: the ticket under
    the service key (derived keys cached), the enc-part under the fresh reply key (key
    derivation included), and per mode the RFC 8636 KDF over the AS-REQ, or the asChecksum
    (HMAC-SHA1-96 over the AS-REQ, key derived) and the encKeyPack encryption (~1.6 KB) with the
    cipher common.krb5client offers first (aes256-cbc; MIT's kinit offers only des-ede3-cbc)."""
    import dataclasses
    import warnings

    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    from common.cms import CIPHERS
    from common.crypto import KeyUsage, encrypt, generate_key, make_checksum, required_checksum_type
    from common.crypto.pkinit import rfc8636_kdf
    from common.krb5client import AsClientConfig

    offered = next(f.default for f in dataclasses.fields(AsClientConfig) if f.name == "cms_types")[0]
    _, key_len, cipher_cls = CIPHERS[offered]
    service_key = generate_key(18)
    request = os.urandom(3000)  # a PKINIT AS-REQ with one certificate

    def seal() -> bytes:
        block = cipher_cls.block_size // 8
        encryptor = Cipher(cipher_cls(os.urandom(key_len)), modes.CBC(os.urandom(block))).encryptor()
        return encryptor.update(bytes(1600)) + encryptor.finalize()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "ticket": _time_op(lambda: encrypt(service_key, KeyUsage.TICKET, bytes(400))),
            "enc-part": _time_op(lambda: encrypt(generate_key(18), KeyUsage.AS_REP_ENC_PART, bytes(200))),
            "KDF": _time_op(lambda: rfc8636_kdf("sha256", bytes(256), request, 18)),
            "asChecksum": _time_op(lambda: make_checksum(required_checksum_type(18), generate_key(18),
                                                         KeyUsage.PKINIT_AS_CHECKSUM, request)),
            ENC_KEY_PACK_LABEL: _time_op(seal),
        }


ENC_KEY_PACK_LABEL = "encKeyPack"


# --- the KDCs ---------------------------------------------------------------------------------


@dataclass
class KdcProcess:
    name: str
    host: str
    port: int
    process: subprocess.Popen
    log: Path

    def cpu(self) -> float:
        return process_tree_cpu(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n  ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_port(kdc: KdcProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if kdc.process.poll() is not None:
            raise BenchError(f"{kdc.name} exited {kdc.process.returncode} at start:\n  {_log_tail(kdc.log)}")
        try:
            with socket.create_connection((kdc.host, kdc.port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                kdc.stop()
                raise BenchError(f"{kdc.name} did not answer on {kdc.host}:{kdc.port} within {timeout} s") from None
            time.sleep(0.02)


def start_kdcd(deployment, workers: int, timeout: float = 60.0) -> KdcProcess:
    """kdcd on the deployment's port with `workers = W`, after its READY=1 (sd_notify)."""
    config = deployment.kdc_config
    text = config.read_text()
    lines = [f"workers = {workers}" if line.startswith("workers =") else line for line in text.splitlines()]
    config.write_text("\n".join(lines) + "\n")
    notify_path = deployment.directory / "bench-notify.sock"
    with contextlib.suppress(FileNotFoundError):
        notify_path.unlink()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    log = deployment.directory / "kdcd.log"
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kdcd", "-c", str(config), "--log-format", "json"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=deployment.directory,
        )
    kdc = KdcProcess("kdcd", deployment.host, deployment.port, proc, log)
    try:
        deadline = time.monotonic() + timeout
        notify.settimeout(0.2)
        while True:
            try:
                if b"READY=1" in notify.recv(4096).split(b"\n"):
                    break
            except TimeoutError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                kdc.stop()
                raise BenchError(f"kdcd did not become ready (exit {proc.returncode}):\n  {_log_tail(log)}")
    finally:
        notify.close()
        with contextlib.suppress(OSError):
            notify_path.unlink()
    _wait_port(kdc, timeout)
    return kdc


def mit_available() -> bool:
    return all(shutil.which(p) for p in MIT_PROGRAMS)


def _mit_env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
    env["KRB5_CONFIG"] = str(directory / "krb5.conf")
    env["KRB5_KDC_PROFILE"] = str(directory / "kdc.conf")
    env["KRB5RCACHENAME"] = "none:"
    return env


def _mit_run(directory: Path, argv: list[str]) -> str:
    proc = subprocess.run(argv, env=_mit_env(directory), capture_output=True, text=True, timeout=60, cwd=directory)
    bad = [
        line for line in proc.stderr.splitlines()
        if line.strip() and not line.startswith(("Authenticating as principal", "No policy specified", "Loading random data",
                                                  "Initializing database", "Enter KDC database master key", "master key name"))
        and "Principal \"" not in line
    ]
    if proc.returncode != 0 or (argv[0] == "kadmin.local" and bad):
        raise BenchError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def start_mit(deployment, directory: Path, workers: int, timeout: float = 30.0) -> KdcProcess:
    """MIT krb5kdc for the deployment's realm: same KDC certificate and key, same anchors, the
    provisioned CTAs (+requires_preauth, no keys) and the signaling controllers (random keys)."""
    from kdcd.deployment import free_port

    if not mit_available():
        raise BenchError(f"--vs-mit needs MIT krb5 ({', '.join(MIT_PROGRAMS)}); install krb5-kdc krb5-pkinit krb5-admin-server")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(deployment.host)
    realm = deployment.realm
    anchors = "\n".join(
        f"        pkinit_anchors = FILE:{p}" for p in (deployment.kdc_anchor, deployment.manufacturer_anchor)
    )
    (directory / "kdc.conf").write_text(f"""\
[realms]
    {realm} = {{
        database_module = bench_db
        key_stash_file = {directory / 'stash'}
        acl_file = {directory / 'kadm5.acl'}
        kdc_listen = {deployment.host}:{port}
        kdc_tcp_listen = {deployment.host}:{port}
        master_key_type = aes256-cts-hmac-sha1-96
        max_life = 10h 0m 0s
        max_renewable_life = 7d 0h 0m 0s
        pkinit_identity = FILE:{deployment.kdc_cert},{deployment.kdc_key}
{anchors}
        pkinit_dh_min_bits = 2048
    }}
[dbmodules]
    bench_db = {{
        db_library = db2
        database_name = {directory / 'principal'}
    }}
[logging]
    kdc = FILE:{directory / 'kdc.log'}
""")
    (directory / "krb5.conf").write_text(f"""\
[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
[realms]
    {realm} = {{
        kdc = {deployment.host}:{port}
    }}
""")
    (directory / "kadm5.acl").write_text("")
    _mit_run(directory, ["kdb5_util", "create", "-s", "-r", realm, "-P", "kerbtel-bench-master"])
    for cta in deployment.ctas:
        if cta.provisioned:
            _mit_run(directory, ["kadmin.local", "-r", realm, "-q", f"addprinc +requires_preauth -nokey {cta.principal}"])
    for sc in deployment.scs:
        _mit_run(directory, ["kadmin.local", "-r", realm, "-q", f"addprinc -randkey {sc.principal}"])
    argv = ["krb5kdc", "-n", "-r", realm]
    if workers > 1:
        argv += ["-w", str(workers)]
    log = directory / "krb5kdc.out"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=_mit_env(directory), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=directory)
    kdc = KdcProcess("MIT krb5kdc", deployment.host, port, proc, directory / "kdc.log")
    _wait_port(kdc, timeout)
    return kdc


# --- the load generator -------------------------------------------------------------------------


def _client_config(deployment, mode: str, cta_index: int):
    from common.krb5client import AsClientConfig, ClientIdentity
    from common.pki import load_certificates, load_private_key
    from common.principal import Principal

    ctas = [c for c in deployment.ctas if c.provisioned]
    cta = ctas[cta_index % len(ctas)]
    identity = ClientIdentity(load_certificates(cta.cert)[0], load_private_key(cta.key))
    return AsClientConfig(
        identity=identity,
        client=Principal.parse(cta.principal),
        realm=deployment.realm,
        anchors=tuple(load_certificates(deployment.kdc_anchor)),
        service=Principal.parse(deployment.scs[0].principal),
        mode=mode,
    )


_AS_REP_TAG = 0x6B
_MAX_REPLY = 1 << 20
_REPLY_TIMEOUT = 30.0


async def _exchange(config, host: str, port: int) -> None:
    """One complete, fully verified AS exchange (the warm-up); raises on any failure."""
    from common.krb5client import AsExchange, AsResult, KrbClientError, send_to_kdc

    exchange = AsExchange(config)
    request = exchange.start(wallclock=dt.datetime.now(dt.timezone.utc))
    for _ in range(4):
        reply = await send_to_kdc(host, port, request, timeout=_REPLY_TIMEOUT)
        step = exchange.receive(reply, wallclock=dt.datetime.now(dt.timezone.utc))
        if isinstance(step, AsResult):
            return
        request = step.request
    raise KrbClientError(0, "no AS-REP after 4 requests")


async def _warmup(kdc: KdcProcess, configs: list, per_client: int) -> None:
    async def one(config) -> None:
        for _ in range(per_client):
            await _exchange(config, kdc.host, kdc.port)

    await asyncio.gather(*(one(c) for c in configs))


@dataclass
class PreparedRequests:
    """AS-REQs built before the timed phase: framed for TCP, one per exchange, round-robin over
    the clients. `sample` keeps the client state (nonce, DH private key, ...) of the exchanges
    whose replies are verified in full after timing; the others keep only their bytes."""

    framed: list[bytes]
    sample: dict[int, object]  # index -> common.krb5client.AsExchange


def prepare_requests(configs: Sequence, count: int, verify_every: int) -> PreparedRequests:
    """`count` distinct AS-REQs (fresh nonce, DH/ECDH key and signature each; ctime now, so they
    stay within the KDC's clock skew for the few seconds until they are sent). Distinct nonces
    give distinct paChecksums, hence distinct replay-cache keys (kdcd: cname, ctime, cusec,
    paChecksum) and distinct lookaside-cache keys (MIT: the request bytes)."""
    from common.krb5client import AsExchange

    framed: list[bytes] = []
    sample: dict[int, object] = {}
    every = max(1, verify_every)
    for index in range(count):
        exchange = AsExchange(configs[index % len(configs)])
        request = exchange.start(wallclock=dt.datetime.now(dt.timezone.utc))
        framed.append(len(request).to_bytes(4, "big") + request)
        if index < len(configs) or index % every == 0:
            sample[index] = exchange
    return PreparedRequests(framed, sample)


class _OneExchange(asyncio.Protocol):
    """One connection: write the framed request, read the framed reply, close (as MIT does
    after each reply, so both KDCs see one connection per exchange)."""

    def __init__(self, framed: bytes, done: asyncio.Future) -> None:
        self.framed = framed
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.framed)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if len(buffer) < 4:
            return
        length = int.from_bytes(buffer[:4], "big")
        if length > _MAX_REPLY:  # also catches the reserved high bit
            self._finish(ConnectionError(f"reply length {length} is not acceptable"))
        elif len(buffer) >= 4 + length:
            self._finish(bytes(buffer[4 : 4 + length]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"KDC closed the connection after {len(self.buffer)} bytes"))

    def _finish(self, outcome) -> None:
        if not self.done.done():
            if isinstance(outcome, Exception):
                self.done.set_exception(outcome)
            else:
                self.done.set_result(outcome)
        if self.transport is not None:
            self.transport.close()


async def _send_all(kdc: KdcProcess, prepared: PreparedRequests, opts: BenchOptions, result: ModeResult) -> list[bytes | None]:
    """The timed phase: N tasks send the prepared requests and keep the replies. The only check
    here is that a reply is an AS-REP; everything costing crypto happens after timing."""
    loop = asyncio.get_running_loop()
    framed = prepared.framed
    replies: list[bytes | None] = [None] * len(framed)
    deadline = None if opts.seconds is None else time.perf_counter() + opts.seconds
    next_index = 0
    clock = time.perf_counter

    async def client() -> None:
        nonlocal next_index
        while next_index < len(framed) and (deadline is None or clock() < deadline):
            index = next_index
            next_index += 1
            done = loop.create_future()
            start = clock()
            try:
                async with asyncio.timeout(_REPLY_TIMEOUT):
                    await loop.create_connection(lambda: _OneExchange(framed[index], done), kdc.host, kdc.port)
                    reply = await done
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                result.errors += 1
                if result.first_error is None:
                    result.first_error = f"{type(exc).__name__}: {exc}"
                continue
            result.latencies.append(clock() - start)
            replies[index] = reply
            if reply[:1] == b"\x6b":
                result.ok += 1
            else:
                result.errors += 1
                if result.first_error is None:
                    result.first_error = _describe_reply(reply)

    await asyncio.gather(*(client() for _ in range(opts.clients)))
    return replies


def _describe_reply(reply: bytes) -> str:
    from common.asn1 import KRB_ERROR, decode_as

    try:
        error = decode_as(KRB_ERROR, reply)
        return f"KRB-ERROR {error['error-code'].native}: {error['e-text'].native or ''}".strip()
    except Exception:  # noqa: BLE001 - only the message suffers
        return f"not an AS-REP (first byte 0x{reply[:1].hex() or '--'})"


def _verify_sample(prepared: PreparedRequests, replies: Sequence[bytes | None], result: ModeResult) -> None:
    """Full client-side checks (KDC signature and chain, DH/ECDH or RSA reply key, enc-part,
    nonce, names, times) of the sampled replies, after timing. A failure turns an ok into an error."""
    from common.krb5client import AsResult

    wallclock = dt.datetime.now(dt.timezone.utc)
    for index, exchange in prepared.sample.items():
        reply = replies[index]
        if reply is None or reply[:1] != b"\x6b":
            continue  # already counted as an error
        try:
            step = exchange.receive(reply, wallclock=wallclock)
            if not isinstance(step, AsResult):
                raise RuntimeError(f"AS-REP did not complete the exchange ({step.reason})")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            result.ok -= 1
            result.errors += 1
            if result.first_error is None:
                result.first_error = f"verification: {type(exc).__name__}: {exc}"
            continue
        result.verified += 1


def _request_count(opts: BenchOptions, warmup_kdc_cpu: float) -> int:
    """How many requests to build: `requests`, or with `seconds` enough for that long at twice
    the rate the warm-up's KDC CPU suggests (the warm-up includes cold caches, so the KDC is
    faster afterwards; the timed phase also ends early if they run out)."""
    if opts.seconds is None:
        return opts.requests
    exchanges = opts.warmup * opts.clients
    if not exchanges or warmup_kdc_cpu <= 0:
        return opts.requests
    rate = exchanges / warmup_kdc_cpu * opts.workers
    return max(opts.clients, min(50_000, int(2 * rate * opts.seconds) + 1))


def _run_mode(kdc: KdcProcess, server: str, mode: str, deployment, opts: BenchOptions) -> ModeResult:
    configs = [_client_config(deployment, mode, i) for i in range(opts.clients)]
    result = ModeResult(server=server, mode=mode, ok=0, errors=0, wall=0.0, kdc_cpu=0.0, gen_cpu=0.0)
    runner = _event_loop_runner()
    warm_cpu = kdc.cpu()
    try:
        if opts.warmup:
            runner(_warmup(kdc, configs, opts.warmup))
    except Exception as exc:  # noqa: BLE001 - one failed mode must not hide the others
        result.errors += 1
        result.first_error = f"warm-up: {type(exc).__name__}: {exc}"
        return result
    warm_cpu = kdc.cpu() - warm_cpu
    prep_before = time.process_time()
    prepared = prepare_requests(configs, _request_count(opts, warm_cpu), opts.verify_every)
    result.prep_cpu = time.process_time() - prep_before
    kdc_before, gen_before, wall_before = kdc.cpu(), time.process_time(), time.perf_counter()
    replies = runner(_send_all(kdc, prepared, opts, result))
    result.wall = time.perf_counter() - wall_before
    result.gen_cpu = time.process_time() - gen_before
    result.kdc_cpu = kdc.cpu() - kdc_before
    _verify_sample(prepared, replies, result)
    return result


def _event_loop_runner():
    """asyncio.run with uvloop when installed (the same loop for both KDCs)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return lambda coro: asyncio.run(coro, loop_factory=uvloop.new_event_loop) if sys.version_info >= (3, 12) else uvloop.run(coro)


# --- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        directory = Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="kerbtel-bench-") as tmp:
        yield Path(tmp)


def run_kdc_bench(opts: BenchOptions, progress=None) -> BenchReport:
    """Run the whole benchmark; `progress(text)` is called with one line per step."""
    from kdcd.deployment import create_deployment

    say = progress or (lambda text: None)
    for mode in opts.modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    if opts.clients < 1 or opts.workers < 1:
        raise ValueError("clients and workers must be at least 1")
    if opts.vs_mit and not mit_available():
        raise BenchError(f"--vs-mit needs MIT krb5 ({', '.join(MIT_PROGRAMS)}) on PATH")
    report = BenchReport(options=opts, cpus=os.cpu_count() or 1, results=[], ceilings={})
    say("timing the crypto ceiling")
    report.ceilings = crypto_ceiling(opts.modes)
    with _workdir(opts.directory) as work:
        say(f"creating a deployment in {work / 'deployment'}")
        deployment = create_deployment(work / "deployment", force=True)
        servers: list[tuple[str, callable]] = [("kerbtel", lambda: start_kdcd(deployment, opts.workers))]
        if opts.vs_mit:
            servers.append(("MIT", lambda: start_mit(deployment, work / "mit", opts.workers)))
        for server, start in servers:
            say(f"starting {server} ({opts.workers} worker{'s' if opts.workers > 1 else ''})")
            kdc = start()
            try:
                for mode in opts.modes:
                    if server == "MIT" and mode not in MIT_MODES:
                        continue
                    say(f"{server} {mode}: {opts.clients} clients")
                    report.results.append(_run_mode(kdc, server, mode, deployment, opts))
            finally:
                kdc.stop()
    if opts.vs_mit and "ecdh" in opts.modes:
        report.notes.append("MIT krb5 1.20 has no ECDH: the ecdh row has no MIT peer.")
    return report


# --- the table ----------------------------------------------------------------------------------


def _fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)  # NaN -> "-"


def format_report(report: BenchReport) -> str:
    opts = report.options
    lines = []
    amount = f"{opts.requests} exchanges" + (f" or {opts.seconds:g} s" if opts.seconds is not None else "")
    lines.append(
        f"kerbtel bench kdc: {report.cpus} CPUs, workers={opts.workers}, clients={opts.clients}, {amount} per mode, "
        f"TCP (one connection per exchange), PKINIT in the first AS-REQ"
    )
    lines.append(
        "load generator: one process, asyncio; the AS-REQs are built before timing (fresh nonce, key pair and "
        "signature each), so the timed phase only connects, sends and reads; every reply is checked to be an "
        f"AS-REP, and the first per client and every {opts.verify_every}th are verified in full after timing"
    )
    lines.append("")
    lines.append("crypto ceiling: public-key work the KDC must do per exchange (one core, `cryptography` in this process),")
    lines.append("then all its crypto with the symmetric part (common.crypto as kdcd calls it):")
    for mode, ceiling in report.ceilings.items():
        parts = " + ".join(f"{name} {1e3 * s:.3f}" for name, s in ceiling.parts.items())
        lines.append(f"  {mode:<5} {1e3 * ceiling.seconds:6.3f} ms -> {ceiling.rate:6.0f}/s per core   ({parts} ms)")
        if ceiling.symmetric:
            parts = " + ".join(f"{name} {1e3 * s:.3f}" for name, s in ceiling.symmetric.items())
            lines.append(f"        {1e3 * ceiling.total_seconds:6.3f} ms -> {1 / ceiling.total_seconds:6.0f}/s per core   "
                         f"with the symmetric crypto ({parts} ms)")
        if ceiling.skippable:
            lines.append(
                f"        {1e3 * ceiling.reuse_seconds:6.3f} ms -> {1 / ceiling.reuse_seconds:6.0f}/s per core   "
                f"with KDC key reuse (dh_key_reuse_seconds and a clientDHNonce, which this load generator does not send)"
            )
    lines.append("")
    header = (f"{'mode':<5} {'KDC':<8} {'ok':>6} {'err':>4} {'full':>5} {'exch/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'KDC ms/exch':>11} {'KDC cores':>9} {'gen ms/exch':>11} {'gen cores':>9} {'crypto %':>8}")
    lines.append(header)
    lines.append("-" * len(header))
    for r in report.results:
        ceiling = report.ceilings.get(r.mode)
        share = 100 * ceiling.seconds * 1000 / r.kdc_ms if ceiling and r.ok and r.kdc_cpu > 0 else float("nan")
        lines.append(
            f"{r.mode:<5} {r.server:<8} {r.ok:>6} {r.errors:>4} {r.verified:>5} {_fmt(r.rate, '8.1f')} "
            f"{_fmt(r.percentile(0.5), '7.1f')} {_fmt(r.percentile(0.99), '7.1f')} {_fmt(r.kdc_ms, '11.3f')} "
            f"{_fmt(r.kdc_cores, '9.2f')} {_fmt(r.gen_ms, '11.3f')} {_fmt(r.gen_cores, '9.2f')} {_fmt(share, '7.0f')}%"
        )
    lines.append(
        f"full = replies verified in full; KDC ms/exch = CPU of the KDC's process tree (/proc utime+stime) per exchange; "
        f"KDC cores = its CPU seconds per second ({opts.workers} = saturated, so exch/s measures the KDC); "
        f"gen = this process in the timed phase; crypto % = ceiling / KDC ms"
    )
    prep = [r for r in report.results if r.ok]
    if prep:
        lines.append(
            "building one request before timing cost the generator "
            + ", ".join(f"{r.mode}/{r.server} {r.prep_ms:.2f}" for r in prep) + " ms (not in the timed phase)"
        )
    starved = [r for r in report.results if r.ok and r.kdc_cores < 0.85 * opts.workers]
    for r in starved:
        lines.append(
            f"note: {r.server} {r.mode} kept only {r.kdc_cores:.2f} of {opts.workers} core(s) busy: its exch/s is limited "
            f"by the load generator or the network, not by the KDC; compare KDC ms/exch"
        )
    if opts.vs_mit:
        lines.append("")
        lines.append("kerbtel / MIT:")
        for mode in opts.modes:
            ours, theirs = report.result("kerbtel", mode), report.result("MIT", mode)
            if ours is None or theirs is None or not ours.ok or not theirs.ok:
                continue
            if not ours.kdc_cpu or not theirs.kdc_cpu:  # CPU is counted in clock ticks: a tiny run may show none
                lines.append(f"  {mode:<5} throughput x{ours.rate / theirs.rate:.2f}; KDC CPU too small to measure "
                             f"in this run (use more --requests)")
                continue
            lines.append(
                f"  {mode:<5} throughput x{ours.rate / theirs.rate:.2f}; KDC CPU per exchange kerbtel {ours.kdc_ms:.3f} ms, "
                f"MIT {theirs.kdc_ms:.3f} ms: per-core capacity x{theirs.kdc_ms / ours.kdc_ms:.2f}"
            )
            ceiling = report.ceilings.get(mode)
            if ceiling is not None:
                budget = theirs.kdc_ms / 2
                need = 1e3 * ceiling.total_seconds
                verdict = ("the crypto leaves room for it" if need < budget
                           else "impossible on this machine: the mandatory crypto alone exceeds it")
                lines.append(
                    f"        2x MIT needs <= {budget:.3f} ms/exchange; the mandatory crypto is {need:.3f} ms "
                    f"({100 * need / budget:.0f}% of that budget, leaving {budget - need:.3f} ms for everything else): {verdict}"
                )
    errors = [r for r in report.results if r.first_error]
    for r in errors:
        lines.append(f"{r.server} {r.mode}: {r.errors} failed; first: {r.first_error}")
    lines.extend(report.notes)
    return "\n".join(lines)
