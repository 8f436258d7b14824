"""`kerbtel demo [--dir DIR] [--keep] [--softphone auto|baresip|builtin] [--no-capture]`.

Starts a whole loopback deployment (kdcd, sc1, sc2, cta1, cta2 as separate processes), attaches
two softphones (baresip when installed, else the built-in one), places a call A -> B, checks the
tones both ways and prints a short report (common/demo.py). Exit 0 only if every step worked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import CliError


def _cmd_demo(args: argparse.Namespace) -> int:
    from common.demo import DemoOptions, run_demo

    directory = Path(args.dir).absolute() if args.dir else None
    if directory is not None and directory.exists() and any(directory.iterdir()) \
            and not (directory / "deployment.json").exists():
        raise CliError(f"{directory} is not empty and holds no deployment; give an empty or new directory")
    return run_demo(DemoOptions(directory=directory, keep=args.keep, softphone=args.softphone,
                                capture="off" if args.no_capture else "auto", talk=args.talk,
                                timeout=args.timeout))


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="a secure call through a loopback deployment, with a report",
                                   description=__doc__.split("\n\n")[1])
    parser.add_argument("--dir", metavar="DIR", help="work here (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the directory after a successful run")
    parser.add_argument("--softphone", choices=("auto", "baresip", "builtin"), default="auto",
                        help="the softphones on the line sides (default auto: baresip when installed)")
    parser.add_argument("--no-capture", action="store_true", help="do not capture with tshark even as root")
    parser.add_argument("--talk", type=float, default=3.0, metavar="S", help="seconds of audio (default 3)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="seconds to wait for each daemon or call step (default 30)")
    parser.set_defaults(func=_cmd_demo)
