"""`scd -c /etc/kerbtel/scd.toml` (or `python -m scd -c ...`): the signaling-controller daemon.

Key management (pktc) and ESP-protected SIP signaling for the CTAs holding tickets for this
SC's principal; with `[calls]`, `[peering]` and `[li]` also call control, the SC-to-SC ESP
links and the lawful-intercept store (scd/server.py). Exit codes: 0 clean stop; 1 a part failed to start or failed
while running/stopping; 2 the configuration is invalid (one line on stderr naming the key,
before anything starts); 130 interrupted during start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common.config import ConfigError
from common.daemon import Daemon, daemon_argparser, run
from common.logsetup import configure_logging
from common.sdnotify import SystemdNotifier

EXIT_CONFIG = 2
DEFAULT_CONFIG = Path("/etc/kerbtel/scd.toml")


def main(argv: list[str] | None = None) -> int:
    args = daemon_argparser(
        "scd", description="kerbtel signaling controller", default_config=DEFAULT_CONFIG
    ).parse_args(argv)
    from scd.config import load_scd_config

    try:
        cfg = load_scd_config(args.config)
    except ConfigError as exc:
        print(f"scd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.log_level or cfg.logging.level, args.log_format or cfg.logging.format)
    from scd.server import ScServer

    daemon = Daemon([ScServer(cfg, config_path=args.config)], SystemdNotifier())
    return run(daemon.run, use_uvloop=args.uvloop)


if __name__ == "__main__":
    sys.exit(main())
