"""`kerbtel pki`: create CAs, issue certificates, show and verify them.

    kerbtel pki init-ca --role manufacturer|operator --name NAME --out DIR
    kerbtel pki issue-device   --ca DIR --mac MAC --realm REALM --out DIR
    kerbtel pki issue-operator --ca DIR --device DIR|CERT --phone +15551230001 [--phone ...] --out DIR
    kerbtel pki issue-kdc      --ca DIR --realm REALM [--hostname FQDN] --out DIR
    kerbtel pki issue-service  --ca DIR --hostname FQDN --realm REALM [--service sc] --out DIR
    kerbtel pki show FILE [--json]
    kerbtel pki verify --anchor CA.pem [--anchor ...] [--purpose P] [--principal P] [--at TIME] CERT
    kerbtel pki phone-id NUMBER

File layout (docs/pki.md): a CA directory holds ca.pem + ca.key; a leaf directory holds
cert.pem, key.pem (not for issue-operator: the key stays on the device) and issuer.pem.
Keys are written 0600, certificates 0644, each atomically. Existing files are never overwritten
without --force.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from common import pki
from common.asn1 import oids
from common.cli import CliError
from common.fileio import InsecureFileMode
from common.principal import Principal, PrincipalSyntaxError

_EKU_NAMES = {
    oids.ID_PKINIT_KPCLIENTAUTH: "id-pkinit-KPClientAuth",
    oids.ID_PKINIT_KPKDC: "id-pkinit-KPKdc",
    oids.ID_MS_KP_SC_LOGON: "ms-kp-sc-logon",
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
}


# --- helpers ---------------------------------------------------------------------------------


def _load_ca(directory: str) -> pki.CertificateAuthority:
    try:
        return pki.load_ca(directory)
    except FileNotFoundError as exc:
        raise CliError(f"{directory} is not a CA directory (need {pki.CA_CERT_FILE} and {pki.CA_KEY_FILE}): {exc}") from exc
    except (InsecureFileMode, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _load_certs(path: str) -> list[x509.Certificate]:
    try:
        return pki.load_certificates(path)
    except FileNotFoundError as exc:
        raise CliError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise CliError(f"{path} is a directory, not a certificate file") from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _prepare_out(directory: str, names: tuple[str, ...], force: bool) -> Path:
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {directory} exists and is not a directory")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise CliError(f"{', '.join(str(out / n) for n in existing)} already exist(s); use --force to replace")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    return out


def _mac(text: str) -> bytes:
    try:
        return pki.parse_mac(text)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _realm(text: str) -> str:
    if not text or any(c in text for c in "/@\\") or text.strip() != text:
        raise CliError(f"bad realm {text!r}")
    return text


def _key(args: argparse.Namespace, *, allow_ec: bool) -> pki.issue.PrivateKey:
    if args.key_type == "ec" and not allow_ec:
        raise CliError("this certificate needs an RSA key")
    try:
        return pki.generate_key(args.key_type, args.bits)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _write_leaf(out: Path, cert: x509.Certificate, ca: pki.CertificateAuthority, key=None) -> None:
    if key is not None:
        pki.save_private_key(out / pki.KEY_FILE, key)
    pki.save_certificates(out / pki.CERT_FILE, cert)
    pki.save_certificates(out / pki.ISSUER_FILE, ca.certificate)


def _report(out: Path, cert: x509.Certificate, with_key: bool) -> None:
    principal = pki.principal_from_certificate(cert)
    files = [pki.CERT_FILE] + ([pki.KEY_FILE] if with_key else []) + [pki.ISSUER_FILE]
    print(f"wrote {', '.join(str(out / f) for f in files)}")
    if principal is not None:
        print(f"principal:  {principal}")
    print(f"thumbprint: {pki.thumbprint(cert).hex()}")


def _add_key_options(parser: argparse.ArgumentParser, *, ec_allowed: bool) -> None:
    choices = ["rsa", "ec"] if ec_allowed else ["rsa"]
    parser.add_argument("--key-type", choices=choices, default="rsa", help="key algorithm (ec = P-256); default rsa")
    parser.add_argument("--bits", type=int, choices=pki.issue.RSA_KEY_SIZES, default=2048, help="RSA key size; default 2048")


def _add_common(parser: argparse.ArgumentParser, profile: str) -> None:
    parser.add_argument("--days", type=int, default=None, help=f"validity in days (default {pki.issue.DEFAULT_DAYS[profile]})")
    parser.add_argument("--force", action="store_true", help="replace existing files in --out")


def _issue(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


# --- commands --------------------------------------------------------------------------------


def cmd_init_ca(args: argparse.Namespace) -> int:
    out = _prepare_out(args.out, (pki.CA_CERT_FILE, pki.CA_KEY_FILE), args.force)
    ca = _issue(
        pki.create_ca, args.role, args.name, key=_key(args, allow_ec=True), days=args.days
    )
    pki.save_ca(ca, out)
    print(f"wrote {out / pki.CA_CERT_FILE}, {out / pki.CA_KEY_FILE} ({args.role} CA {args.name!r})")
    print(f"thumbprint: {pki.thumbprint(ca.certificate).hex()}")
    return 0


def cmd_issue_device(args: argparse.Namespace) -> int:
    ca = _load_ca(args.ca)
    mac = _mac(args.mac)
    realm = _realm(args.realm)
    out = _prepare_out(args.out, (pki.CERT_FILE, pki.KEY_FILE, pki.ISSUER_FILE), args.force)
    key = _key(args, allow_ec=False)
    cert = _issue(pki.issue_device_certificate, ca, key.public_key(), mac, realm, days=args.days)
    _write_leaf(out, cert, ca, key)
    _report(out, cert, True)
    return 0


def _device_certificate(path: str) -> x509.Certificate:
    p = Path(path)
    file = p / pki.CERT_FILE if p.is_dir() else p
    return _load_certs(str(file))[0]


def cmd_issue_operator(args: argparse.Namespace) -> int:
    ca = _load_ca(args.ca)
    device = _device_certificate(args.device)
    if args.manufacturer_anchor:
        anchors = [c for path in args.manufacturer_anchor for c in _load_certs(path)]
        verifier = pki.CertificateVerifier([pki.TrustAnchor(a, pki.Role.MANUFACTURER) for a in anchors])
        try:
            verifier.verify(device, now=dt.datetime.now(dt.timezone.utc), purpose=pki.Purpose.CTA)
        except pki.CertificateError as exc:
            raise CliError(f"device certificate rejected: {type(exc).__name__}: {exc}") from exc
    try:
        device_principal = pki.principal_from_certificate(device)
    except pki.CertificateError as exc:
        raise CliError(f"device certificate: {exc}") from exc
    if args.realm is None:
        if device_principal is None:
            raise CliError("the device certificate names no principal; give --realm")
        realm = device_principal.realm
    else:
        realm = _realm(args.realm)
    out = Path(args.out)
    device_dir = Path(args.device) if Path(args.device).is_dir() else Path(args.device).parent
    if out.resolve() == device_dir.resolve():
        raise CliError("--out must differ from the device directory (its cert.pem is the factory certificate)")
    out = _prepare_out(args.out, (pki.CERT_FILE, pki.ISSUER_FILE), args.force)
    cert = _issue(
        pki.issue_operator_certificate, ca, device, realm, phone_numbers=args.phone, days=args.days
    )
    _write_leaf(out, cert, ca)
    _report(out, cert, False)
    print(f"phone IDs:  {', '.join(p.hex() for p in pki.phone_ids_from_certificate(cert))}")
    return 0


def cmd_issue_kdc(args: argparse.Namespace) -> int:
    ca = _load_ca(args.ca)
    realm = _realm(args.realm)
    out = _prepare_out(args.out, (pki.CERT_FILE, pki.KEY_FILE, pki.ISSUER_FILE), args.force)
    key = _key(args, allow_ec=True)
    cert = _issue(pki.issue_kdc_certificate, ca, key.public_key(), realm, hostname=args.hostname, days=args.days)
    _write_leaf(out, cert, ca, key)
    _report(out, cert, True)
    return 0


def cmd_issue_service(args: argparse.Namespace) -> int:
    ca = _load_ca(args.ca)
    realm = _realm(args.realm)
    out = _prepare_out(args.out, (pki.CERT_FILE, pki.KEY_FILE, pki.ISSUER_FILE), args.force)
    key = _key(args, allow_ec=True)
    cert = _issue(
        pki.issue_service_certificate, ca, key.public_key(), args.service, args.hostname, realm, days=args.days
    )
    _write_leaf(out, cert, ca, key)
    _report(out, cert, True)
    return 0


def _key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__


def _time(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_certificate(cert: x509.Certificate) -> dict:
    """What `kerbtel pki show` prints, as a dict (values are strings or lists of strings)."""
    info: dict = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": _time(cert.not_valid_before_utc),
        "not_after": _time(cert.not_valid_after_utc),
        "key": _key_description(cert),
        "signature": getattr(cert.signature_algorithm_oid, "_name", cert.signature_algorithm_oid.dotted_string),
    }
    try:
        bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        is_ca, pathlen = bc.ca, bc.path_length
    except x509.ExtensionNotFound:
        is_ca, pathlen = False, None
    info["type"] = (f"CA (pathlen {pathlen})" if pathlen is not None else "CA") if is_ca else "end entity"
    role = pki.role_from_certificate(cert)
    info["role"] = role.value if role else "none"
    try:
        eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
        info["eku"] = [_EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in eku]
    except x509.ExtensionNotFound:
        info["eku"] = []
    info["principals"] = [str(p) for p in pki.principals_from_certificate(cert)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        info["dns_names"] = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        info["dns_names"] = []
    mac = pki.mac_from_certificate(cert)
    info["mac"] = ":".join(f"{b:02x}" for b in mac) if mac else None
    info["phone_ids"] = [p.hex() for p in pki.phone_ids_from_certificate(cert)]
    info["thumbprint"] = pki.thumbprint(cert).hex()
    return info


def cmd_show(args: argparse.Namespace) -> int:
    certs = _load_certs(args.file)
    described = []
    for cert in certs:
        try:
            described.append(describe_certificate(cert))
        except pki.CertificateError as exc:
            raise CliError(f"{args.file}: {type(exc).__name__}: {exc}") from exc
    if args.json:
        print(json.dumps(described if len(described) > 1 else described[0], indent=2))
        return 0
    labels = [
        ("subject", "subject"), ("issuer", "issuer"), ("serial", "serial"), ("not_before", "not before"),
        ("not_after", "not after"), ("key", "key"), ("signature", "signature"), ("type", "type"),
        ("role", "role"), ("eku", "EKU"), ("principals", "principal"), ("dns_names", "DNS name"),
        ("mac", "MAC"), ("phone_ids", "phone ID"), ("thumbprint", "thumbprint"),
    ]
    for index, info in enumerate(described):
        if len(described) > 1:
            print(f"certificate {index}:")
        for key, label in labels:
            value = info[key]
            if isinstance(value, list):
                for item in value:
                    print(f"  {label + ':':12} {item}")
            elif value is not None:
                print(f"  {label + ':':12} {value}")
    return 0


def _auto_purpose(cert: x509.Certificate) -> pki.Purpose:
    try:
        if cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca:
            return pki.Purpose.CA
    except x509.ExtensionNotFound:
        pass
    try:
        eku = {o.dotted_string for o in cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value}
    except x509.ExtensionNotFound:
        return pki.Purpose.ANY
    if oids.ID_PKINIT_KPKDC in eku:
        return pki.Purpose.KDC
    if oids.ID_PKINIT_KPCLIENTAUTH in eku:
        return pki.Purpose.CTA
    if ExtendedKeyUsageOID.SERVER_AUTH.dotted_string in eku:
        return pki.Purpose.SERVICE
    return pki.Purpose.ANY


def _parse_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"--at {text!r} is not an ISO 8601 time (e.g. 2030-01-01T00:00:00Z)") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def cmd_verify(args: argparse.Namespace) -> int:
    anchors = [c for path in args.anchor for c in _load_certs(path)]
    intermediates = [c for path in args.intermediate for c in _load_certs(path)]
    certs = _load_certs(args.cert)
    leaf, intermediates = certs[0], certs[1:] + intermediates  # a chain file carries its intermediates
    now = _parse_time(args.at) if args.at else dt.datetime.now(dt.timezone.utc)
    expected = None
    if args.principal:
        try:
            expected = Principal.parse(args.principal)
        except PrincipalSyntaxError as exc:
            raise CliError(str(exc)) from exc
    purpose = _auto_purpose(leaf) if args.purpose == "auto" else pki.Purpose(args.purpose)
    try:
        result = pki.CertificateVerifier(anchors).verify(
            leaf, intermediates, now=now, purpose=purpose, expected_principal=expected
        )
    except pki.CertificateError as exc:
        print(f"FAILED {type(exc).__name__} ({exc.krb_error_name}): {exc}")
        return 1
    role = result.role.value if result.role else "none"
    print(f"OK {args.cert}: purpose={purpose.value} role={role} anchor={result.anchor.certificate.subject.rfc4514_string()}")
    for principal in result.principals:
        print(f"  principal:  {principal}")
    if result.mac:
        print(f"  MAC:        {pki.format_mac(result.mac)}")
    for pid in result.phone_ids:
        print(f"  phone ID:   {pid.hex()}")
    print(f"  thumbprint: {result.thumbprint.hex()}")
    return 0


def cmd_phone_id(args: argparse.Namespace) -> int:
    try:
        print(pki.phone_id(args.number).hex())
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return 0


# --- parser ----------------------------------------------------------------------------------


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pki",
        help="create CAs, issue, show and verify certificates",
        description="kerbtel PKI: manufacturer and operator CAs, CTA, KDC and service certificates (docs/pki.md)",
    )
    sub = parser.add_subparsers(dest="pki_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("init-ca", help="create a self-signed manufacturer or operator CA (DIR/ca.pem, DIR/ca.key)")
    p.add_argument("--role", required=True, choices=[r.value for r in pki.Role])
    p.add_argument("--name", required=True, help="CA common name, e.g. 'Acme CTA Root CA'")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_key_options(p, ec_allowed=False)
    p.add_argument("--days", type=int, default=None, help="validity in days (default: 30 years manufacturer, 20 operator)")
    p.add_argument("--force", action="store_true", help="replace an existing CA in DIR (its old key is lost)")
    p.set_defaults(func=cmd_init_ca)

    p = sub.add_parser("issue-device", help="factory: new CTA key pair + manufacturer-signed certificate")
    p.add_argument("--ca", required=True, metavar="DIR", help="manufacturer CA directory")
    p.add_argument("--mac", required=True, help="CTA MAC address, e.g. 00:11:22:aa:bb:cc")
    p.add_argument("--realm", required=True, help="Kerberos realm of the principal cta/<mac>@REALM")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/key.pem, DIR/cert.pem, DIR/issuer.pem")
    _add_key_options(p, ec_allowed=False)
    _add_common(p, "device")
    p.set_defaults(func=cmd_issue_device)

    p = sub.add_parser("issue-operator", help="provisioning: operator certificate with phone IDs for a device's key")
    p.add_argument("--ca", required=True, metavar="DIR", help="operator CA directory")
    p.add_argument("--device", required=True, metavar="DIR|CERT", help="device directory (its cert.pem) or certificate file")
    p.add_argument("--phone", required=True, action="append", metavar="NUMBER", help="E.164 number, e.g. +15551230001 (repeatable)")
    p.add_argument("--realm", default=None, help="realm (default: the device certificate's)")
    p.add_argument(
        "--manufacturer-anchor", action="append", default=[], metavar="CA.pem",
        help="verify the device certificate against this manufacturer CA first (repeatable)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/cert.pem and DIR/issuer.pem (no key)")
    _add_common(p, "operator-cta")
    p.set_defaults(func=cmd_issue_operator)

    p = sub.add_parser("issue-kdc", help="KDC key pair + operator-signed KDC certificate (krbtgt/REALM@REALM)")
    p.add_argument("--ca", required=True, metavar="DIR", help="operator CA directory")
    p.add_argument("--realm", required=True)
    p.add_argument("--hostname", default=None, help="KDC host name, added as dNSName")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/key.pem, DIR/cert.pem, DIR/issuer.pem")
    _add_key_options(p, ec_allowed=True)
    _add_common(p, "kdc")
    p.set_defaults(func=cmd_issue_kdc)

    p = sub.add_parser("issue-service", help="server key pair + certificate (<service>/<fqdn>@REALM)")
    p.add_argument("--ca", required=True, metavar="DIR", help="operator CA directory")
    p.add_argument("--service", default="sc", help="service name (default sc: signaling controller)")
    p.add_argument("--hostname", required=True, help="fully qualified host name")
    p.add_argument("--realm", required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/key.pem, DIR/cert.pem, DIR/issuer.pem")
    _add_key_options(p, ec_allowed=True)
    _add_common(p, "service")
    p.set_defaults(func=cmd_issue_service)

    p = sub.add_parser("show", help="print a certificate's (or bundle's) kerbtel fields")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("verify", help="verify a certificate against anchors (exit 0 valid, 1 invalid)")
    p.add_argument("--anchor", required=True, action="append", metavar="CA.pem", help="trusted CA certificate(s) (repeatable)")
    p.add_argument("--intermediate", action="append", default=[], metavar="FILE", help="untrusted intermediate certificates")
    p.add_argument("--purpose", default="auto", choices=["auto"] + [x.value for x in pki.Purpose])
    p.add_argument("--principal", default=None, help="expected PKINIT principal, e.g. cta/001122aabbcc@REALM")
    p.add_argument("--at", default=None, metavar="TIME", help="verify at this ISO 8601 time instead of now")
    p.add_argument("cert", metavar="CERT", help="certificate file (PEM chain: leaf first)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("phone-id", help="print the phone ID (hex SHA-1 of the normalised number)")
    p.add_argument("number")
    p.set_defaults(func=cmd_phone_id)


if __name__ == "__main__":  # pragma: no cover
    from common.cli import main

    sys.exit(main(["pki", *sys.argv[1:]]))
