"""`kerbtel keytab`: create and inspect MIT-format keytabs.

    kerbtel keytab create --principal sc/sc1.example.test@EXAMPLE.TEST --kvno 3 \\
        --enctype aes256-cts --enctype 20 --random --out sc.keytab
    printf '%s\\n' "$PW" | kerbtel keytab create --principal alice@EXAMPLE.TEST \\
        --password-stdin --out alice.keytab
    kerbtel keytab list sc.keytab            # like `klist -ke`; key bytes only with --show-keys

Exporting the keys of principals held in the kerbtel KDC database belongs to the KDC's own
command group (it needs the database and its master key), not to this file-level tool.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

from common.cli import CliError, read_password_stdin
from common.crypto import UnsupportedEnctypeError, enctype_by_name, generate_key, get_enctype, string_to_key
from common.keytab import Keytab, KeytabEntry, KeytabFormatError
from common.principal import Principal, PrincipalSyntaxError

DEFAULT_ENCTYPES = (18, 17)


def enctype_name(enctype: int) -> str:
    try:
        return get_enctype(enctype).name
    except UnsupportedEnctypeError:
        return f"etype {enctype}"


def parse_enctype(text: str) -> int:
    """'18', 'aes256-cts', 'aes256-cts-hmac-sha1-96:normal' -> 18."""
    try:
        return enctype_by_name(text).number
    except UnsupportedEnctypeError as exc:
        raise CliError(str(exc)) from None



def _cmd_create(args: argparse.Namespace) -> int:

    try:
        principal = Principal.parse(args.principal)
    except PrincipalSyntaxError as exc:
        raise CliError(f"--principal: {exc}") from None
    if not 0 <= args.kvno <= 0xFFFFFFFF:
        raise CliError(f"--kvno {args.kvno} is outside 0..4294967295")
    enctypes = list(dict.fromkeys(parse_enctype(e) for e in (args.enctype or [str(e) for e in DEFAULT_ENCTYPES])))
    if args.salt is not None and not args.password_stdin:
        raise CliError("--salt only applies with --password-stdin")
    out = args.out
    existing = Keytab()
    if os.path.exists(out):
        if args.append:
            try:
                existing = Keytab.load(out)
            except KeytabFormatError as exc:
                raise CliError(f"{out}: {exc}") from None
            except OSError as exc:
                raise CliError(f"{out}: {exc.strerror}") from None
        elif not args.force:
            raise CliError(f"{out} exists; pass --append to add entries or --force to replace it")
    if args.password_stdin:
        password = read_password_stdin()
        salt = args.salt if args.salt is not None else principal.default_salt()
        keys = [string_to_key(e, password, salt) for e in enctypes]
    else:
        keys = [generate_key(e) for e in enctypes]
    timestamp = int(time.time())
    existing.extend(KeytabEntry(principal, args.kvno, key, timestamp) for key in keys)
    try:
        existing.save(out)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror}") from None
    names = ", ".join(enctype_name(e) for e in enctypes)
    print(f"{out}: added {len(keys)} key(s) for {principal} kvno {args.kvno} ({names})")
    return 0


def _format_time(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%m/%d/%y %H:%M:%S")


def _cmd_list(args: argparse.Namespace) -> int:

    path = args.file[5:] if args.file.startswith("FILE:") else args.file
    try:
        keytab = Keytab.load(path)
    except FileNotFoundError:
        raise CliError(f"{path}: no such keytab file") from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    except KeytabFormatError as exc:
        raise CliError(f"{path}: {exc}") from None
    print(f"Keytab name: FILE:{path}")
    if args.timestamps:
        print("KVNO Timestamp         Principal")
        print("---- ----------------- " + "-" * 56)
    else:
        print("KVNO Principal")
        print("---- " + "-" * 74)
    for entry in keytab:
        line = f"{entry.kvno:>4} "
        if args.timestamps:
            line += _format_time(entry.timestamp) + " "
        line += f"{entry.principal} ({enctype_name(entry.key.enctype)})"
        if args.show_keys:
            line += f" (0x{entry.key.contents.hex()})"
        print(line)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("keytab", help="create and list keytab files", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="keytab_command", metavar="SUBCOMMAND", required=True)

    create = commands.add_parser("create", help="write keys for a principal into a keytab")
    create.add_argument("--principal", required=True, help="e.g. sc/sc1.example.test@EXAMPLE.TEST")
    create.add_argument("--kvno", type=int, default=1, help="key version number (default 1)")
    create.add_argument(
        "--enctype",
        action="append",
        metavar="ENCTYPE",
        help="enctype number or MIT name; repeat for several (default: 18 and 17)",
    )
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--random", action="store_true", help="fresh random keys")
    source.add_argument("--password-stdin", action="store_true", help="derive keys from a password read from stdin")
    create.add_argument("--salt", help="string-to-key salt (default: realm + name components)")
    create.add_argument("--out", required=True, help="keytab file to write (mode 0600, atomically)")
    mode = create.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to an existing keytab")
    mode.add_argument("--force", action="store_true", help="replace an existing keytab")
    create.set_defaults(func=_cmd_create)

    listing = commands.add_parser("list", help="list the entries of a keytab (like klist -ke)")
    listing.add_argument("file", help="keytab file (FILE: prefix accepted)")
    listing.add_argument("-t", "--timestamps", action="store_true", help="show entry timestamps")
    listing.add_argument("--show-keys", action="store_true", help="also print the key bytes (secret!)")
    listing.set_defaults(func=_cmd_list)
