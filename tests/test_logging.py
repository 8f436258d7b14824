"""Logging set-up: JSON/console rendering, contextvars, level filtering, redaction, counters."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.contextvars import bind_contextvars, clear_contextvars
from structlog.testing import capture_logs

from common.crypto.key import Key
from common.logsetup import Counters, configure_logging, get_logger, is_secret_name, redact_secrets

# Created before any configure_logging() call, as module-level loggers in daemons are.
MODULE_LOG = get_logger("kdcd.test")


@pytest.fixture(autouse=True)
def restore_logging():
    """configure_logging() changes process-wide state; put structlog and `logging` back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_line_fields():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    get_logger("scd.esp").info("sa installed", spi=0x1234)
    (line,) = json_lines(out)
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    assert line["level"] == "info"
    assert line["logger"] == "scd.esp"
    assert line["event"] == "sa installed"
    assert line["spi"] == 0x1234
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line["timestamp"])  # ISO 8601, UTC


def test_logger_created_before_configuration_follows_it():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    MODULE_LOG.info("hello")
    assert json_lines(out)[0]["logger"] == "kdcd.test"


def test_contextvars_are_merged_into_every_line():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    bind_contextvars(peer="192.0.2.7:5060", principal="cta/0011223344aa@EXAMPLE.TEST", call_id="c1", spi=7)
    get_logger("scd").info("invite")
    line = json_lines(out)[0]
    assert (line["peer"], line["principal"], line["call_id"], line["spi"]) == (
        "192.0.2.7:5060", "cta/0011223344aa@EXAMPLE.TEST", "c1", 7,
    )


@pytest.mark.parametrize(
    ("level", "expected"),
    [("debug", ["d", "i", "w", "e"]), ("info", ["i", "w", "e"]), ("warning", ["w", "e"]), ("error", ["e"])],
)
def test_level_filtering(level, expected):
    out = io.StringIO()
    configure_logging(level, "json", stream=out)
    log = get_logger("t")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in json_lines(out)] == expected


def test_bad_level_or_format_is_rejected():
    with pytest.raises(ValueError, match="log level"):
        configure_logging("verbose")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml")


def test_auto_format_is_json_on_real_stderr_when_not_a_tty(capsys):
    configure_logging("info")  # stream defaults to sys.stderr, captured (not a TTY) by pytest
    get_logger("ctad").warning("provisioning retry", attempt=2)
    (line,) = [json.loads(s) for s in capsys.readouterr().err.splitlines()]
    assert line["event"] == "provisioning retry" and line["attempt"] == 2


def test_auto_format_is_console_on_a_tty():
    out = FakeTty()
    configure_logging("info", stream=out)
    get_logger("kdcd").info("ready", port=88)
    text = out.getvalue()
    assert "ready" in text and "port" in text and "88" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_standard_library_records_use_the_same_format_and_redaction():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logging.getLogger("asyncio").warning("socket.send() raised %s", "EPIPE")
    line = json_lines(out)[0]
    assert (line["logger"], line["level"], line["event"]) == ("asyncio", "warning", "socket.send() raised EPIPE")


KEY = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")


def test_redaction_in_rendered_json():
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    get_logger("scd").debug(
        "sa", session_key=KEY.hex(), subkey="x", password="hunter2", blob=KEY, kvno=b"\x02",
        sa={"encKey": KEY.hex(), "spi": 5, "frames": [KEY]}, keytab="/etc/kerbtel/sc.keytab",
    )
    text = out.getvalue()
    assert KEY.hex() not in text and "hunter2" not in text and repr(KEY) not in text
    line = json_lines(out)[0]
    assert line["session_key"] == line["subkey"] == line["password"] == "[redacted]"
    assert line["blob"] == "[redacted 16 bytes]"
    assert line["sa"] == {"encKey": "[redacted]", "spi": 5, "frames": ["[redacted 16 bytes]"]}
    assert line["kvno"] == repr(b"\x02")  # 8 bytes or fewer: too short to be a key, kept
    assert line["keytab"] == "/etc/kerbtel/sc.keytab"


@dataclasses.dataclass(frozen=True)
class Packet:
    spi: int
    payload: bytes


@dataclasses.dataclass(frozen=True)
class Peer:
    host: str
    port: int


def test_redaction_looks_inside_dataclasses():
    with capture_logs(processors=[redact_secrets]) as logs:
        get_logger("scd").debug("esp", packet=Packet(7, KEY), peer=Peer("192.0.2.1", 5060), key=Key(18, KEY * 2))
    (entry,) = logs
    assert entry["packet"] == {"type": "Packet", "spi": 7, "payload": "[redacted 16 bytes]"}
    assert entry["peer"] == Peer("192.0.2.1", 5060)  # nothing to hide: the object itself, as is
    assert entry["key"] == "[redacted]"


def test_redaction_with_capture_logs():
    with capture_logs(processors=[redact_secrets]) as logs:
        get_logger("kdcd").info("as-req", reply_key=KEY, nonce=b"12345678", principal="alice@EXAMPLE.TEST")
    assert logs == [
        {"event": "as-req", "reply_key": "[redacted]", "nonce": b"12345678",
         "principal": "alice@EXAMPLE.TEST", "log_level": "info"}
    ]


@pytest.mark.parametrize(
    "name",
    ["key", "session_key", "subkey", "sessionKey", "enc-key", "password", "client_secret", "psk",
     "private_key", "passphrase", "PIN", "esp_keys"],
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["keytab", "monkey", "kvno", "enctype", "spi", "peer", "principal", "key_usage", "call_id"]
)
def test_names_that_are_not_secrets(name):
    assert not is_secret_name(name)


def test_exception_tracebacks_carry_no_local_variables():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        session_key = KEY  # noqa: F841 - a local a fancy traceback formatter would print
        raise ValueError("bad checksum")
    except ValueError:
        get_logger("kdcd").exception("decrypt failed")
    line = json_lines(out)[0]
    assert "ValueError: bad checksum" in line["exception"]
    assert KEY.hex() not in out.getvalue() and "a1b2" not in out.getvalue()


RESERVED = ("event", "level", "logger", "timestamp", "exc_info", "exception", "stack", "nested")


@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s not in RESERVED), secret=st.binary(min_size=9, max_size=64))
def test_no_long_bytes_value_ever_reaches_the_output(name, secret):
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, cache_loggers=False)
    get_logger("fuzz").debug("x", **{name: secret}, nested=[{"k": secret}])
    assert repr(secret) not in out.getvalue()
    assert secret.hex() not in out.getvalue()


def test_counters_count_and_log_at_debug():
    counters = Counters("esp_icv_failed", "esp_replayed")
    log = get_logger("scd.esp")
    with capture_logs() as logs:
        counters.count("esp_icv_failed", log, spi=0x100)
        counters.count("esp_icv_failed", log, spi=0x100)
        counters.count("srtp_auth_failed", n=3)
    assert [(e["event"], e["log_level"], e["total"]) for e in logs] == [
        ("esp_icv_failed", "debug", 1), ("esp_icv_failed", "debug", 2)
    ]
    assert counters["esp_icv_failed"] == 2 and counters["unknown"] == 0
    snapshot = counters.snapshot()
    assert snapshot == {"esp_icv_failed": 2, "esp_replayed": 0, "srtp_auth_failed": 3}
    snapshot["esp_replayed"] = 99  # a copy: the caller cannot change the counters
    assert counters["esp_replayed"] == 0
    assert counters.summary() == "esp_icv_failed=2 esp_replayed=0 srtp_auth_failed=3"


def test_counted_failures_stay_out_of_an_info_log():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    counters = Counters()
    for _ in range(1000):
        counters.count("esp_replayed", get_logger("scd.esp"), spi=1)
    assert out.getvalue() == "" and counters["esp_replayed"] == 1000
