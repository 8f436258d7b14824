"""Daemon configuration: TOML (read with `tomllib`) into frozen dataclasses, validated up front.

Each daemon declares its configuration as nested frozen dataclasses and calls
`load_config(path, KdcdConfig)` before it starts anything, so a typo is reported as one line
naming the key (`kdcd.conf:7: kdc.tcp.port: expected an integer 0-65535, got "abc"`) and the
daemon exits before systemd ever sees READY=1.

Mapping rules:

- a TOML table maps to a dataclass, its keys to the field names exactly (snake_case); unknown
  keys are errors, fields with defaults may be left out, a nested dataclass table that is left
  out is built from its defaults;
- supported field types: `bool`, `int`, `float` (an integer is accepted), `str`, `Path`
  (relative paths are taken relative to the config file's directory), `Literal[...]`, `Enum`
  (by value), `X | None` (TOML has no null, so this only means "defaults to None"),
  `list[T]`, `tuple[T, ...]`, `dict[str, T]`, nested dataclasses, `Any`, and any class with a
  `from_config(value)` classmethod raising ValueError (`HostPort`);
- `Annotated[int, Range(lo, hi)]` bounds a number (`Port` is the common case);
- `field(metadata={"validate": fn})`: `fn(value)` returns the value (possibly normalised) or
  raises ValueError; the message is reported under the field's dotted key;
- a ValueError raised in `__post_init__` (cross-field checks) is reported under the table's key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, Union

__all__ = [
    "ConfigError",
    "HostPort",
    "Port",
    "Range",
    "config_from_dict",
    "load_config",
    "parse_hostport",
]

T = TypeVar("T")
KeyPath = tuple[str | int, ...]


class ConfigError(Exception):
    """A configuration problem, reported as `[file[:line]: ]dotted.key: what is wrong`."""

    def __init__(self, key: str, problem: str, *, source: str | None = None, line: int | None = None):
        super().__init__(key, problem)
        self.key, self.problem, self.source, self.line = key, problem, source, line

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = f"{self.source}:{self.line}: " if self.line else f"{self.source}: "
        return f"{where}{self.key}: {self.problem}" if self.key else f"{where}{self.problem}"


@dataclasses.dataclass(frozen=True)
class Range:
    """`Annotated[int, Range(1, 100)]`: inclusive bounds for an int or float setting."""

    min: float | None = None
    max: float | None = None

    def describe(self) -> str:
        lo = "" if self.min is None else _number(self.min)
        hi = "" if self.max is None else _number(self.max)
        if lo and hi:
            return f"{lo}-{hi}"
        return f">= {lo}" if lo else f"<= {hi}"

    def __contains__(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


Port = Annotated[int, Range(0, 65535)]


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class HostPort(NamedTuple):
    """A host (name, IPv4 or IPv6 literal) and a port; `str()` gives the bracketed form back."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_config(cls, value: object) -> HostPort:
        if not isinstance(value, str):
            raise ValueError(f'expected "host:port" (IPv6 as "[::1]:88"), got {_show(value)}')
        return parse_hostport(value)


def parse_hostport(text: str, default_port: int | None = None) -> HostPort:
    """Parse "127.0.0.1:88", "kdc.example.test:88" or "[::1]:88" (port optional with a default)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f'bad IPv6 address form {text!r}; write "[::1]:88"')
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise ValueError(f'IPv6 addresses need brackets: write "[{text}]:PORT", not {text!r}')
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = None
    if not host:
        raise ValueError(f"missing host in {text!r} (use 0.0.0.0 or [::] for any address)")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"missing port in {text!r}; expected host:port")
        return HostPort(host, default_port)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be an integer 0-65535, got {port_text!r} in {text!r}")
    return HostPort(host, int(port_text))


def load_config(source: str | bytes | os.PathLike[str], schema: type[T]) -> T:
    """Read TOML from a path (`Path`, or a `str` without newline or '=') or from text/bytes."""
    origin: Path | None = None
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and source and "\n" not in source and "=" not in source
    ):
        origin = Path(source)
        try:
            text = origin.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError("", f"cannot read config file: {exc.strerror}", source=str(origin)) from None
        except UnicodeDecodeError:
            raise ConfigError("", "config file is not UTF-8", source=str(origin)) from None
    else:
        text = source.decode("utf-8") if isinstance(source, bytes) else str(source)
    name = str(origin) if origin is not None else None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", source=name) from None
    base = origin.parent if origin is not None else None
    return config_from_dict(data, schema, source=name, text=text, base_dir=base)


def config_from_dict(
    data: Mapping[str, Any],
    schema: type[T],
    *,
    source: str | None = None,
    text: str | None = None,
    base_dir: Path | None = None,
) -> T:
    """Build `schema` from already-parsed TOML; `text` (if given) lets errors cite a line."""
    try:
        return _Builder(base_dir).table(schema, data, ())
    except _Invalid as exc:
        line = _find_line(text, exc.path) if text is not None else None
        raise ConfigError(_dotted(exc.path) or "(top level)", exc.problem, source=source, line=line) from None


class _Invalid(Exception):
    def __init__(self, path: KeyPath, problem: str):
        self.path, self.problem = path, problem


class _Builder:
    def __init__(self, base_dir: Path | None):
        self.base_dir = base_dir

    def table(self, cls: type[T], data: object, path: KeyPath) -> T:
        if not isinstance(data, Mapping):
            raise _Invalid(path, f"expected a table, got {_show(data)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        for key in data:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(fields)}"
                raise _Invalid((*path, key), f"unknown key{hint}")
        hints = typing.get_type_hints(cls, include_extras=True)
        values: dict[str, Any] = {}
        for name, f in fields.items():
            tp = hints[name]
            if name in data:
                value = self.value(tp, data[name], (*path, name))
                validate = f.metadata.get("validate")
                if validate is not None:
                    try:
                        value = validate(value)
                    except ValueError as exc:
                        raise _Invalid((*path, name), str(exc)) from None
                values[name] = value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if _is_dataclass_type(tp):
                    values[name] = self.table(tp, {}, (*path, name))
                else:
                    raise _Invalid((*path, name), "missing required key")
        try:
            return cls(**values)
        except ValueError as exc:  # from __post_init__: a cross-field rule of this table
            raise _Invalid(path, str(exc)) from None

    def value(self, tp: Any, value: object, path: KeyPath) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Annotated:
            return self.annotated(args[0], args[1:], value, path)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            problems = []
            for option in options:
                try:
                    return self.value(option, value, path)
                except _Invalid as exc:
                    problems.append(exc)
            if len(problems) == 1:
                raise problems[0]
            raise _Invalid(path, f"expected {' or '.join(_describe(o) for o in options)}, got {_show(value)}")
        if origin is Literal:
            # Compare types too: in Python True == 1, in TOML they are different values.
            if any(a == value and type(a) is type(value) for a in args):
                return value
            raise _Invalid(path, f"expected one of {', '.join(_show(a) for a in args)}, got {_show(value)}")
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            for member in tp:
                if member.value == value and type(member.value) is type(value):
                    return member
            allowed = ", ".join(_show(m.value) for m in tp)
            raise _Invalid(path, f"expected one of {allowed}, got {_show(value)}")
        if origin in (list, tuple):
            if not isinstance(value, list):
                raise _Invalid(path, f"expected {_describe(tp)}, got {_show(value)}")
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                if len(value) != len(args):
                    raise _Invalid(path, f"expected an array of {len(args)} items, got {len(value)}")
                return tuple(self.value(a, v, (*path, i)) for i, (a, v) in enumerate(zip(args, value)))
            items = [self.value(args[0] if args else Any, v, (*path, i)) for i, v in enumerate(value)]
            return items if origin is list else tuple(items)
        if origin is dict:
            if not isinstance(value, Mapping):
                raise _Invalid(path, f"expected a table, got {_show(value)}")
            return {k: self.value(args[1] if args else Any, v, (*path, k)) for k, v in value.items()}
        if _is_dataclass_type(tp):
            return self.table(tp, value, path)
        if isinstance(tp, type) and hasattr(tp, "from_config"):
            try:
                return tp.from_config(value)
            except ValueError as exc:
                raise _Invalid(path, str(exc)) from None
        return self.scalar(tp, value, path, None)

    def annotated(self, tp: Any, extras: tuple[Any, ...], value: object, path: KeyPath) -> Any:
        bounds = next((e for e in extras if isinstance(e, Range)), None)
        if bounds is None:
            return self.value(tp, value, path)
        result = self.scalar(tp, value, path, bounds)
        if result not in bounds:
            raise _Invalid(path, f"expected {_describe(tp)} {bounds.describe()}, got {_show(value)}")
        return result

    def scalar(self, tp: Any, value: object, path: KeyPath, bounds: Range | None) -> Any:
        ok = False
        if tp is bool:
            ok = isinstance(value, bool)
        elif tp is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif tp is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value  # type: ignore[arg-type]
        elif tp is str:
            ok = isinstance(value, str)
        elif tp is Path:
            if isinstance(value, str) and value:
                p = Path(value)
                return self.base_dir / p if self.base_dir is not None and not p.is_absolute() else p
        else:
            raise TypeError(f"config schema: unsupported field type {tp!r} at {_dotted(path)}")
        if not ok:
            want = _describe(tp) + (f" {bounds.describe()}" if bounds else "")
            raise _Invalid(path, f"expected {want}, got {_show(value)}")
        return value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _describe(tp: Any) -> str:
    names = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string",
             Path: "a non-empty path string"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) in (list, tuple):
        return "an array"
    if _is_dataclass_type(tp) or typing.get_origin(tp) is dict:
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _show(value: object) -> str:
    """A value as it would look in TOML, so the message matches what the operator wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            word = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += f".{word}" if out else word
    return out


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_ASSIGN = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', dotted))


def _find_line(text: str, path: KeyPath) -> int | None:
    """Best-effort line of `path` (or of its nearest enclosing key or table) in the TOML text.

    tomllib keeps no positions, so this rescans headers and `key =` lines; it can be fooled by
    multi-line strings, which only costs the hint, never the error itself.
    """
    seen: dict[KeyPath, int] = {}
    table: KeyPath = ()
    array_counts: dict[KeyPath, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if m := _HEADER.match(line):
            names = _split_key(m.group(2))
            table = names
            if m.group(1) == "[[":
                index = array_counts.get(names, -1) + 1
                array_counts[names] = index
                table = (*names, index)
            seen.setdefault(table, lineno)
        elif m := _ASSIGN.match(line):
            seen.setdefault((*table, *_split_key(m.group(1))), lineno)
    for end in range(len(path), 0, -1):
        if path[:end] in seen:
            return seen[path[:end]]
    return None
