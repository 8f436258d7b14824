"""kdcd's configuration file (TOML), loaded with `common.config` into frozen dataclasses.

    workers = 1                      # N > 1: N processes share the ports with SO_REUSEPORT

    [listen]
    tcp = ["0.0.0.0:88"]             # "host" alone means port 88; port 0 = any free port (tests)
    udp = ["0.0.0.0:88"]

    [tcp]
    max_message_size = 65536         # bytes; a longer length prefix gets KRB_ERR_FIELD_TOOLONG
    idle_timeout = 30.0              # seconds without a byte (or to finish a started message)
    max_connections = 1024           # per worker; connections beyond it are closed at once

    [udp]
    max_reply_size = 1400            # larger replies become KRB_ERR_RESPONSE_TOO_BIG (retry on TCP)
    max_request_size = 65535         # the read buffer; longer datagrams are dropped

    [database]
    path = "kdcd.db"
    master_key = "kdcd.db.mkey"      # default: the database path + ".mkey"

    [logging]                        # common.logsetup.LoggingConfig
    level = "info"

    [kdc]                            # kdcd.policy.KdcPolicy, field for field
    realm = "EXAMPLE.TEST"
    ...

`load_kdcd_config(path)` parses and type-checks (ConfigError naming the dotted key) and then
runs `check_files`: the database and master key exist and are readable, the master key and every
private-key file named in [kdc] are not readable by group or others, every other file named in
[kdc] exists and is readable, the realm is not empty. All of it before the daemon reports ready.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from common.config import ConfigError, HostPort, Range, load_config, parse_hostport
from common.logsetup import LoggingConfig

from kdcd.policy import KdcPolicy

__all__ = [
    "DEFAULT_PORT",
    "DatabaseConfig",
    "KdcAddress",
    "KdcPolicy",
    "KdcdConfig",
    "ListenConfig",
    "TcpConfig",
    "UdpConfig",
    "check_files",
    "load_kdcd_config",
]

DEFAULT_PORT = 88


class KdcAddress(HostPort):
    """A listen address "host:port"; a bare host means port 88; port 0 picks a free port."""

    __slots__ = ()

    @classmethod
    def from_config(cls, value: object) -> HostPort:
        if not isinstance(value, str):
            raise ValueError(f'expected "host:port" (IPv6 as "[::1]:88"), got {value!r}')
        return parse_hostport(value, default_port=DEFAULT_PORT)


def _unique(addresses: list[HostPort]) -> list[HostPort]:
    if len(set(addresses)) != len(addresses):
        raise ValueError("the same address is listed twice")
    return addresses


@dataclass(frozen=True)
class ListenConfig:
    tcp: list[KdcAddress] = field(
        default_factory=lambda: [HostPort("0.0.0.0", DEFAULT_PORT)], metadata={"validate": _unique}
    )
    udp: list[KdcAddress] = field(
        default_factory=lambda: [HostPort("0.0.0.0", DEFAULT_PORT)], metadata={"validate": _unique}
    )

    def __post_init__(self) -> None:
        if not self.tcp and not self.udp:
            raise ValueError("nothing to listen on: tcp and udp are both empty")


@dataclass(frozen=True)
class TcpConfig:
    # RFC 4120 7.2.2: the length is 31 bits; we cap it far lower (MIT's own default cap is ~1 MiB).
    max_message_size: Annotated[int, Range(64, 16 * 1024 * 1024)] = 64 * 1024
    idle_timeout: Annotated[float, Range(0.1, 3600)] = 30.0
    max_connections: Annotated[int, Range(1, 1_000_000)] = 1024


@dataclass(frozen=True)
class UdpConfig:
    max_reply_size: Annotated[int, Range(200, 65507)] = 1400
    max_request_size: Annotated[int, Range(512, 65535)] = 65535


@dataclass(frozen=True)
class DatabaseConfig:
    path: Path
    master_key: Path | None = None  # default: path + ".mkey", like `kerbtel db init`

    @property
    def master_key_path(self) -> Path:
        return self.master_key if self.master_key is not None else Path(str(self.path) + ".mkey")


@dataclass(frozen=True)
class KdcdConfig:
    kdc: KdcPolicy
    database: DatabaseConfig
    workers: Annotated[int, Range(1, 256)] = 1
    listen: ListenConfig = field(default_factory=ListenConfig)
    tcp: TcpConfig = field(default_factory=TcpConfig)
    udp: UdpConfig = field(default_factory=UdpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def realm(self) -> str:
        return str(self.kdc.realm)

    def with_listen(self, tcp: list[HostPort], udp: list[HostPort]) -> KdcdConfig:
        """The same configuration listening on other (resolved) addresses."""
        return dataclasses.replace(self, listen=ListenConfig(tcp=list(tcp), udp=list(udp)))


# --- checks beyond the types -----------------------------------------------------------------


def _readable(key: str, path: Path, *, private: bool, source: str | None) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(key, f"{path}: no such file", source=source) from None
    except OSError as exc:
        raise ConfigError(key, f"{path}: {exc.strerror}", source=source) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(key, f"{path}: not a regular file", source=source)
    if not os.access(path, os.R_OK):
        raise ConfigError(key, f"{path}: not readable by this user", source=source)
    if private and st.st_mode & 0o077:
        raise ConfigError(
            key, f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets group or others read it; chmod 600", source=source
        )


def _is_private_field(name: str) -> bool:
    words = name.lower().split("_")
    return any(w in ("key", "keys", "privkey", "secret", "stash", "mkey") for w in words)


def _policy_paths(policy: object) -> list[tuple[str, Path]]:
    """Every Path (or list/tuple of Paths) field of the [kdc] table, as (field name, path)."""
    out: list[tuple[str, Path]] = []
    if not dataclasses.is_dataclass(policy):
        return out
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        if isinstance(value, Path):
            out.append((f.name, value))
        elif isinstance(value, (list, tuple)):
            out.extend((f"{f.name}[{i}]", v) for i, v in enumerate(value) if isinstance(v, Path))
    return out


def check_files(cfg: KdcdConfig, *, source: str | None = None) -> None:
    """What the types cannot say; raises ConfigError naming the key. Reads no file contents."""
    realm = getattr(cfg.kdc, "realm", "")
    if not isinstance(realm, str) or not realm.strip():
        raise ConfigError("kdc.realm", "must not be empty", source=source)
    _readable("database.path", cfg.database.path, private=False, source=source)
    _readable(
        "database.master_key" if cfg.database.master_key is not None else "database.path",
        cfg.database.master_key_path,
        private=True,
        source=source,
    )
    for name, path in _policy_paths(cfg.kdc):
        _readable(f"kdc.{name}", path, private=_is_private_field(name.split("[")[0]), source=source)


def load_kdcd_config(path: str | os.PathLike[str], *, check: bool = True) -> KdcdConfig:
    """Load and validate kdcd.toml (ConfigError on the first problem, naming its key)."""
    cfg = load_config(Path(path), KdcdConfig)
    if check:
        check_files(cfg, source=str(path))
    return cfg
