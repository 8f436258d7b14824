"""kdcd's configuration (kdcd/config.py): schema, defaults, file checks, and the exit-2 path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.config import ConfigError, HostPort, load_config
from kdcd.config import KdcdConfig, check_files, load_kdcd_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path):
    """A directory with a database, a 0600 master key and PKINIT files; returns a config writer."""
    (tmp_path / "kdcd.db").write_bytes(b"")
    for name in ("kdcd.db.mkey", "kdc.key"):
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).chmod(0o600)
    for name in ("kdc.pem", "operator.pem", "manufacturer.pem"):
        (tmp_path / name).write_bytes(b"")

    def write(text: str) -> Path:
        path = tmp_path / "kdcd.toml"
        path.write_text(text)
        return path

    return write


MINIMAL = '[database]\npath = "kdcd.db"\n[kdc]\nrealm = "EXAMPLE.TEST"\n'
FULL = """\
workers = 4
[listen]
tcp = ["0.0.0.0", "[::]:8888"]
udp = ["127.0.0.1:0"]
[tcp]
max_message_size = 100000
idle_timeout = 5
max_connections = 10
[udp]
max_reply_size = 1200
[database]
path = "kdcd.db"
master_key = "kdcd.db.mkey"
[logging]
level = "debug"
format = "json"
[kdc]
realm = "EXAMPLE.TEST"
kdc_certificate = "kdc.pem"
kdc_private_key = "kdc.key"
operator_anchors = ["operator.pem"]
manufacturer_anchors = ["manufacturer.pem"]
"""


def test_minimal_config_defaults(files):
    cfg = load_kdcd_config(files(MINIMAL))
    assert cfg.workers == 1
    assert cfg.listen.tcp == [HostPort("0.0.0.0", 88)] and cfg.listen.udp == [HostPort("0.0.0.0", 88)]
    assert cfg.tcp.max_message_size == 65536 and cfg.tcp.idle_timeout == 30.0
    assert cfg.udp.max_reply_size == 1400
    assert cfg.database.master_key_path == cfg.database.path.with_name("kdcd.db.mkey")
    assert cfg.database.path.is_absolute()  # relative to the config file's directory
    assert cfg.realm == "EXAMPLE.TEST"
    assert cfg.logging.level == "info"


def test_full_config(files):
    cfg = load_kdcd_config(files(FULL))
    assert cfg.workers == 4
    assert cfg.listen.tcp == [HostPort("0.0.0.0", 88), HostPort("::", 8888)]
    assert cfg.listen.udp == [HostPort("127.0.0.1", 0)]
    assert cfg.tcp.idle_timeout == 5.0 and cfg.tcp.max_connections == 10
    assert cfg.kdc.kdc_private_key.name == "kdc.key"
    assert [p.name for p in cfg.kdc.operator_anchors] == ["operator.pem"]


def test_example_config_parses():
    cfg = load_config(ROOT / "conf" / "kdcd.toml", KdcdConfig)  # types only: its files are not here
    assert cfg.realm == "EXAMPLE.TEST" and cfg.workers == 1
    assert cfg.listen.tcp == [HostPort("127.0.0.1", 88)]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("workers = 0\n" + MINIMAL, "workers", "expected an integer"),
        ('workers = "2"\n' + MINIMAL, "workers", "expected an integer"),
        ('[listen]\ntcp = ["127.0.0.1:abc"]\n' + MINIMAL, "listen.tcp[0]", "port must be an integer"),
        ('[listen]\ntcp = ["::1:88"]\n' + MINIMAL, "listen.tcp[0]", "IPv6 addresses need brackets"),
        ('[listen]\ntcp = ["a:1", "a:1"]\n' + MINIMAL, "listen.tcp", "listed twice"),
        ("[listen]\ntcp = []\nudp = []\n" + MINIMAL, "listen", "nothing to listen on"),
        ("[tcp]\nidle_timout = 3\n" + MINIMAL, "tcp.idle_timout", "did you mean 'idle_timeout'"),
        ("[tcp]\nmax_message_size = 10\n" + MINIMAL, "tcp.max_message_size", "expected an integer"),
        ("[udp]\nmax_reply_size = 100000\n" + MINIMAL, "udp.max_reply_size", "expected an integer"),
        ('[kdc]\nrealm = "A"\n', "database.path", "missing required key"),
        ('[database]\npath = "kdcd.db"\n[kdc]\nrealm = ""\n', "kdc", "not a valid Kerberos realm"),
        ('[database]\npath = "kdcd.db"\n[kdc]\nrealmm = "X"\n', "kdc.realmm", "unknown key"),
        ('[database]\npath = "kdcd.db"\n[kdc]\nkdc_certificate = "kdc.pem"\n', "kdc", "must be given together"),
    ],
)
def test_type_errors_name_the_key(files, text, key, problem):
    with pytest.raises(ConfigError) as info:
        load_kdcd_config(files(text))
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(str(files(text)))


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda d: (d / "kdcd.db").unlink(), "database.path", "no such file"),
        (lambda d: (d / "kdcd.db.mkey").chmod(0o644), "database.master_key", "chmod 600"),
        (lambda d: (d / "kdc.key").chmod(0o640), "kdc.kdc_private_key", "group or others"),
        (lambda d: (d / "kdc.pem").unlink(), "kdc.kdc_certificate", "no such file"),
        (lambda d: (d / "operator.pem").unlink(), "kdc.operator_anchors[0]", "no such file"),
        (lambda d: ((d / "kdc.pem").unlink(), (d / "kdc.pem").mkdir()), "kdc.kdc_certificate", "not a regular file"),
    ],
)
def test_file_checks_name_the_key(files, tmp_path, edit, key, problem):
    path = files(FULL)
    edit(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_kdcd_config(path)
    assert info.value.key == key
    assert problem in info.value.problem


def test_default_master_key_path_is_checked(files, tmp_path):
    (tmp_path / "kdcd.db.mkey").unlink()
    with pytest.raises(ConfigError) as info:
        load_kdcd_config(files(MINIMAL))
    assert info.value.key == "database.path" and "kdcd.db.mkey" in info.value.problem


def test_check_can_be_skipped(files, tmp_path):
    (tmp_path / "kdcd.db").unlink()
    cfg = load_kdcd_config(files(MINIMAL), check=False)
    with pytest.raises(ConfigError):
        check_files(cfg)


def test_daemon_exits_2_naming_the_key_before_ready(files, tmp_path):
    path = files('[listen]\ntcp = ["127.0.0.1:99999"]\n' + MINIMAL)
    proc = subprocess.run(
        [sys.executable, "-m", "kdcd", "-c", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": ""},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("kdcd: ")
    assert "listen.tcp[0]" in proc.stderr and "99999" in proc.stderr
    assert "ready" not in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line

    proc = subprocess.run(
        [sys.executable, "-m", "kdcd", "-c", str(tmp_path / "missing.toml")], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "cannot read config file" in proc.stderr
