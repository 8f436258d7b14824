"""TOML into frozen dataclasses: types, defaults, unknown keys, validators, and one exact message
per mistake, naming the dotted key (and the file and line when the config came from a file)."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import ConfigError, HostPort, Port, Range, config_from_dict, load_config, parse_hostport
from common.logsetup import LoggingConfig


class Backend(enum.Enum):
    SQLITE = "sqlite"
    MEMORY = "memory"


def _realm_name(value: str) -> str:
    if not value or value != value.upper():
        raise ValueError(f"realm names are upper case, got {value!r}")
    return value


@dataclass(frozen=True)
class Listener:
    host: str = "0.0.0.0"
    port: Port = 88
    idle_timeout: Annotated[float, Range(0.1, 3600)] = 30.0


@dataclass(frozen=True)
class Realm:
    name: str = field(metadata={"validate": _realm_name})
    kdcs: tuple[HostPort, ...] = ()


@dataclass(frozen=True)
class Kdc:
    realm: str
    tcp: Listener = Listener()
    udp: Listener = Listener()
    database: Path = Path("kdc.sqlite")
    backend: Backend = Backend.SQLITE
    policy: Literal["strict", "lenient"] = "strict"
    max_skew: Annotated[int, Range(0, 3600)] = 300
    renewable: bool = True
    realms: tuple[Realm, ...] = ()
    trust_anchors: list[Path] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    peer: HostPort | None = None

    def __post_init__(self) -> None:
        if self.tcp.port and self.tcp.port == self.udp.port and self.tcp.host != self.udp.host:
            raise ValueError("tcp and udp share a port, so they must share a host")


@dataclass(frozen=True)
class KdcdConfig:
    kdc: Kdc
    logging: LoggingConfig = LoggingConfig()


FULL = """
[logging]
level = "debug"
format = "json"

[kdc]
realm = "EXAMPLE.TEST"
database = "/var/lib/kerbtel/kdc.sqlite"
backend = "memory"
policy = "lenient"
max_skew = 120
renewable = false
trust_anchors = ["/etc/kerbtel/ca.pem", "operator-ca.pem"]
labels = { site = "lab" }
peer = "[2001:db8::1]:88"

[kdc.tcp]
port = 8888
idle_timeout = 5

[[kdc.realms]]
name = "EXAMPLE.TEST"
kdcs = ["kdc1.example.test:88", "[::1]:1088"]

[[kdc.realms]]
name = "OTHER.TEST"
"""


def test_full_config():
    cfg = load_config(FULL, KdcdConfig)
    assert cfg.logging == LoggingConfig(level="debug", format="json")
    kdc = cfg.kdc
    assert kdc.realm == "EXAMPLE.TEST"
    assert kdc.tcp == Listener(port=8888, idle_timeout=5.0) and isinstance(kdc.tcp.idle_timeout, float)
    assert kdc.udp == Listener()  # left out: defaults
    assert kdc.database == Path("/var/lib/kerbtel/kdc.sqlite")
    assert kdc.backend is Backend.MEMORY and kdc.policy == "lenient"
    assert (kdc.max_skew, kdc.renewable) == (120, False)
    assert kdc.trust_anchors == [Path("/etc/kerbtel/ca.pem"), Path("operator-ca.pem")]  # from text: as written
    assert kdc.labels == {"site": "lab"}
    assert kdc.peer == HostPort("2001:db8::1", 88)
    assert kdc.realms == (
        Realm("EXAMPLE.TEST", (HostPort("kdc1.example.test", 88), HostPort("::1", 1088))),
        Realm("OTHER.TEST"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        kdc.realm = "X"  # type: ignore[misc]


def test_defaults_and_missing_nested_tables():
    cfg = load_config('kdc.realm = "EXAMPLE.TEST"', KdcdConfig)
    assert cfg == KdcdConfig(Kdc(realm="EXAMPLE.TEST"))


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(text, KdcdConfig)
    return str(info.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[kdc]\nrealm = "R"\n[kdc.tcp]\nport = "abc"', 'kdc.tcp.port: expected an integer 0-65535, got "abc"'),
        ('[kdc]\nrealm = "R"\ntcp.port = 70000', "kdc.tcp.port: expected an integer 0-65535, got 70000"),
        ('[kdc]\nrealm = "R"\ntcp.port = true', "kdc.tcp.port: expected an integer 0-65535, got true"),
        ('[kdc]\nrealm = "R"\ntcp.port = 88.0', "kdc.tcp.port: expected an integer 0-65535, got 88.0"),
        ('[kdc]\nrealm = "R"\ntcp.idle_timeout = 0', "kdc.tcp.idle_timeout: expected a number 0.1-3600, got 0"),
        ('[kdc]\nrealm = "R"\ntcp.idle_timeout = "5s"', 'kdc.tcp.idle_timeout: expected a number 0.1-3600, got "5s"'),
        ('[kdc]\nrealm = "R"\nmax_skew = -1', "kdc.max_skew: expected an integer 0-3600, got -1"),
        ("[kdc]\nrealm = 7", "kdc.realm: expected a string, got 7"),
        ('[kdc]\nrealm = "R"\nrenewable = "yes"', 'kdc.renewable: expected a boolean (true or false), got "yes"'),
        ('[kdc]\nrealm = "R"\ndatabase = ""', 'kdc.database: expected a non-empty path string, got ""'),
        ('[kdc]\nrealm = "R"\npolicy = "loose"', 'kdc.policy: expected one of "strict", "lenient", got "loose"'),
        ('[kdc]\nrealm = "R"\nbackend = "ldap"', 'kdc.backend: expected one of "sqlite", "memory", got "ldap"'),
        ("[kdc]\ntcp.port = 88", "kdc.realm: missing required key"),
        ("[logging]\nlevel = 'info'", "kdc.realm: missing required key"),
        ('[kdc]\nrealm = "R"\ntcp.prot = 88', "kdc.tcp.prot: unknown key; did you mean 'port'?"),
        ('[kdc]\nrealm = "R"\nzzz = 1', "kdc.zzz: unknown key; expected one of: realm, tcp, udp, database,"),
        ('verbose = true\n[kdc]\nrealm = "R"', "verbose: unknown key; expected one of: kdc, logging"),
        ('kdc = "EXAMPLE.TEST"', 'kdc: expected a table, got "EXAMPLE.TEST"'),
        ('[kdc]\nrealm = "R"\ntrust_anchors = "ca.pem"', 'kdc.trust_anchors: expected an array, got "ca.pem"'),
        ('[kdc]\nrealm = "R"\ntrust_anchors = ["a", 1]', "kdc.trust_anchors[1]: expected a non-empty path string, got 1"),
        ('[kdc]\nrealm = "R"\nlabels = { site = 1 }', "kdc.labels.site: expected a string, got 1"),
        ('[kdc]\nrealm = "R"\npeer = "::1"', "kdc.peer: IPv6 addresses need brackets"),
        ('[kdc]\nrealm = "R"\npeer = 88', 'kdc.peer: expected "host:port" (IPv6 as "[::1]:88"), got 88'),
        ('[kdc]\nrealm = "R"\n[[kdc.realms]]\nname = "A"\n[[kdc.realms]]\nname = "b.test"',
         "kdc.realms[1].name: realm names are upper case, got 'b.test'"),
        ('[kdc]\nrealm = "R"\n[[kdc.realms]]\nname = "A"\nkdcs = ["kdc:99999"]',
         "kdc.realms[0].kdcs[0]: port must be an integer 0-65535, got '99999' in 'kdc:99999'"),
        ('[kdc]\nrealm = "R"\ntcp.host = "a"\nudp.host = "b"',
         "kdc: tcp and udp share a port, so they must share a host"),
        ('[logging]\nlevel = "trace"\n[kdc]\nrealm = "R"',
         'logging.level: expected one of "debug", "info", "warning", "error", got "trace"'),
    ],
)
def test_error_messages(toml, message):
    assert error(toml).startswith(message)


def test_toml_syntax_error():
    assert error('[kdc]\nrealm = "unterminated').startswith("invalid TOML: ")


def test_errors_from_a_file_name_the_file_and_line(tmp_path):
    path = tmp_path / "kdcd.toml"
    path.write_text(FULL.replace("port = 8888", 'port = "8888"'))
    with pytest.raises(ConfigError) as info:
        load_config(path, KdcdConfig)
    line = FULL.splitlines().index("port = 8888") + 1
    assert str(info.value) == f'{path}:{line}: kdc.tcp.port: expected an integer 0-65535, got "8888"'
    assert (info.value.key, info.value.line, info.value.source) == ("kdc.tcp.port", line, str(path))


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        ('[kdc]\nrealm = "R"\n\n[[kdc.realms]]\nname = "A"\n[[kdc.realms]]\nname = "b"\n', 7),
        ('[kdc]\nrealm = "R"\ntcp = { port = -1 }\n', 3),  # inline table: the line of `tcp =`
        ('[kdc]\nrealm = "R"\n[kdc.tcp]\nhost = "a"\n[kdc.udp]\nhost = "b"\n', 1),  # __post_init__: [kdc]
        ('\n[kdc]\ntcp.port = 1\n', 2),  # missing kdc.realm: the table that lacks it
        ('[kdc.tcp]\nport = 1\n', None),  # ... unless that table is only implied: no hint
        ('[kdc]\n"realm" = 5\n', 2),
    ],
)
def test_line_hints(tmp_path, toml, line):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), KdcdConfig)
    assert info.value.line == line, str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read config file: No such file"):
        load_config(tmp_path / "missing.toml", KdcdConfig)


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    path = tmp_path / "etc" / "kdcd.toml"
    path.parent.mkdir()
    path.write_text(FULL)
    kdc = load_config(path, KdcdConfig).kdc
    assert kdc.trust_anchors == [Path("/etc/kerbtel/ca.pem"), tmp_path / "etc" / "operator-ca.pem"]
    assert kdc.database == Path("/var/lib/kerbtel/kdc.sqlite")


def test_bytes_and_dict_sources():
    assert load_config(b'kdc.realm = "R"', KdcdConfig).kdc.realm == "R"
    assert config_from_dict({"kdc": {"realm": "R"}}, KdcdConfig).kdc.realm == "R"


def test_unsupported_schema_type_is_a_programming_error():
    @dataclass(frozen=True)
    class Odd:
        when: complex = 0j

    with pytest.raises(TypeError, match="unsupported field type"):
        config_from_dict({"when": 1}, Odd)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:88", ("127.0.0.1", 88)),
        ("kdc.example.test:750", ("kdc.example.test", 750)),
        ("[::1]:88", ("::1", 88)),
        ("[fe80::1%eth0]:5060", ("fe80::1%eth0", 5060)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_hostport(text, expected):
    assert parse_hostport(text) == HostPort(*expected)
    assert str(parse_hostport(text)) == text


def test_parse_hostport_default_port():
    assert parse_hostport("kdc.example.test", default_port=88) == ("kdc.example.test", 88)
    assert parse_hostport("[::1]", default_port=88) == ("::1", 88)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kdc.example.test", "missing port"),
        ("::1:88", "IPv6 addresses need brackets"),
        ("[::1:88", "bad IPv6 address form"),
        ("[::1]88", "bad IPv6 address form"),
        (":88", "missing host"),
        ("[]:88", "missing host"),
        ("host:", "port must be an integer 0-65535"),
        ("host:65536", "port must be an integer 0-65535"),
        ("host:-1", "port must be an integer 0-65535"),
        ("host:8a", "port must be an integer 0-65535"),
    ],
)
def test_parse_hostport_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_hostport(text)


@given(
    host=st.one_of(st.ip_addresses().map(str), st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,3}", fullmatch=True)),
    port=st.integers(0, 65535),
)
def test_hostport_round_trip(host, port):
    assert parse_hostport(str(HostPort(host, port))) == (host, port)
