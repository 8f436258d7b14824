"""The operator CLI `kerbtel`.

Each sub-command group lives in its own module exposing `register(subparsers)`; the module adds
its parser and sets `func` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules in common.cli providing a command group, in the order `kerbtel --help` lists them.
COMMAND_MODULES = ("init", "pki", "keytab", "db", "principal", "customer", "kinit", "keys", "li", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kerbtel", description="kerbtel operator commands")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"common.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"kerbtel {args.command}: {exc}", file=sys.stderr)
        return 2


class CliError(Exception):
    """An operator mistake (bad argument, missing file) reported as one line, exit code 2."""


def read_password_stdin() -> str:
    """One password line from standard input (for --password-stdin), without its line ending."""
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise CliError("no password on standard input")
    return password


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
