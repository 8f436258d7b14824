"""`kerbtel principal`: principals and their keys in the KDC database.

    kerbtel principal add --db kdc.db sc/sc1.example.test --service [--max-life 7d]
    printf '%s\\n' "$PW" | kerbtel principal add --db kdc.db gw/gw1.example.test --password-stdin
    kerbtel principal list --db kdc.db
    kerbtel principal show --db kdc.db sc/sc1.example.test
    kerbtel principal keytab --db kdc.db sc/sc1.example.test --out sc1.keytab
    kerbtel principal rotate --db kdc.db sc/sc1.example.test [--grace 2d]
    kerbtel principal modify --db kdc.db gw/gw1.example.test --disable
    kerbtel principal delete --db kdc.db gw/gw1.example.test

Names without '@REALM' are in the database's realm. Commands that touch keys read the master-key
stash (--master-key, default DB.mkey). Key bytes are never printed: `keytab` writes them to a
0600 file for the service that needs them.
"""

from __future__ import annotations

import argparse
import os

from common.cli import CliError, read_password_stdin
from common.cli.db import add_db_arguments, db_errors, duration_arg, format_duration, open_database, wallclock
from common.cli.keytab import enctype_name, parse_enctype
from common.principal import NameType, Principal, PrincipalSyntaxError


def _principal(db, text: str) -> Principal:
    try:
        principal = Principal.parse(text, default_realm=db.realm)
    except PrincipalSyntaxError as exc:
        raise CliError(str(exc)) from None
    return principal


def _enctypes(args: argparse.Namespace) -> list[int] | None:
    return list(dict.fromkeys(parse_enctype(e) for e in args.enctype)) if args.enctype else None


def _flags(attributes) -> str:
    names = [
        ("preauth", attributes.requires_preauth),
        ("service", attributes.is_service),
        ("pkinit", attributes.allow_pkinit),
        ("DISABLED", attributes.disabled),
    ]
    return ",".join(n for n, on in names if on) or "-"


@db_errors
def _cmd_add(args: argparse.Namespace) -> int:
    from kdcd.db import DEFAULT_ENCTYPES, DEFAULT_MAX_LIFE, DEFAULT_MAX_RENEWABLE_LIFE, PrincipalAttributes

    with open_database(args, need_master_key=True) as db:
        principal = _principal(db, args.name)
        if args.service and len(principal.components) == 2 and principal.name_type == NameType.PRINCIPAL:
            principal = principal.with_name_type(NameType.SRV_HST)  # service/host, as docs/pki.md names them
        password = read_password_stdin() if args.password_stdin else None
        attributes = PrincipalAttributes(
            requires_preauth=not args.no_preauth,
            is_service=args.service,
            allow_pkinit=args.allow_pkinit,
            disabled=args.disabled,
        )
        entry = db.add_principal(
            principal,
            now=wallclock(),
            password=password,
            enctypes=_enctypes(args) or DEFAULT_ENCTYPES,
            attributes=attributes,
            max_life=DEFAULT_MAX_LIFE if args.max_life is None else args.max_life,
            max_renewable_life=DEFAULT_MAX_RENEWABLE_LIFE if args.max_renewable_life is None else args.max_renewable_life,
        )
        source = "password-derived" if password is not None else "random"
        names = ", ".join(enctype_name(e) for e in entry.enctypes)
        print(f"added {entry.principal} kvno {entry.kvno} with {len(entry.current_keys)} {source} key(s) ({names})")
    return 0


@db_errors
def _cmd_list(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=False) as db:
        print(f"{'KVNO':>4} {'MAX-LIFE':>8} {'RENEW':>8} {'FLAGS':<28} {'ENCTYPES':<14} PRINCIPAL")
        for entry in db.list_principals():
            enctypes = ",".join(str(e) for kvno, e, _, _ in db.key_summary(entry.principal) if kvno == entry.kvno)
            print(
                f"{entry.kvno:>4} {format_duration(entry.max_life):>8} {format_duration(entry.max_renewable_life):>8} "
                f"{_flags(entry.attributes):<28} {enctypes:<14} {entry.principal}"
            )
    return 0


@db_errors
def _cmd_show(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=False) as db:
        principal = _principal(db, args.name)
        entry = db.get_principal(principal, with_keys=False)
        print(f"principal: {entry.principal} (name type {entry.principal.name_type})")
        print(f"kvno: {entry.kvno}")
        print(f"flags: {_flags(entry.attributes)}")
        print(f"max life: {format_duration(entry.max_life)}; max renewable life: {format_duration(entry.max_renewable_life)}")
        print(f"created: {entry.created.isoformat()}; modified: {entry.modified.isoformat()}")
        for kvno, enctype, derived, expires in db.key_summary(entry.principal):
            state = "current" if expires is None else f"old, usable until {expires.isoformat()}"
            kind = "password" if derived else "random"
            print(f"  key kvno {kvno} {enctype_name(enctype)} ({kind}, {state})")
    return 0


@db_errors
def _cmd_keytab(args: argparse.Namespace) -> int:
    from common.keytab import Keytab, KeytabEntry

    if os.path.exists(args.out) and not args.force:
        raise CliError(f"{args.out} exists; pass --force to replace it")
    with open_database(args, need_master_key=True) as db:
        principal = _principal(db, args.name)
        now = wallclock()
        entry = db.get_principal(principal)
        keys = [k for k in entry.keys if k.usable_at(now) and (args.all_kvnos or k.kvno == entry.kvno)]
        keytab = Keytab(
            [KeytabEntry(entry.principal, k.kvno, k.key, int(k.created.timestamp()) & 0xFFFFFFFF) for k in keys]
        )
        try:
            keytab.save(args.out)
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
        kvnos = ", ".join(str(v) for v in sorted({k.kvno for k in keys}, reverse=True))
        print(f"{args.out}: wrote {len(keys)} key(s) for {entry.principal} (kvno {kvnos}), mode 0600")
    return 0


@db_errors
def _cmd_rotate(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=True) as db:
        principal = _principal(db, args.name)
        password = read_password_stdin() if args.password_stdin else None
        entry = db.rotate_keys(principal, now=wallclock(), password=password, enctypes=_enctypes(args), grace=args.grace)
        old = sorted({k.kvno for k in entry.keys if k.kvno != entry.kvno}, reverse=True)
        print(f"rotated {entry.principal} to kvno {entry.kvno} ({len(entry.current_keys)} key(s))")
        for kvno in old:
            expires = min(k.expires for k in entry.keys if k.kvno == kvno)
            print(f"  kvno {kvno} stays usable until {expires.isoformat()}")
        print("  export the new keys to the service's keytab (kerbtel principal keytab ... --all-kvnos)")
    return 0


@db_errors
def _cmd_modify(args: argparse.Namespace) -> int:
    from dataclasses import replace

    with open_database(args, need_master_key=False) as db:
        principal = _principal(db, args.name)
        current = db.get_principal(principal, with_keys=False)
        attributes = current.attributes
        for flag, field in (("disable", "disabled"), ("service", "is_service"), ("preauth", "requires_preauth"), ("pkinit", "allow_pkinit")):
            value = getattr(args, flag)
            if value is not None:
                attributes = replace(attributes, **{field: value})
        entry = db.modify_principal(
            principal, now=wallclock(), attributes=attributes, max_life=args.max_life, max_renewable_life=args.max_renewable_life
        )
        print(
            f"{entry.principal}: flags {_flags(entry.attributes)}, max life {format_duration(entry.max_life)}, "
            f"max renewable life {format_duration(entry.max_renewable_life)}"
        )
    return 0


@db_errors
def _cmd_delete(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=False) as db:
        principal = _principal(db, args.name)
        db.delete_principal(principal)
        print(f"deleted {principal} and all its keys")
    return 0


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--random", action="store_true", help="random keys (the default)")
    source.add_argument("--password-stdin", action="store_true", help="derive keys from a password read from stdin")
    parser.add_argument(
        "--enctype", action="append", metavar="ENCTYPE", help="enctype number or MIT name; repeat (default 18 17 20 19 16)"
    )


def _add_lifetime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-life", type=duration_arg, metavar="DURATION", help="longest ticket life, e.g. 7d (default 7d)")
    parser.add_argument(
        "--max-renewable-life", type=duration_arg, metavar="DURATION", help="longest renewable life (default 28d, 0 = none)"
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "principal", help="principals and keys in the KDC database", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="principal_command", metavar="SUBCOMMAND", required=True)

    add = commands.add_parser("add", help="add a principal with random or password-derived keys")
    add_db_arguments(add, master_key=True)
    add.add_argument("name", metavar="NAME", help="e.g. sc/sc1.example.test[@REALM]")
    _add_key_options(add)
    add.add_argument("--service", action="store_true", help="may be the server of a ticket")
    add.add_argument("--allow-pkinit", action="store_true", help="may authenticate with a certificate")
    add.add_argument("--no-preauth", action="store_true", help="do not require pre-authentication")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    _add_lifetime_options(add)
    add.set_defaults(func=_cmd_add)

    listing = commands.add_parser("list", help="list principals (no key bytes)")
    add_db_arguments(listing, master_key=False)
    listing.set_defaults(func=_cmd_list)

    show = commands.add_parser("show", help="one principal's attributes and key versions (no key bytes)")
    add_db_arguments(show, master_key=False)
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=_cmd_show)

    keytab = commands.add_parser("keytab", help="export a principal's current keys to an MIT keytab (0600)")
    add_db_arguments(keytab, master_key=True)
    keytab.add_argument("name", metavar="NAME")
    keytab.add_argument("--out", required=True, metavar="KEYTAB", help="keytab file to write")
    keytab.add_argument("--all-kvnos", action="store_true", help="also the old keys still in their grace period")
    keytab.add_argument("--force", action="store_true", help="replace an existing file")
    keytab.set_defaults(func=_cmd_keytab)

    rotate = commands.add_parser("rotate", help="new keys under kvno+1; old keys kept for a grace period")
    add_db_arguments(rotate, master_key=True)
    rotate.add_argument("name", metavar="NAME")
    _add_key_options(rotate)
    rotate.add_argument(
        "--grace", type=duration_arg, metavar="DURATION", help="how long the old keys stay usable (default: max ticket life)"
    )
    rotate.set_defaults(func=_cmd_rotate)

    modify = commands.add_parser("modify", help="change flags or ticket lifetimes")
    add_db_arguments(modify, master_key=False)
    modify.add_argument("name", metavar="NAME")
    for flag, on, off, what in (
        ("disable", "--disable", "--enable", "refuse tickets to and for it"),
        ("service", "--service", "--no-service", "may be the server of a ticket"),
        ("preauth", "--preauth", "--no-preauth", "require pre-authentication"),
        ("pkinit", "--allow-pkinit", "--no-pkinit", "may authenticate with a certificate"),
    ):
        group = modify.add_mutually_exclusive_group()
        group.add_argument(on, dest=flag, action="store_true", default=None, help=what)
        group.add_argument(off, dest=flag, action="store_false", default=None)
    _add_lifetime_options(modify)
    modify.set_defaults(func=_cmd_modify)

    delete = commands.add_parser("delete", help="delete a principal and all its keys")
    add_db_arguments(delete, master_key=False)
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=_cmd_delete)
