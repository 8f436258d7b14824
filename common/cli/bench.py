"""`kerbtel bench kdc [--vs-mit] [--mode dh|ecdh|rsa ...] [--clients N] [--requests M] [--workers W]
[--seconds S]`: PKINIT AS exchanges per second against a throw-away kdcd (and MIT krb5kdc).

Builds a deployment in a temporary directory, starts kdcd with W worker processes, drives it with
N concurrent in-process clients per mode and prints exchanges/s, latency p50/p99, the KDC's CPU
milliseconds per exchange, the load generator's own CPU and the machine's crypto ceiling. With
--vs-mit the same generator drives MIT krb5kdc (same certificates, realm, principals, workers)
in DH and RSA modes and the kerbtel/MIT ratios are printed. kdcd/bench.py has the details.
"""

from __future__ import annotations

import argparse
import sys

from common.cli import CliError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _cmd_kdc(args: argparse.Namespace) -> int:
    from kdcd.bench import MODES, BenchError, BenchOptions, format_report, run_kdc_bench

    modes = tuple(dict.fromkeys(args.mode or MODES))
    opts = BenchOptions(
        modes=modes,
        clients=args.clients,
        requests=args.requests,
        seconds=args.seconds,
        workers=args.workers,
        vs_mit=args.vs_mit,
        verify_every=args.verify_every,
        warmup=args.warmup,
        directory=args.keep,
    )
    progress = (lambda text: print(f"... {text}", file=sys.stderr, flush=True)) if not args.quiet else None
    try:
        report = run_kdc_bench(opts, progress=progress)
    except (BenchError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(format_report(report))
    failed = [r for r in report.results if r.ok == 0]
    return 1 if failed else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks: kdc, km, media, calls (each against a peer or baseline run in the same process tree)", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="bench", metavar="WHAT", required=True)
    kdc = sub.add_parser("kdc", help="PKINIT AS exchanges/s against kdcd (and MIT krb5kdc with --vs-mit)",
                         description=__doc__.split("\n\n")[1])
    kdc.add_argument("--vs-mit", action="store_true", help="also run MIT krb5kdc (DH and RSA modes) and print ratios")
    kdc.add_argument("--mode", action="append", choices=("dh", "ecdh", "rsa"),
                     help="a PKINIT mode to run (repeatable; default: all three)")
    kdc.add_argument("--clients", type=_positive, default=4, help="concurrent in-process clients (default 4)")
    kdc.add_argument("--requests", type=_positive, default=400, help="exchanges per mode and KDC (default 400)")
    kdc.add_argument("--seconds", type=float, default=None, help="run each mode about this long (requests pre-built from the warm-up's rate) instead of --requests")
    kdc.add_argument("--workers", type=_positive, default=1, help="KDC worker processes, both KDCs (default 1)")
    kdc.add_argument("--verify-every", type=_positive, default=16,
                     help="verify every n-th reply in full (default 16; 1 = all); the rest are checked to be AS-REPs")
    kdc.add_argument("--warmup", type=int, default=2, help="exchanges per client before measuring (default 2)")
    kdc.add_argument("--keep", type=lambda p: __import__("pathlib").Path(p), default=None, metavar="DIR",
                     help="build the deployment (and MIT realm) in DIR and keep it, instead of a temporary directory")
    kdc.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    kdc.set_defaults(func=_cmd_kdc)
    from common.cli import bench_calls, bench_km, bench_media

    bench_km.register(sub)
    bench_media.register(sub)
    bench_calls.register(sub)
