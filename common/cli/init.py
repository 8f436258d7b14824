"""`kerbtel init DIR [--realm EXAMPLE.TEST] [--force]`: a throw-away loopback deployment.

Writes the PKI (manufacturer and operator CAs, KDC certificate), the KDC database, master key
and kdcd.toml, two signaling-controller principals with keytabs and scd configs, two provisioned
CTAs and one factory-fresh CTA with ctad configs, the echo test service (a ctad in echo mode at
--echo-number, DIR/echo/echo.toml), an MIT krb5.conf and DIR/deployment.json (kdcd/deployment.py
documents the layout and the manifest). Start the KDC with `kdcd -c DIR/kdcd.toml`.
"""

from __future__ import annotations

import argparse

from common.cli import CliError

DEFAULT_ECHO_NUMBER = "+15550009999"  # kdcd.deployment.ECHO_NUMBER (not imported: keeps `kerbtel` quick to start)


def _cmd_init(args: argparse.Namespace) -> int:
    from kdcd.db import DatabaseError
    from kdcd.deployment import DeploymentError, create_deployment

    try:
        cta_scs = {}
        for item in args.cta_sc:
            cta, sep, sc = item.partition("=")
            if not sep:
                raise CliError(f"--cta-sc {item!r}: expected CTA=SC, e.g. cta2=sc2")
            cta_scs[cta] = sc
        dep = create_deployment(args.directory, realm=args.realm, force=args.force, key_log=args.key_log, cta_scs=cta_scs,
                                echo_number=args.echo_number)
    except (DeploymentError, DatabaseError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or args.directory}: {exc.strerror or exc}") from None
    print(f"{dep.directory}: deployment for realm {dep.realm}, KDC on {dep.kdc_address} (tcp and udp)")
    print(f"  manifest     {dep.directory / 'deployment.json'}")
    print(f"  start KDC    kdcd -c {dep.kdc_config}")
    print(f"  MIT clients  KRB5_CONFIG={dep.krb5_conf}")
    for sc in dep.scs:
        print(f"  {sc.name:<6} {sc.principal}  keytab {sc.keytab}")
        print(f"         km {dep.host}:{sc.km_port}  esp {dep.host}:{sc.esp_port}  start: scd -c {sc.config}")
    for cta in dep.ctas:
        state = "provisioned" if cta.provisioned else "factory-fresh"
        print(f"  {cta.name:<6} {cta.principal}  {state}  {cta.identity_dir}")
        print(f"         start: ctad -c {cta.config}")
    if dep.echo is not None:
        print(f"  echo   {dep.echo.principal}  echo test service at {dep.echo.phone_number} on {dep.echo.sc}")
        print(f"         start: ctad -c {dep.echo.config}")
    if args.key_log:
        print(f"  key logs on (0600); tshark options: kerbtel keys wireshark {dep.directory}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "init", help="create a throw-away loopback deployment (PKI, KDC, SCs, CTAs)", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("directory", metavar="DIR", help="where to write it (must be empty unless --force)")
    parser.add_argument("--realm", default="EXAMPLE.TEST", help="the realm (default EXAMPLE.TEST)")
    parser.add_argument("--force", action="store_true", help="replace a deployment in a non-empty DIR")
    parser.add_argument("--cta-sc", action="append", default=[], metavar="CTA=SC",
                        help="serve a CTA from another signaling controller (e.g. cta2=sc2; default: all on sc1)")
    parser.add_argument("--echo-number", default=DEFAULT_ECHO_NUMBER, metavar="NUMBER",
                        help=f"the echo test service's number (E.164; default {DEFAULT_ECHO_NUMBER})")
    parser.add_argument("--key-log", action="store_true",
                        help="turn on the opt-in key log (SA keys, mode 0600) in every scd/ctad config, "
                             "for `kerbtel keys wireshark DIR`")
    parser.set_defaults(func=_cmd_init)
