"""`kerbtel bench calls [--calls N] [--concurrency C] [--cross-sc/--same-sc]`: call setups per
second end to end -- a throw-away deployment, kdcd + sc1 + sc2 as subprocesses, both CTAs
simulated in this process (PKINIT, AP exchange, ESP, REGISTER), N calls A -> B (INVITE, keys,
200, ACK, BYE), with setup latency p50/p99 and the SCs' CPU per call. scd/bench_calls.py has the
details."""

from __future__ import annotations

import argparse
import sys

from common.cli import CliError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _cmd_calls(args: argparse.Namespace) -> int:
    from scd.bench_calls import CallsBenchError, format_calls_report, run_calls_bench

    progress = (lambda text: print(f"... {text}", file=sys.stderr, flush=True)) if not args.quiet else None
    try:
        report = run_calls_bench(args.calls, args.concurrency, args.cross_sc, warmup=args.warmup,
                                 directory=args.keep, progress=progress)
    except (CallsBenchError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(format_calls_report(report))
    return 0 if report.completed == report.calls else 1


def register(sub) -> None:
    calls = sub.add_parser("calls", help="call setups/s end to end through sc1 (and sc2), latency p50/p99",
                           description=__doc__.split("\n\n")[0])
    calls.add_argument("--calls", type=_positive, default=200, help="measured calls (default 200)")
    calls.add_argument("--concurrency", type=_positive, default=1, help="calls in flight at a time (default 1)")
    where = calls.add_mutually_exclusive_group()
    where.add_argument("--cross-sc", dest="cross_sc", action="store_true", default=True,
                       help="cta2 on sc2: cta1 -> sc1 -> sc2 -> cta2 (default)")
    where.add_argument("--same-sc", dest="cross_sc", action="store_false", help="both CTAs on sc1")
    calls.add_argument("--warmup", type=int, default=2, help="unmeasured calls first (default 2)")
    calls.add_argument("--keep", type=lambda p: __import__("pathlib").Path(p), default=None, metavar="DIR",
                       help="build the deployment in DIR and keep it (logs included)")
    calls.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    calls.set_defaults(func=_cmd_calls)
