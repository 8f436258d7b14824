"""scd's configuration file (TOML), loaded with `common.config` into frozen dataclasses.

    [listen]
    km = "0.0.0.0:1293"              # UDP key management (pktc); Wireshark decodes 1293 as pktc
    esp = "0.0.0.0:4500"             # UDP-encapsulated ESP (RFC 3948); tshark decodes 4500 as udpencap

    [sc]
    principal = "sc/sc1.example.test@EXAMPLE.TEST"     # required
    keytab = "/etc/kerbtel/sc.keytab"                   # required; SIGHUP re-reads it (new kvnos)
    suites = ["aes-gcm-16", "aes-cbc-sha256", "3des-sha1"]   # preference, strongest first
    sa_lifetime = 3600               # seconds an SA pair lives; Rekey is sent before the end
    grace_period = 300               # seconds the old SA keeps working after a Rekey
    ack_required = true              # the CTA must answer an AP Reply with SA Recovered
    max_skew = 300                   # authenticator clock skew (seconds)
    replay_cache_size = 100000       # authenticators remembered (client, ctime, cusec, nonce)
    replay_window = 64               # ESP anti-replay window (>= 64)

    [signaling]                      # scd.signaling.SignalingConfig, field for field
    min_expires = 60
    max_expires = 3600

    [key_log]
    path = "keys.jsonl"              # opt-in: SAs and AP-REP sub-keys as JSON lines (mode 0600)

    [calls]                          # scd.calls.CallConfig; absent: no calls (INVITE gets 405)
    owned = ["+15551230001", "+15551230100-+15551230199"]   # prefixes or equal-length ranges
    routes = { "+1555234" = "sc2" }  # dialed prefix -> peer SC name (a [[peering.peers]] name)
    aliases = { "911" = "+15552340911" }
    esp_suite = "AES-GCM-16"         # the CTA-to-CTA ESP suite the source SC hands out
    media_profile = "AES_CM_128_HMAC_SHA1_80"

    [peering]                        # scd.peers.PeeringConfig: the SC-to-SC ESP links
    kdc = "127.0.0.1:88"
    [[peering.peers]]
    name = "sc2"
    principal = "sc/sc2.example.test@EXAMPLE.TEST"
    km = "127.0.0.1:1293"
    esp = "127.0.0.1:4500"

    [li]                             # optional lawful intercept store (common/li.py)
    store = "li"                     # directory, 0700; one encrypted record per call
    public_key = "intercept.pub"     # the agency's X25519 public key (PEM)

    [logging]
    level = "info"

Relative paths are relative to the file's directory. `load_scd_config(path)` also checks that
the keytab exists, is not readable by group/others, and holds a key for the principal, that
every route names a configured peer, that no peer is this SC itself, and that the intercept
public key loads, so a bad `[calls]`/`[peering]`/`[li]` stops scd before READY=1.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from common.config import ConfigError, HostPort, Range, load_config
from common.esp import SUITE_3DES_SHA1, SUITE_AES_CBC_SHA256, SUITE_AES_GCM_16, Suite
from common.logsetup import LoggingConfig

from scd.calls import CallConfig
from scd.peers import PeeringConfig
from scd.signaling import SignalingConfig

__all__ = [
    "KeyLogConfig",
    "LiConfig",
    "ListenConfig",
    "ScConfig",
    "ScdConfig",
    "SUITE_NAMES",
    "load_scd_config",
    "suite_by_name",
]

DEFAULT_KM_PORT = 1293
DEFAULT_ESP_PORT = 4500

#: Configuration names of the ESP suites (docs/protocol.md, "Suites").
SUITE_NAMES: dict[str, Suite] = {
    "aes-gcm-16": SUITE_AES_GCM_16,
    "aes-cbc-sha256": SUITE_AES_CBC_SHA256,
    "3des-sha1": SUITE_3DES_SHA1,
}


def suite_by_name(name: str) -> Suite:
    try:
        return SUITE_NAMES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITE_NAMES)}") from None


def _suites(names: list[str]) -> tuple[str, ...]:
    if not names:
        raise ValueError("at least one suite is needed")
    for name in names:
        suite_by_name(name)
    if len(set(names)) != len(names):
        raise ValueError("a suite is listed twice")
    return tuple(names)


@dataclass(frozen=True)
class ListenConfig:
    km: HostPort = HostPort("0.0.0.0", DEFAULT_KM_PORT)
    esp: HostPort = HostPort("0.0.0.0", DEFAULT_ESP_PORT)

    def __post_init__(self) -> None:
        if self.km == self.esp and self.km.port != 0:
            raise ValueError("km and esp must be different ports (tshark decodes each port as one protocol)")


@dataclass(frozen=True)
class ScConfig:
    principal: str
    keytab: Path
    suites: list[str] = field(
        default_factory=lambda: list(SUITE_NAMES), metadata={"validate": _suites}
    )
    sa_lifetime: Annotated[int, Range(30, 7 * 86400)] = 3600
    grace_period: Annotated[int, Range(0, 86400)] = 300
    ack_required: bool = True
    max_skew: Annotated[int, Range(1, 3600)] = 300
    replay_cache_size: Annotated[int, Range(16, 10_000_000)] = 100_000
    replay_window: Annotated[int, Range(64, 4096)] = 64

    @property
    def suite_objects(self) -> tuple[Suite, ...]:
        return tuple(suite_by_name(n) for n in self.suites)


@dataclass(frozen=True)
class KeyLogConfig:
    """Opt-in key log for Wireshark (`kerbtel keys wireshark`); off unless `path` is set."""

    path: Path | None = None


@dataclass(frozen=True)
class LiConfig:
    """Lawful intercept: every call's record, encrypted to `public_key`, appended under `store`."""

    store: Path
    public_key: Path


@dataclass(frozen=True)
class ScdConfig:
    sc: ScConfig
    listen: ListenConfig = field(default_factory=ListenConfig)
    signaling: SignalingConfig = field(default_factory=SignalingConfig)
    calls: CallConfig | None = None
    peering: PeeringConfig = field(default_factory=PeeringConfig)
    li: LiConfig | None = None
    key_log: KeyLogConfig = field(default_factory=KeyLogConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        peers = {p.name for p in self.peering.peers}
        if self.calls is not None:
            for prefix, peer in self.calls.routes.items():
                if peer not in peers:
                    raise ValueError(f"calls.routes[{prefix!r}] names {peer!r}, which is not a [[peering.peers]] name")
        if self.li is not None and self.calls is None:
            raise ValueError("[li] needs [calls] (intercept records are written per call)")


def check_files(cfg: ScdConfig, source: str | None = None) -> None:
    path = cfg.sc.keytab
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError("sc.keytab", f"cannot read {path}: {exc.strerror}", source=source) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("sc.keytab", f"{path} is readable by group or others (chmod 600)", source=source)
    if not os.access(path, os.R_OK):
        raise ConfigError("sc.keytab", f"cannot read {path}", source=source)


def load_scd_config(path: str | os.PathLike[str]) -> ScdConfig:
    cfg = load_config(Path(path), ScdConfig)
    check_files(cfg, str(path))
    from common.keytab import Keytab, KeytabFormatError
    from common.principal import Principal, PrincipalSyntaxError

    try:
        principal = Principal.parse(cfg.sc.principal)
    except PrincipalSyntaxError as exc:
        raise ConfigError("sc.principal", str(exc), source=str(path)) from None
    try:
        keytab = Keytab.load(cfg.sc.keytab)
    except (OSError, KeytabFormatError) as exc:
        raise ConfigError("sc.keytab", f"{cfg.sc.keytab}: {exc}", source=str(path)) from None
    if not keytab.keys_for(principal):
        raise ConfigError("sc.keytab", f"{cfg.sc.keytab} holds no key for {principal}", source=str(path))
    for index, peer in enumerate(cfg.peering.peers):
        if peer.principal_object.same_name(principal):
            raise ConfigError(f"peering.peers[{index}].principal", "is this SC's own principal", source=str(path))
    if cfg.li is not None:
        from common.li import LiError, load_public_key

        try:
            load_public_key(cfg.li.public_key)
        except LiError as exc:
            raise ConfigError("li.public_key", str(exc), source=str(path)) from None
    return cfg
