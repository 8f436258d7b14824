"""`kerbtel kinit`: obtain a ticket with PKINIT or a keytab and write an MIT credential cache.

    kerbtel kinit --identity cta1/ --kdc 127.0.0.1:8888 --anchor operator-ca.pem \\
        --service sc/sc1.example.test@EXAMPLE.TEST --ccache /tmp/cc
    kerbtel kinit --keytab scs/sc1/sc.keytab --principal sc/sc1.example.test@EXAMPLE.TEST \\
        --kdc 127.0.0.1:8888 --service sc/sc2.example.test@EXAMPLE.TEST --ccache /tmp/cc
    klist /tmp/cc

With --keytab the client authenticates with PA-ENC-TIMESTAMP under its keytab keys (the
principal's highest kvno); --principal may be left out when the keytab holds one principal.

DIR holds cert.pem and key.pem (and issuer.pem) as `kerbtel pki` writes them. The principal
defaults to the certificate's id-pkinit-san, the realm to the principal's, the service to
krbtgt/REALM. Without --anchor the KDC certificate must chain to DIR/issuer.pem (right for
an operator-issued CTA certificate, whose issuer also certifies the KDC).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path

from common import pki
from common.ccache import Ccache
from common.cli import CliError
from common.keytab import Keytab, KeytabFormatError
from common.krb5client import (
    AsClientConfig,
    AsExchange,
    AsResult,
    ClientIdentity,
    KeyIdentity,
    KrbClientError,
    send_to_kdc,
)
from common.principal import Principal, PrincipalSyntaxError


def _load_identity(directory: Path) -> tuple[ClientIdentity, list]:
    try:
        certs = pki.load_certificates(directory / pki.CERT_FILE)
        key = pki.load_private_key(directory / pki.KEY_FILE)
        issuers = pki.load_certificates(directory / pki.ISSUER_FILE) if (directory / pki.ISSUER_FILE).exists() else []
    except FileNotFoundError as exc:
        raise CliError(f"--identity {directory}: missing {exc.filename}") from None
    except (ValueError, OSError) as exc:
        raise CliError(f"--identity {directory}: {exc}") from None
    leaf, *chain = certs
    # Intermediates travel with the request; a self-signed root never needs to.
    intermediates = tuple(c for c in [*chain, *issuers] if c.issuer != c.subject)
    return ClientIdentity(leaf, key, intermediates), issuers


def _kdc_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--kdc {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def _exchange(config: AsClientConfig, host: str, port: int, transport: str, timeout: float) -> AsResult:
    exchange = AsExchange(config)
    request = exchange.start(wallclock=dt.datetime.now(dt.timezone.utc))
    while True:
        reply = await send_to_kdc(host, port, request, transport=transport, timeout=timeout)
        step = exchange.receive(reply, wallclock=dt.datetime.now(dt.timezone.utc))
        if isinstance(step, AsResult):
            return step
        request = step.request


def _keytab_config(args: argparse.Namespace) -> AsClientConfig:
    try:
        keytab = Keytab.load(args.keytab)
    except (OSError, KeytabFormatError) as exc:
        raise CliError(f"--keytab {args.keytab}: {exc}") from None
    try:
        if args.principal:
            client = Principal.parse(args.principal, default_realm=args.realm)
        else:
            principals = keytab.principals()
            if len(principals) != 1:
                names = ", ".join(str(p) for p in principals) or "none"
                raise CliError(f"--keytab {args.keytab} holds {len(principals)} principals ({names}); give --principal")
            client = principals[0]
        realm = args.realm or client.realm
        service = Principal.parse(args.service, default_realm=realm) if args.service else None
        identity = KeyIdentity.from_keytab(keytab, client)
        return AsClientConfig(identity=identity, client=client, realm=realm, service=service,
                              lifetime=dt.timedelta(seconds=args.lifetime))
    except PrincipalSyntaxError as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(f"--keytab {args.keytab}: {exc}") from None


def _cmd_kinit(args: argparse.Namespace) -> int:
    host, port = _kdc_address(args.kdc)
    if args.keytab:
        return _run(_keytab_config(args), host, port, args)
    identity, issuers = _load_identity(Path(args.identity))
    try:
        if args.principal:
            client = Principal.parse(args.principal)
        else:
            client = pki.principal_from_certificate(identity.certificate)
            if client is None:
                raise CliError("the certificate names no principal (id-pkinit-san); give --principal")
        realm = args.realm or client.realm
        service = Principal.parse(args.service, default_realm=realm) if args.service else None
    except (PrincipalSyntaxError, pki.CertificateError) as exc:
        raise CliError(str(exc)) from None
    anchors = []
    for path in args.anchor or []:
        try:
            anchors += pki.load_certificates(path)
        except (OSError, ValueError) as exc:
            raise CliError(f"--anchor {path}: {exc}") from None
    if not anchors:
        anchors = [c for c in issuers if c.issuer == c.subject] or issuers
    if not anchors:
        raise CliError("no trust anchor for the KDC certificate: give --anchor CA.pem")
    try:
        config = AsClientConfig(
            identity=identity,
            client=client,
            realm=realm,
            anchors=tuple(anchors),
            service=service,
            mode=args.mode,
            dh_group=args.dh_group,
            lifetime=dt.timedelta(seconds=args.lifetime),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return _run(config, host, port, args)


def _run(config: AsClientConfig, host: str, port: int, args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_exchange(config, host, port, args.transport, args.timeout))
    except KrbClientError as exc:
        raise CliError(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise CliError(f"KDC {host}:{port}: {exc or 'timed out'}") from None
    Ccache(result.client, [result.to_credential()]).save(args.ccache)
    print(f"{result.client}: ticket for {result.server} valid until {result.endtime:%Y-%m-%d %H:%M:%S}Z "
          f"({result.mode}{', KDF ' + result.kdf if result.kdf else ''}) written to {args.ccache}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("kinit", help="get a ticket with PKINIT into an MIT ccache",
                                   description=__doc__.split("\n\n")[0])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--identity", metavar="DIR", help="PKINIT: directory with cert.pem, key.pem (issuer.pem)")
    who.add_argument("--keytab", metavar="FILE", help="PA-ENC-TIMESTAMP with the principal's keys from FILE")
    parser.add_argument("--kdc", required=True, metavar="HOST:PORT", help="the KDC to ask")
    parser.add_argument("--service", metavar="PRINCIPAL", help="service principal (default krbtgt/REALM)")
    parser.add_argument("--principal", help="client principal (default: the certificate's id-pkinit-san, "
                                            "or the keytab's only principal)")
    parser.add_argument("--realm", help="realm (default: the client principal's)")
    parser.add_argument("--mode", choices=["dh", "ecdh", "rsa"], default="dh", help="reply-key delivery (default dh)")
    parser.add_argument("--dh-group", type=int, choices=[14, 15, 16], default=14, help="MODP group for dh (default 14)")
    parser.add_argument("--anchor", action="append", metavar="CA.pem", help="CA trusted for the KDC certificate; repeatable")
    parser.add_argument("--transport", choices=["tcp", "udp"], default="tcp", help="default tcp")
    parser.add_argument("--lifetime", type=int, default=86400, metavar="SECONDS", help="requested lifetime (default 1 day)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per-request timeout")
    parser.add_argument("--ccache", required=True, metavar="FILE", help="credential cache to write (mode 0600)")
    parser.set_defaults(func=_cmd_kinit)
