"""`ctad -c /etc/kerbtel/ctad.toml` (or `python -m ctad -c ...`): the CTA daemon.

First half (issue 4): device identity, PKINIT with the KDC (ticket cached across restarts), the
AP exchange with its SC, ESP, REGISTER of its lines and keep-alives, re-establishing on its own
(ctad/service.py). Second half (issue 5): with `[line]`, the line side for local softphones
(registrar and B2BUA, ctad/line.py), calls with the SC (ctad/calls.py) and per-call media
(ctad/media.py). With `[echo] enabled` (and no `[line]`) it is the echo test service instead
(ctad/echo.py). Exit codes as for every kerbtel daemon (docs/operations.md); 2 = invalid
configuration.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common.config import ConfigError
from common.daemon import Daemon, daemon_argparser, run
from common.logsetup import configure_logging
from common.sdnotify import SystemdNotifier

EXIT_CONFIG = 2
DEFAULT_CONFIG = Path("/etc/kerbtel/ctad.toml")


def main(argv: list[str] | None = None) -> int:
    args = daemon_argparser(
        "ctad", description="kerbtel telephony adapter (CTA)", default_config=DEFAULT_CONFIG
    ).parse_args(argv)
    from ctad.config import load_ctad_config

    try:
        cfg = load_ctad_config(args.config)
    except ConfigError as exc:
        print(f"ctad: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.log_level or cfg.logging.level, args.log_format or cfg.logging.format)
    from ctad.service import CtaService

    daemon = Daemon([CtaService(cfg)], SystemdNotifier())
    return run(daemon.run, use_uvloop=args.uvloop)


if __name__ == "__main__":
    sys.exit(main())
