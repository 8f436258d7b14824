"""`kerbtel customer`: customer accounts, their phone IDs and status (what the CSR enters).

    kerbtel customer add --db kdc.db --phone +15551230001 [--phone ...] [--label TEXT] [--option caller_id=true ...]
    kerbtel customer list --db kdc.db [--status suspended]
    kerbtel customer show --db kdc.db (--phone P | --id N)
    kerbtel customer set-status --db kdc.db (--phone P | --id N) active|suspended|terminated
    kerbtel customer set-options --db kdc.db (--phone P | --id N) --option international=true [--replace]
    kerbtel customer add-phone|remove-phone --db kdc.db --id N --phone P
    kerbtel customer label --db kdc.db (--phone P | --id N) TEXT

Phone numbers are turned into phone IDs (SHA-1 of the E.164 number, as in operator certificates)
before they reach the database; the numbers themselves are neither stored nor printed. Only an
active customer's certificates are honoured by the KDC; terminated is final. Option values
'true', 'false', 'null' and integers are typed, anything else is text; with set-options (merge)
'name=null' removes an option. No master key is needed: these commands never touch keys.
"""

from __future__ import annotations

import argparse
import json

from common.cli import CliError
from common.cli.db import add_db_arguments, db_errors, open_database, wallclock

_STATUSES = ("active", "suspended", "terminated")


def _phone_id(number: str) -> bytes:
    from common.pki import phone_id

    try:
        return phone_id(number)
    except ValueError as exc:
        raise CliError(str(exc)) from None  # the message does not repeat the number


def _option(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise CliError(f"--option {text!r}: expected NAME=VALUE")
    value: object = raw
    if raw in ("true", "false", "null") or raw.lstrip("-").isdigit():
        value = json.loads(raw)
    return name.strip(), value


def _options(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    for text in args.option or ():
        name, value = _option(text)
        out[name] = value
    return out


def _customer_id(db, args: argparse.Namespace) -> int:
    if args.id is not None:
        return args.id
    return db.lookup_phone(_phone_id(args.phone)).id


def _print_customer(customer, *, verbose: bool = False) -> None:
    options = json.dumps(dict(customer.options), sort_keys=True, separators=(",", ":"))
    phones = ",".join(p.hex()[:12] for p in customer.phone_ids) or "-"
    if not verbose:
        label = json.dumps(customer.label, ensure_ascii=False) if customer.label else "-"
        print(f"{customer.id:>6} {customer.status.value:<10} {customer.generation:>4} {phones:<27} {options:<30} {label}")
        return
    print(f"customer: {customer.id}")
    print(f"status: {customer.status.value}")
    print(f"label: {customer.label}")
    print(f"options: {options}")
    print(f"generation: {customer.generation}")
    print(f"created: {customer.created.isoformat()}; modified: {customer.modified.isoformat()}")
    for pid in customer.phone_ids:
        print(f"  phone ID {pid.hex()}")


@db_errors
def _cmd_add(args: argparse.Namespace) -> int:
    ids = [_phone_id(p) for p in args.phone]
    with open_database(args, need_master_key=False) as db:
        customer = db.add_customer(
            now=wallclock(), phone_ids=ids, label=args.label or "", options=_options(args), status=args.status
        )
        print(f"added customer {customer.id} ({customer.status.value}) with {len(customer.phone_ids)} phone ID(s):")
        for pid in customer.phone_ids:
            print(f"  {pid.hex()}")
    return 0


@db_errors
def _cmd_list(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=False) as db:
        print(f"{'ID':>6} {'STATUS':<10} {'GEN':>4} {'PHONE IDS (prefix)':<27} {'OPTIONS':<30} LABEL")
        for customer in db.list_customers(args.status):
            _print_customer(customer)
    return 0


@db_errors
def _cmd_show(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=False) as db:
        _print_customer(db.get_customer(_customer_id(db, args)), verbose=True)
    return 0


@db_errors
def _cmd_set_status(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=False) as db:
        cid = _customer_id(db, args)
        before = db.get_customer(cid)
        customer = db.set_customer_status(cid, args.status, now=wallclock())
        if customer.generation == before.generation:
            print(f"customer {cid} is already {customer.status.value}")
        else:
            print(f"customer {cid}: {before.status.value} -> {customer.status.value} (generation {customer.generation})")
    return 0


@db_errors
def _cmd_set_options(args: argparse.Namespace) -> int:
    if not args.option:
        raise CliError("give at least one --option NAME=VALUE")
    with open_database(args, need_master_key=False) as db:
        cid = _customer_id(db, args)
        customer = db.set_customer_options(cid, _options(args), now=wallclock(), merge=not args.replace)
        options = json.dumps(dict(customer.options), sort_keys=True, separators=(",", ":"))
        print(f"customer {cid}: options {options} (generation {customer.generation})")
    return 0


@db_errors
def _cmd_label(args: argparse.Namespace) -> int:
    with open_database(args, need_master_key=False) as db:
        cid = _customer_id(db, args)
        customer = db.set_customer_label(cid, args.label, now=wallclock())
        print(f"customer {cid}: label set (generation {customer.generation})")
    return 0


@db_errors
def _cmd_add_phone(args: argparse.Namespace) -> int:
    pid = _phone_id(args.phone)
    with open_database(args, need_master_key=False) as db:
        customer = db.add_phone(args.id, pid, now=wallclock())
        print(f"customer {customer.id}: added phone ID {pid.hex()} (generation {customer.generation})")
    return 0


@db_errors
def _cmd_remove_phone(args: argparse.Namespace) -> int:
    pid = _phone_id(args.phone)
    with open_database(args, need_master_key=False) as db:
        customer = db.remove_phone(args.id, pid, now=wallclock())
        print(f"customer {customer.id}: removed phone ID {pid.hex()} (generation {customer.generation})")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a customer id: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a customer id: {text!r}")
    return value


def _add_selector(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--phone", metavar="NUMBER", help="a phone number of the customer (E.164, e.g. +15551230001)")
    group.add_argument("--id", type=_positive_int, metavar="N", help="the customer id")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "customer", help="customer accounts, phone IDs and status", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="customer_command", metavar="SUBCOMMAND", required=True)

    add = commands.add_parser("add", help="add a customer with one or more phone numbers")
    add_db_arguments(add, master_key=False)
    add.add_argument("--phone", action="append", required=True, metavar="NUMBER", help="E.164 number; repeat for several")
    add.add_argument("--label", help="opaque display label (not the phone number)")
    add.add_argument("--option", action="append", metavar="NAME=VALUE", help="service option, e.g. caller_id=true")
    add.add_argument("--status", choices=_STATUSES, default="active")
    add.set_defaults(func=_cmd_add)

    listing = commands.add_parser("list", help="list customers")
    add_db_arguments(listing, master_key=False)
    listing.add_argument("--status", choices=_STATUSES)
    listing.set_defaults(func=_cmd_list)

    show = commands.add_parser("show", help="one customer in full")
    add_db_arguments(show, master_key=False)
    _add_selector(show)
    show.set_defaults(func=_cmd_show)

    status = commands.add_parser("set-status", help="activate, suspend or terminate an account")
    add_db_arguments(status, master_key=False)
    _add_selector(status)
    status.add_argument("status", choices=_STATUSES)
    status.set_defaults(func=_cmd_set_status)

    options = commands.add_parser("set-options", help="change service options (merged unless --replace)")
    add_db_arguments(options, master_key=False)
    _add_selector(options)
    options.add_argument("--option", action="append", metavar="NAME=VALUE", help="repeat; NAME=null removes (merge)")
    options.add_argument("--replace", action="store_true", help="replace all options instead of merging")
    options.set_defaults(func=_cmd_set_options)

    label = commands.add_parser("label", help="set the display label")
    add_db_arguments(label, master_key=False)
    _add_selector(label)
    label.add_argument("label", metavar="TEXT")
    label.set_defaults(func=_cmd_label)

    for name, func, what in (
        ("add-phone", _cmd_add_phone, "give a customer another phone number"),
        ("remove-phone", _cmd_remove_phone, "release a phone number (also of a terminated customer)"),
    ):
        sub = commands.add_parser(name, help=what)
        add_db_arguments(sub, master_key=False)
        sub.add_argument("--id", type=_positive_int, required=True, metavar="N")
        sub.add_argument("--phone", required=True, metavar="NUMBER")
        sub.set_defaults(func=func)
