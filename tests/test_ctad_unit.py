"""ctad pieces without sockets: backoff, configuration, and scd's configuration checks."""

from __future__ import annotations

import random

import pytest

from common.config import ConfigError
from ctad.service import Backoff


def test_backoff_doubles_to_max_with_jitter_and_resets():
    b = Backoff(0.5, 4.0, 0.3, random.Random(1))
    delays = [b.next() for _ in range(7)]
    bases = [0.5, 1, 2, 4, 4, 4, 4]
    assert all(base * 0.7 <= d <= base * 1.3 for d, base in zip(delays, bases))
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next() <= 0.65


def test_backoff_without_jitter_is_exact():
    b = Backoff(1.0, 60.0, 0.0)
    assert [b.next() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def _write(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_ctad_config_errors_name_the_key(tmp_path):
    from ctad.config import load_ctad_config

    (tmp_path / "id").mkdir()
    base = """
[cta]
identity = "id"
ccache = "cc"
numbers = ["{number}"]
[kdc]
address = "127.0.0.1:88"
[sc]
principal = "sc/sc1.example.test@EXAMPLE.TEST"
km = "127.0.0.1:1293"
esp = "127.0.0.1:4500"
suites = {suites}
"""
    with pytest.raises(ConfigError, match="cta.numbers"):
        load_ctad_config(_write(tmp_path, base.format(number="12ab", suites='["aes-gcm-16"]')))
    with pytest.raises(ConfigError, match="sc.suites.*unknown suite"):
        load_ctad_config(_write(tmp_path, base.format(number="+15551230001", suites='["rot13"]')))
    with pytest.raises(ConfigError, match="cta.identity.*cert.pem"):
        load_ctad_config(_write(tmp_path, base.format(number="+15551230001", suites='["aes-gcm-16"]')))


def test_scd_config_checks_keytab_and_ports(tmp_path):
    from scd.config import load_scd_config

    text = """
[listen]
km = "127.0.0.1:5000"
esp = "127.0.0.1:5000"
[sc]
principal = "sc/sc1.example.test@EXAMPLE.TEST"
keytab = "sc.keytab"
"""
    with pytest.raises(ConfigError, match="km and esp must be different"):
        load_scd_config(_write(tmp_path, text))
    with pytest.raises(ConfigError, match="sc.keytab"):
        load_scd_config(_write(tmp_path, text.replace('esp = "127.0.0.1:5000"', 'esp = "127.0.0.1:5001"')))
