"""Structured logging for the daemons: structlog configured once, key material never logged.

Every line carries an ISO-8601 UTC `timestamp`, `level`, `logger` and `event`, plus whatever the
adapters bound for the request in progress with `structlog.contextvars.bind_contextvars(peer=...,
principal=..., call_id=..., spi=...)`. Lines are JSON when stderr is not a terminal (journald,
files, pipes) and coloured key=value text on a terminal.

The `redact_secrets` processor runs on every event before rendering, so a field named like key
material (`session_key`, `subkey`, `password`, ...) or a raw `bytes` value longer than 8 bytes is
replaced even when someone logs it by mistake. It is deliberately over-eager: a redacted harmless
value costs a debugging session, a logged key costs a rekeying of the network.

Module named `logsetup` rather than `logging` so that `import logging` inside `common` can never
be mistaken for the standard library.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "LEVELS",
    "Counters",
    "LoggingConfig",
    "configure_logging",
    "get_logger",
    "redact_secrets",
]

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(frozen=True)
class LoggingConfig:
    """The `[logging]` table every daemon config embeds; command-line flags override it."""

    level: LogLevel = "info"
    format: LogFormat = "auto"


# Name parts that mark a field as key material. Names are split into words (snake_case,
# camelCase, dashes) and each word is compared, so `session_key` and `encKey` match while
# `keytab` (a path) and `monkey` do not.
SECRET_WORDS = frozenset(
    {
        "key", "keys", "subkey", "privkey", "secret", "secrets", "password", "passwd",
        "passphrase", "psk", "seed", "pin", "token", "cookie", "credential", "credentials",
        "private", "plaintext", "keymat", "keystream",
    }
)
# Whole names that contain a secret word but are public identifiers, useful when debugging.
NOT_SECRET_NAMES = frozenset({"key_usage", "key_version", "key_id", "keyid", "key_count"})
MAX_LOGGED_BYTES = 8
REDACTED = "[redacted]"
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Fields structlog itself owns; they are never secrets and must survive untouched.
_STRUCTURAL = frozenset({"event", "timestamp", "level", "logger", "exc_info", "exception", "stack"})


@functools.lru_cache(maxsize=4096)  # field names repeat on every line; the regex is the cost
def is_secret_name(name: str) -> bool:
    if name in NOT_SECRET_NAMES or name.lower() in NOT_SECRET_NAMES:
        return False
    return any(word.lower() in SECRET_WORDS for word in _WORD.findall(name))


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        return value if size <= MAX_LOGGED_BYTES else f"[redacted {size} bytes]"
    if depth >= 4:
        # Deeper structures are not worth walking; they could hide key material, so drop them.
        return REDACTED if isinstance(value, (Mapping, list, tuple, set, frozenset)) else value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_name(k) else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_value(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _redact_dataclass(value, depth)
    return value


def _redact_dataclass(value: Any, depth: int) -> Any:
    """Packet and message dataclasses would otherwise reach the renderer as a repr with their
    payload bytes in it. Keep the object (and its readable repr) when nothing in it needs
    redacting; otherwise log its shown fields, redacted. Fields declared `repr=False` (like
    `Key.contents`) stay hidden either way."""
    shown = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.repr}
    cleaned = {
        name: REDACTED if is_secret_name(name) else _redact_value(v, depth + 1) for name, v in shown.items()
    }
    if all(cleaned[name] is shown[name] for name in shown):
        return value
    return {"type": type(value).__name__, **cleaned}


_SCALARS = frozenset({str, int, float, bool, type(None)})  # _redact_value returns these as they are


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace key-material fields and long byte strings (also nested)."""
    for name, value in list(event_dict.items()):
        if name in _STRUCTURAL:
            continue
        if is_secret_name(name):
            event_dict[name] = REDACTED
        elif type(value) not in _SCALARS:
            event_dict[name] = _redact_value(value)
    return event_dict


def _add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")  # set for records coming from the standard library
    name = record.name if isinstance(record, logging.LogRecord) else getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


class _NamedWriteLoggerFactory:
    """`structlog.get_logger("kdcd.tcp")` passes the name here; the logger keeps it as `.name`.

    (Binding `logger=` instead would resolve the configuration at import time, and loggers
    created at module level would then ignore `configure_logging`.)
    """

    def __init__(self, file: TextIO):
        self._file = file

    def __call__(self, *args: Any) -> structlog.WriteLogger:
        out = structlog.WriteLogger(self._file)
        out.name = str(args[0]) if args else ""  # type: ignore[attr-defined]
        return out


_LEADING = ("timestamp", "level", "logger", "event")


def _leading_fields_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Put timestamp, level, logger and event first, so JSON lines read well by eye too."""
    ordered = {k: event_dict.pop(k) for k in _LEADING if k in event_dict}
    ordered.update(event_dict)
    return ordered


def _shared_processors() -> list[Processor]:
    return [
        _add_logger_name,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | None = None,
    cache_loggers: bool = True,
) -> None:
    """Configure structlog (and the standard `logging` root) once, at daemon start-up.

    `fmt` is "json", "console" or "auto" (JSON unless `stream` is a terminal). Calling it again
    replaces the configuration; tests do that, daemons should not. Events below `level` cost one
    method call returning None, so per-packet debug lines are cheap when not enabled.
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"log format must be auto, json or console, got {fmt!r}")
    out = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "console" if _isatty(out) else "json"

    renderer: Processor
    if fmt == "json":
        # Plain traceback text: the rich/better-exceptions formatters can print local variables,
        # and a local variable in crypto code is exactly where a key lives.
        tail: list[Processor] = [structlog.processors.format_exc_info, _leading_fields_first]
        renderer = structlog.processors.JSONRenderer(sort_keys=False, default=repr)
    else:
        tail = []
        renderer = structlog.dev.ConsoleRenderer(
            colors=_isatty(out), exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        processors=[*_shared_processors(), structlog.processors.StackInfoRenderer(), *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        context_class=dict,
        logger_factory=_NamedWriteLoggerFactory(out),
        cache_logger_on_first_use=cache_loggers,
    )

    # Libraries (asyncio, uvloop, cryptography) log through the standard library; render their
    # records the same way, through the same redaction, onto the same stream.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_kerbtel", False)]:
        root.removeHandler(old)
    handler._kerbtel = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(LEVELS[level])


def get_logger(name: str, **initial: Any) -> Any:
    """A structlog logger whose events carry `logger=name` (e.g. "kdcd.tcp")."""
    return structlog.get_logger(name, **initial)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Counters:
    """Named integer counters for events too frequent to log one line each (ICV, replay, ...).

    The pattern for a bad packet is `counters.count("esp_icv_failed", log, spi=spi)`: one increment
    and one *debug* line, so a flood of forged packets cannot flood the log at the default
    level, and the totals still reach `status()`/metrics through `snapshot()`. Not thread-safe;
    each daemon runs its engines on one event loop.
    """

    def __init__(self, *names: str) -> None:
        self._values: dict[str, int] = dict.fromkeys(names, 0)

    def count(self, name: str, log: Any = None, /, n: int = 1, **fields: Any) -> int:
        """Add `n` to counter `name`; if `log` is given, log `name` at debug level with the total."""
        total = self._values.get(name, 0) + n
        self._values[name] = total
        if log is not None:
            log.debug(name, total=total, **fields)
        return total

    def __getitem__(self, name: str) -> int:
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy, sorted by name, safe to hand to a status line or a metrics exporter."""
        return dict(sorted(self._values.items()))

    def summary(self) -> str:
        """`name=value` pairs for a systemd STATUS line, e.g. "esp_icv_failed=3 replayed=0"."""
        return " ".join(f"{k}={v}" for k, v in self.snapshot().items())
