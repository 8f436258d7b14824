"""`kerbtel db`: create and inspect the KDC database (docs/kdc-database.md).

    kerbtel db init --db /var/lib/kerbtel/kdc.db --realm EXAMPLE.TEST [--master-key FILE]
    kerbtel db info --db /var/lib/kerbtel/kdc.db

`init` writes the database (mode 0600) holding krbtgt/REALM@REALM with random keys, and the
master-key stash (default: the database path + '.mkey', mode 0600) unless that file exists
already, in which case its key is used. Keep the stash off the database's backups.

This module also holds what the `principal` and `customer` groups share: the --db and
--master-key options, opening the database with errors turned into one-line CLI errors, the
wall clock (the database itself never reads it) and `parse_duration`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import re
from collections.abc import Callable

from common.cli import CliError

_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """'7d', '12h', '30m', '45s', '2w', '1d12h' or plain seconds '3600' -> seconds.

    Units may be combined largest first ('1d12h30m'); each unit at most once.
    """
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    pos = 0
    total = 0
    seen: list[str] = []
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if match is None:
            raise CliError(f"invalid duration {text!r} (use e.g. 7d, 12h, 30m, 45s, 2w or 1d12h)")
        unit = match.group(2)
        if seen and "wdhms".index(unit) <= "wdhms".index(seen[-1]):
            raise CliError(f"invalid duration {text!r}: units must go from largest to smallest, each once")
        seen.append(unit)
        total += int(match.group(1)) * _UNIT_SECONDS[unit]
        pos = match.end()
    if not seen:
        raise CliError(f"invalid duration {text!r} (use e.g. 7d, 12h, 30m, 45s, 2w or 1d12h)")
    return total


def format_duration(seconds: int) -> str:
    """Inverse of `parse_duration` in days/hours/minutes/seconds ('1d12h', '0s')."""
    if seconds == 0:
        return "0s"
    out = []
    for unit in "dhms":
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def duration_arg(text: str) -> int:
    """argparse `type=` wrapper around `parse_duration` (argparse reports the error)."""
    try:
        return parse_duration(text)
    except CliError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def wallclock() -> dt.datetime:
    """The CLI's `now`: the only place the database layer's time comes from the clock."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def add_db_arguments(parser: argparse.ArgumentParser, *, master_key: bool) -> None:
    parser.add_argument("--db", required=True, metavar="FILE", help="the KDC database file")
    if master_key:
        parser.add_argument(
            "--master-key", metavar="FILE", help="master-key stash file (default: the database path + '.mkey')"
        )


def master_key_path(args: argparse.Namespace) -> str:
    return getattr(args, "master_key", None) or args.db + ".mkey"


def open_database(args: argparse.Namespace, *, need_master_key: bool):
    """Open args.db (and the master key if needed); DatabaseError becomes CliError."""
    from kdcd.db import DatabaseError, SQLiteDatabase, load_master_key

    try:
        master = load_master_key(master_key_path(args)) if need_master_key else None
        return SQLiteDatabase.open(args.db, master_key=master)
    except DatabaseError as exc:
        raise CliError(str(exc)) from None


def db_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report database errors (not found, already exists, invalid value, busy) as CLI errors."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from kdcd.db import DatabaseError

        try:
            return func(args)
        except DatabaseError as exc:
            raise CliError(str(exc)) from None

    return wrapper


@db_errors
def _cmd_init(args: argparse.Namespace) -> int:
    from common.cli.keytab import parse_enctype
    from kdcd.db import DEFAULT_ENCTYPES, SQLiteDatabase, generate_master_key, load_master_key, save_master_key

    if os.path.exists(args.db):
        raise CliError(f"{args.db} already exists")
    enctypes = [parse_enctype(e) for e in args.enctype] if args.enctype else list(DEFAULT_ENCTYPES)
    stash = master_key_path(args)
    created_stash = False
    if os.path.exists(stash):
        master = load_master_key(stash)
        print(f"using the existing master key in {stash}")
    else:
        master = generate_master_key()
        try:
            save_master_key(stash, master, args.realm)
        except OSError as exc:
            raise CliError(f"cannot write {stash}: {exc.strerror}") from None
        created_stash = True
    try:
        db = SQLiteDatabase.create(args.db, args.realm, master_key=master, now=wallclock(), krbtgt_enctypes=enctypes)
    except BaseException:
        if created_stash:
            os.unlink(stash)
        raise
    with db:
        print(f"{args.db}: created for realm {db.realm} (schema version {db.schema_version()}), mode 0600")
        print(f"  krbtgt/{db.realm}@{db.realm} kvno 1 with {len(enctypes)} random key(s)")
        if created_stash:
            print(f"  master key stash {stash} (mode 0600): keep it, and keep it out of database backups")
    return 0


@db_errors
def _cmd_info(args: argparse.Namespace) -> int:
    from kdcd.db import LATEST_VERSION

    with open_database(args, need_master_key=False) as db:
        counts = db.counts()
        print(f"database: {args.db}")
        print(f"realm: {db.realm}")
        print(f"schema version: {db.schema_version()} (latest {LATEST_VERSION})")
        print(f"principals: {counts['principals']} ({counts['keys']} keys)")
        print(
            f"customers: {counts['customers_active']} active, {counts['customers_suspended']} suspended, "
            f"{counts['customers_terminated']} terminated; {counts['phone_ids']} phone IDs"
        )
        print(f"devices: {counts['devices']} ({counts['bad_devices']} marked bad)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("db", help="create and inspect the KDC database", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)

    init = commands.add_parser("init", help="create the database with krbtgt/REALM@REALM and a master key")
    add_db_arguments(init, master_key=True)
    init.add_argument("--realm", required=True, help="e.g. EXAMPLE.TEST")
    init.add_argument("--enctype", action="append", metavar="ENCTYPE", help="krbtgt enctypes (default 18 17 20 19 16)")
    init.set_defaults(func=_cmd_init)

    info = commands.add_parser("info", help="realm, schema version and record counts")
    add_db_arguments(info, master_key=False)
    info.set_defaults(func=_cmd_info)
