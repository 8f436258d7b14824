"""`kerbtel li`: the lawful-intercept key pair and the agency's export of stored call records.

    kerbtel li keygen --out /secure/li              # intercept.key (0600) + intercept.pub
    kerbtel li export --store /var/lib/kerbtel/li --call-id ID --key /secure/li/intercept.key [--json]

The SCs get only intercept.pub (their store is write-only, common/li.py); the private key stays
with the authorized agency. `export` decrypts the records of one call (or every call with
--all) and prints call id, parties, start, end and the bearer keys in hex. A record that does
not authenticate, or a key the records were not written for, is an error naming file and line
(--skip-bad reports such records on stderr and goes on).
"""

from __future__ import annotations

import argparse
import json
import sys

from common.cli import CliError
from common.li import LiError, generate_key_pair, load_private_key, read_records


def _cmd_keygen(args: argparse.Namespace) -> int:
    try:
        private, public = generate_key_pair(args.out, force=args.force)
    except (LiError, OSError) as exc:
        raise CliError(str(exc)) from None
    print(f"intercept private key {private} (0600: give it to the agency only)")
    print(f"intercept public key  {public} (configure it on each SC)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if not args.all and not args.call_id:
        raise CliError("give --call-id ID (or --all)")
    try:
        key = load_private_key(args.key)
        errors: list = []
        records = list(read_records(args.store, key, call_id=None if args.all else args.call_id,
                                    skip_bad=args.skip_bad, errors=errors))
    except (LiError, OSError) as exc:
        raise CliError(str(exc)) from None
    for error in errors:
        print(f"kerbtel li export: skipped {error}", file=sys.stderr)
    if not records:
        raise CliError(f"no record of call {args.call_id!r} in {args.store}" if not args.all else f"no records in {args.store}")
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
    else:
        for rec in records:
            print(f"call {rec.call_id}" + (f" (sc {rec.sc})" if rec.sc else ""))
            for role, who in rec.parties.items():
                print(f"  {role}: {who}")
            print(f"  start: {rec.start}")
            print(f"  end:   {rec.end}")
            for name, value in rec.keys.items():
                print(f"  key {name}: {value.hex()}")
    return 1 if errors else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("li", help="lawful intercept: key pair, export of call records",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="li_command", metavar="SUBCOMMAND", required=True)
    keygen = sub.add_parser("keygen", help="make the intercept key pair (X25519)")
    keygen.add_argument("--out", required=True, metavar="DIR", help="directory for intercept.key and intercept.pub")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(func=_cmd_keygen)
    export = sub.add_parser("export", help="decrypt the stored records of a call (agency)")
    export.add_argument("--store", required=True, metavar="PATH", help="a store directory or one li-*.jsonl file")
    export.add_argument("--call-id", metavar="ID", help="the call to export")
    export.add_argument("--all", action="store_true", help="every call in the store")
    export.add_argument("--key", required=True, metavar="PRIVATE_KEY", help="intercept.key")
    export.add_argument("--json", action="store_true", help="JSON output")
    export.add_argument("--skip-bad", action="store_true", help="report unreadable records and go on (exit 1)")
    export.set_defaults(func=_cmd_export)
