"""`kdcd -c /etc/kerbtel/kdcd.toml` (or `python -m kdcd -c ...`): the KDC daemon.

Exit codes: 0 clean stop; 1 a part failed to start or failed while running/stopping; 2 the
configuration is invalid (one line on stderr naming the key, before anything starts); 130
interrupted during start-up.

With `workers = 1` the process serves by itself; with N > 1 it supervises N worker processes
(kdcd/workers.py), which are this same program started with the internal `--worker-fd` option.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from common.config import ConfigError, parse_hostport
from common.daemon import Daemon, daemon_argparser, run
from common.logsetup import configure_logging
from common.sdnotify import SystemdNotifier

EXIT_CONFIG = 2
DEFAULT_CONFIG = Path("/etc/kerbtel/kdcd.toml")


def build_parser() -> argparse.ArgumentParser:
    parser = daemon_argparser("kdcd", description="kerbtel PKINIT Kerberos KDC", default_config=DEFAULT_CONFIG)
    # Internal: the supervisor starts its workers with these; tests and benchmarks may name
    # another engine factory ("module:callable", called as factory(cfg, exit_stack)).
    parser.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--listen-json", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--engine-factory", default=None, help=argparse.SUPPRESS)
    return parser


def _load_factory(spec: str | None):
    from kdcd.server import default_engine_factory

    if not spec:
        return default_engine_factory
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"--engine-factory wants module:callable, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def _worker_args(args: argparse.Namespace) -> list[str]:
    out = []
    if args.log_level:
        out += ["--log-level", args.log_level]
    if args.log_format:
        out += ["--log-format", args.log_format]
    if not args.uvloop:
        out.append("--no-uvloop")
    if args.engine_factory:
        out += ["--engine-factory", args.engine_factory]
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kdcd.config import load_kdcd_config

    try:
        cfg = load_kdcd_config(args.config)
    except ConfigError as exc:
        print(f"kdcd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.listen_json:
        listen = json.loads(args.listen_json)
        cfg = cfg.with_listen(
            [parse_hostport(a) for a in listen.get("tcp", [])], [parse_hostport(a) for a in listen.get("udp", [])]
        )
    configure_logging(args.log_level or cfg.logging.level, args.log_format or cfg.logging.format)
    try:
        factory = _load_factory(args.engine_factory)
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"kdcd: --engine-factory: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from kdcd.server import KdcServer

    if args.worker_fd is not None:
        import structlog

        from kdcd.workers import ParentLink

        structlog.contextvars.bind_contextvars(worker=int(os.environ.get("KDCD_WORKER_INDEX", "0")))
        server = KdcServer(cfg, engine_factory=factory, config_path=args.config, reuse_port=True)
        daemon = Daemon([server], SystemdNotifier(environ={}))  # only the supervisor talks to systemd
        daemon.services.append(ParentLink(args.worker_fd, daemon.request_stop))
    elif cfg.workers == 1:
        daemon = Daemon([KdcServer(cfg, engine_factory=factory, config_path=args.config)], SystemdNotifier())
    else:
        from kdcd.workers import WorkerSupervisor

        supervisor = WorkerSupervisor(cfg, args.config, worker_args=_worker_args(args))
        daemon = Daemon([supervisor], SystemdNotifier())
    return run(daemon.run, use_uvloop=args.uvloop)


if __name__ == "__main__":
    sys.exit(main())
