"""ctad's configuration file (TOML), loaded with `common.config` into frozen dataclasses.

    [cta]
    identity = "/etc/kerbtel/cta"    # required: cert.pem, key.pem (0600), issuer.pem[, device.pem]
    numbers = ["+15551230001"]        # the lines to REGISTER (none for an unprovisioned CTA)
    ccache = "/var/lib/kerbtel/ctad.ccache"   # MIT ccache, 0600; reused across restarts while valid
    local = "0.0.0.0:0"              # the one UDP socket for key management and ESP

    [kdc]
    address = "kdc.example.test:88"   # required
    transport = "tcp"                 # tcp | udp
    mode = "dh"                       # dh | ecdh | rsa (PKINIT reply-key delivery)
    ticket_lifetime = 604800          # seconds asked for (the KDC may give less)
    renew_before = 300                # a new PKINIT this long before the ticket ends

    [sc]
    principal = "sc/sc1.example.test@EXAMPLE.TEST"   # required
    km = "sc1.example.test:1293"      # required
    esp = "sc1.example.test:4500"     # required
    suites = ["aes-gcm-16", "aes-cbc-sha256", "3des-sha1"]
    retransmit_initial = 1.0          # AP Request retransmission backoff, seconds
    retransmit_max = 32.0

    [signaling]
    keepalive_interval = 30.0         # OPTIONS to the SC
    keepalive_timeout = 5.0           # no answer within this: the SC is gone, re-key
    register_expires = 3600

    [backoff]                         # between re-establishment attempts after a failure
    initial = 1.0
    max = 60.0
    jitter = 0.3                      # +- this fraction, so CTAs do not retry in lock step

    [line]                            # the line side for softphones (ctad/line.py); absent: no calls
    listen = "127.0.0.1:5062"         # SIP registrar/UA on UDP; softphones dial sip:NUMBER@HOST:PORT
    phone = "127.0.0.1:5070"          # optional: rung when no softphone registered the number
    register_min_expires = 10
    register_max_expires = 86400
    ring_timeout = 120.0              # an unanswered phone is CANCELled, the caller gets 480
    t1 = 0.5                          # SIP T1 on the line side

    [media]                           # the per-call media relay (ctad/media.py)
    host = "127.0.0.1"                # network leg: where the remote CTA sends SRTP (goes into SDP)
    backend = "auto"                  # auto (libsrtp when installed) | libsrtp | python

    [echo]                            # echo mode (ctad/echo.py): a network server, no line side
    enabled = true                    # answer every call to [cta] numbers, play the audio back
    max_duration = 300.0              # hang up this many seconds after the answer
    max_calls = 16                    # more at once get 486

    [key_log]
    path = "keys.jsonl"               # opt-in (mode 0600)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from common.config import ConfigError, HostPort, Range, load_config
from common.logsetup import LoggingConfig

from scd.config import SUITE_NAMES, _suites

__all__ = ["CtadConfig", "load_ctad_config"]


def _numbers(values: list[str]) -> list[str]:
    from common.pki import normalise_phone_number

    out = []
    for value in values:
        try:
            out.append(normalise_phone_number(value))
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
    if len(set(out)) != len(out):
        raise ValueError("a number is listed twice")
    return out


@dataclass(frozen=True)
class CtaSection:
    identity: Path
    ccache: Path
    numbers: list[str] = field(default_factory=list, metadata={"validate": _numbers})
    principal: str = ""  # default: the certificate's id-pkinit-san
    local: HostPort = HostPort("0.0.0.0", 0)


@dataclass(frozen=True)
class KdcSection:
    address: HostPort
    transport: Literal["tcp", "udp"] = "tcp"
    mode: Literal["dh", "ecdh", "rsa"] = "dh"
    anchors: list[Path] = field(default_factory=list)  # default: identity/issuer.pem
    ticket_lifetime: Annotated[int, Range(60, 90 * 86400)] = 7 * 86400
    renew_before: Annotated[int, Range(0, 86400)] = 300
    timeout: Annotated[float, Range(0.1, 300)] = 10.0


@dataclass(frozen=True)
class ScSection:
    principal: str
    km: HostPort
    esp: HostPort
    suites: list[str] = field(default_factory=lambda: list(SUITE_NAMES), metadata={"validate": _suites})
    retransmit_initial: Annotated[float, Range(0.05, 60)] = 1.0
    retransmit_max: Annotated[float, Range(0.05, 3600)] = 32.0


@dataclass(frozen=True)
class SignalingSection:
    domain: str = ""  # default: the SC principal's host part
    sip_port: Annotated[int, Range(1, 65535)] = 5060
    keepalive_interval: Annotated[float, Range(0.1, 86400)] = 30.0
    keepalive_timeout: Annotated[float, Range(0.05, 3600)] = 5.0
    register_expires: Annotated[int, Range(1, 7 * 86400)] = 3600
    t1: Annotated[float, Range(0.01, 10)] = 0.5


@dataclass(frozen=True)
class BackoffSection:
    initial: Annotated[float, Range(0.01, 3600)] = 1.0
    max: Annotated[float, Range(0.01, 86400)] = 60.0
    jitter: Annotated[float, Range(0, 1)] = 0.3

    def __post_init__(self) -> None:
        if self.initial > self.max:
            raise ValueError("initial is larger than max")


@dataclass(frozen=True)
class LineSection:
    listen: HostPort | None = None  # None: no line side, and the CTA takes no calls
    phone: HostPort | None = None
    register_min_expires: Annotated[int, Range(1, 86400)] = 10
    register_max_expires: Annotated[int, Range(1, 7 * 86400)] = 86400
    ring_timeout: Annotated[float, Range(1, 3600)] = 120.0
    t1: Annotated[float, Range(0.01, 10)] = 0.5
    # SDES-SRTP with the softphones (ctad/sdes.py): off (plain RTP only; an RTP/SAVP offer gets
    # 488) | optional (a phone offering a=crypto gets SRTP) | sdes (we offer it to phones too)
    srtp: Literal["off", "optional", "sdes"] = "optional"

    def __post_init__(self) -> None:
        if self.register_min_expires > self.register_max_expires:
            raise ValueError("register_min_expires is larger than register_max_expires")


@dataclass(frozen=True)
class MediaSection:
    host: str = "127.0.0.1"
    backend: Literal["auto", "libsrtp", "python"] = "auto"
    # UDP ports for the media sockets (per call: the network leg, the line leg's RTP/RTCP pair);
    # both 0: any free port. A firewall in front of the CTA opens this range.
    port_min: Annotated[int, Range(0, 65535)] = 0
    port_max: Annotated[int, Range(0, 65535)] = 0

    def __post_init__(self) -> None:
        if (self.port_min == 0) != (self.port_max == 0):
            raise ValueError("port_min and port_max go together (both 0: any free port)")
        if self.port_min and self.port_max - self.port_min < 3:
            raise ValueError(f"port_min-port_max {self.port_min}-{self.port_max}: a call needs at least 3 ports "
                             "(network leg, line RTP and RTCP)")

    @property
    def port_range(self) -> tuple[int, int] | None:
        return (self.port_min, self.port_max) if self.port_min else None


@dataclass(frozen=True)
class EchoSection:
    """Echo mode (ctad/echo.py): the echo test service answers calls to `[cta] numbers`."""

    enabled: bool = False
    max_duration: Annotated[float, Range(1, 86400)] = 300.0  # seconds from the answer
    max_calls: Annotated[int, Range(1, 10000)] = 16


@dataclass(frozen=True)
class KeyLogSection:
    path: Path | None = None


@dataclass(frozen=True)
class CtadConfig:
    cta: CtaSection
    kdc: KdcSection
    sc: ScSection
    signaling: SignalingSection = field(default_factory=SignalingSection)
    backoff: BackoffSection = field(default_factory=BackoffSection)
    line: LineSection = field(default_factory=LineSection)
    media: MediaSection = field(default_factory=MediaSection)
    key_log: KeyLogSection = field(default_factory=KeyLogSection)
    echo: EchoSection = field(default_factory=EchoSection)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def domain(self) -> str:
        if self.signaling.domain:
            return self.signaling.domain
        comps = self.sc.principal.split("@", 1)[0].split("/")
        return comps[1] if len(comps) > 1 else comps[0]


def load_ctad_config(path: str | os.PathLike[str]) -> CtadConfig:
    cfg = load_config(Path(path), CtadConfig)
    source = str(path)
    identity = cfg.cta.identity
    for name in ("cert.pem", "key.pem"):
        if not (identity / name).is_file():
            raise ConfigError("cta.identity", f"{identity} has no {name}", source=source)
    key_mode = (identity / "key.pem").stat().st_mode
    if key_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("cta.identity", f"{identity / 'key.pem'} is readable by group or others (chmod 600)",
                          source=source)
    if not cfg.kdc.anchors and not (identity / "issuer.pem").is_file():
        raise ConfigError("kdc.anchors", f"no anchors given and {identity} has no issuer.pem", source=source)
    for i, anchor in enumerate(cfg.kdc.anchors):
        if not anchor.is_file():
            raise ConfigError(f"kdc.anchors[{i}]", f"{anchor} does not exist", source=source)
    from common.principal import Principal, PrincipalSyntaxError

    for key, value in (("sc.principal", cfg.sc.principal), ("cta.principal", cfg.cta.principal)):
        if value:
            try:
                Principal.parse(value)
            except PrincipalSyntaxError as exc:
                raise ConfigError(key, str(exc), source=source) from None
    if cfg.echo.enabled:
        if cfg.line.listen is not None:
            raise ConfigError("echo.enabled", "an echo server has no line side: remove [line] listen", source=source)
        if not cfg.cta.numbers:
            raise ConfigError("cta.numbers", "an echo server answers calls to its numbers: list at least one",
                              source=source)
    return cfg
