"""`kerbtel bench km [--clients N] [--per-client M] [--rounds R] [--esp-packets P] [--payload B] [--no-mit]`:
(a) AP-REQ verification in scd's ScKeyManager against MIT krb5_rd_req on the same AP-REQs (same
process, interleaved rounds), (b) whole AP exchanges/s, and ESP protect+unprotect packets/s per
suite. scd/bench_km.py has the details."""

from __future__ import annotations

import argparse
import sys


def _cmd_km(args: argparse.Namespace) -> int:
    from scd.bench_km import format_report, run_km_bench

    progress = (lambda text: print(f"... {text}", file=sys.stderr, flush=True)) if not args.quiet else None
    report = run_km_bench(clients=args.clients, per_client=args.per_client, esp_packets=args.esp_packets,
                          payload=args.payload, mit=not args.no_mit, rounds=args.rounds, progress=progress)
    print(format_report(report))
    return 0


def register(sub) -> None:
    km = sub.add_parser("km", help="AP-REQ verification vs MIT krb5_rd_req, whole AP exchanges/s, ESP packets/s per suite",
                        description=__doc__.split("\n\n")[0])
    km.add_argument("--clients", type=int, default=50, help="distinct tickets (default 50)")
    km.add_argument("--per-client", type=int, default=20, help="AP Requests per ticket (default 20)")
    km.add_argument("--rounds", type=int, default=15, help="interleaved MIT/kerbtel timing rounds (default 15)")
    km.add_argument("--esp-packets", type=int, default=20000, help="packets per ESP suite (default 20000)")
    km.add_argument("--payload", type=int, default=400, help="ESP inner payload bytes (default 400)")
    km.add_argument("--no-mit", action="store_true", help="skip the MIT krb5_rd_req comparison")
    km.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    km.set_defaults(func=_cmd_km)
