"""`kerbtel init DIR`: a complete throw-away kerbtel deployment on loopback, for tests and demos.

    from kdcd.deployment import create_deployment
    dep = create_deployment("/tmp/kt", realm="EXAMPLE.TEST")
    dep.manifest()   # what DIR/deployment.json holds

Layout (every path in the manifest is absolute):

    DIR/deployment.json                  the manifest (a stable interface; see below)
    DIR/krb5.conf                        MIT client config: kdc = 127.0.0.1:PORT, TCP only,
                                         pkinit_anchors = the operator CA, no DNS
    DIR/kdcd.toml                        kdcd's config (paths relative to DIR)
    DIR/kdcd.db, DIR/kdcd.db.mkey        the KDC database and its master-key stash (0600)
    DIR/pki/manufacturer-ca/ca.pem|ca.key
    DIR/pki/operator-ca/ca.pem|ca.key
    DIR/kdc/cert.pem|key.pem|issuer.pem  the KDC certificate (operator CA)
    DIR/scs/scN/sc.keytab                keytab of sc/scN.<realm lowercase>@REALM
    DIR/scs/scN/scd.toml                 scd's config (km and ESP ports on 127.0.0.1; [calls],
                                         [peering] with the other SC, [li])
    DIR/scs/scN/li/                      scN's lawful-intercept store (written by scd)
    DIR/li/intercept.key|intercept.pub   the intercept key pair (X25519; the SCs get the .pub,
                                         `kerbtel li export --key` takes the .key)
    DIR/ctas/ctaN/ctad.toml              ctad's config (all CTAs use sc1); its ticket cache is
                                         DIR/ctas/ctaN/ccache; its [line] side (softphones
                                         register with / dial sip:NUMBER@) is ctas[].line
    DIR/scs/scN/keys.jsonl, DIR/ctas/ctaN/keys.jsonl
                                         the opt-in key logs (only with key_log=True / --key-log)
    DIR/ctas/ctaN/                       one CTA identity:
        cert.pem                         the certificate it uses for PKINIT now (operator-issued
                                         when provisioned, else the manufacturer's)
        key.pem                          its one RSA key for life (0600)
        issuer.pem                       the CA certificate that signed cert.pem
        device.pem                       the manufacturer (factory) certificate
    DIR/echo/                            the echo test service (ctad/echo.py): an identity like a
                                         provisioned CTA's (operator certificate with the echo
                                         number, customer active) and DIR/echo/echo.toml, a ctad
                                         config with [echo] enabled and no [line]; on ECHO_SC

Manifest: {"realm", "krb5_conf", "kdc": {"config", "tcp", "udp", "cert", "key", "anchor"},
"scs": [{"name", "principal", "keytab", "config", "km", "esp", "key_log"}], "ctas": [{"name",
"principal", "provisioned", "identity_dir", "cert", "key", "issuer_anchor", "config", "sc",
"numbers", "line", "key_log"}], "echo": {"name", "principal", "identity_dir", "cert", "key", "config",
"sc", "number", "numbers", "key_log"}, "li": {"private_key", "public_key", "stores": {SC name: directory}}};
"tcp"/"udp"/"km"/"esp" are "127.0.0.1:PORT"; "key_log" is a path or
null; "sc" names the SC a CTA uses; provisioned CTAs come first (cta1, cta2), then the
factory-fresh one (cta3).

Numbering (scd `[calls]`): each SC owns the numbers of the CTAs it serves (`ctas[].sc`) and
routes the other SC's numbers to it over the SC-to-SC link (`[peering]`, the SC whose principal
sorts first initiates). Both SCs alias the CSR code 611 to CSR_LINE (cta1's number, so a
factory-fresh CTA reaches a real phone in the demo) and the emergency code 911 to
EMERGENCY_LINE, a number sc2 owns and no CTA registers (so 911 from a CTA on sc1 crosses to sc2,
which answers 480 until a PSAP line registers it). The echo number (`echo_number`, default
ECHO_NUMBER; `kerbtel init --echo-number`) is owned by ECHO_SC like a CTA's, so a call to it from
any CTA reaches the echo server (started with `ctad -c DIR/echo/echo.toml`).

The scd/ctad configs are tuned for a loopback demo (quick keep-alives and backoff, so a
restarted scd has every CTA registered again within seconds; docs/operations.md).

The provisioned CTAs each have an operator certificate with one phone number (+1555123000N)
whose customer record is active, and a registered principal cta/<mac>@REALM (pre-authentication
required, PKINIT allowed, random keys nobody knows). The factory-fresh CTA is in no database:
the KDC accepts it on its manufacturer certificate (policy allow_unregistered_ctas) and gives it
a restricted ticket.

The port is chosen free by binding port 0 (TCP, then the same number for UDP) and releasing it;
another process could take it before kdcd starts, which is fine for a throw-away deployment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from common.keytab import Keytab, KeytabEntry
from common.ports import free_port, free_udp_ports

__all__ = ["CtaIdentity", "Deployment", "DeploymentError", "ScIdentity", "create_deployment", "free_port"]

MANIFEST = "deployment.json"
# Everything create_deployment writes at the top of DIR (what --force replaces).
_OWNED = ("deployment.json", "krb5.conf", "kdcd.toml", "kdcd.db", "kdcd.db.mkey", "kdcd.db-wal", "kdcd.db-shm",
          "pki", "kdc", "scs", "ctas", "li", "echo")
PHONE_NUMBERS = ("+15551230001", "+15551230002")
CSR_NUMBERS = ("611",)
EMERGENCY_NUMBERS = ("911",)
CSR_LINE = PHONE_NUMBERS[0]  # where both SCs send the CSR code (scd [calls] aliases)
EMERGENCY_LINE = "+15552340911"  # where both SCs send the emergency code; owned by EMERGENCY_SC
EMERGENCY_SC = "sc2"
ECHO_NUMBER = "+15550009999"  # the echo test service's default number (ctad/echo.py)
ECHO_SC = "sc1"  # the SC the echo server uses


class DeploymentError(Exception):
    """An operator mistake (non-empty directory, bad realm, no free port)."""


@dataclass(frozen=True)
class ScIdentity:
    name: str
    principal: str
    keytab: Path
    config: Path | None = None
    km_port: int = 0
    esp_port: int = 0
    key_log: Path | None = None


@dataclass(frozen=True)
class CtaIdentity:
    name: str
    principal: str
    provisioned: bool
    identity_dir: Path
    cert: Path
    key: Path
    issuer_anchor: Path
    mac: str
    phone_number: str | None = None
    config: Path | None = None
    sc: str = "sc1"
    key_log: Path | None = None
    line_port: int = 0  # ctad's line side (softphones), UDP on the deployment host


@dataclass(frozen=True)
class Deployment:
    directory: Path
    realm: str
    krb5_conf: Path
    kdc_config: Path
    host: str
    port: int
    kdc_cert: Path
    kdc_key: Path
    kdc_anchor: Path
    manufacturer_anchor: Path
    database: Path
    master_key: Path
    scs: list[ScIdentity] = field(default_factory=list)
    ctas: list[CtaIdentity] = field(default_factory=list)
    li_private_key: Path | None = None
    li_public_key: Path | None = None
    echo: CtaIdentity | None = None  # the echo test service (a CTA-like identity in echo mode)

    @property
    def kdc_address(self) -> str:
        return f"{self.host}:{self.port}"

    def manifest(self) -> dict:
        return {
            "realm": self.realm,
            "krb5_conf": str(self.krb5_conf),
            "kdc": {
                "config": str(self.kdc_config),
                "tcp": self.kdc_address,
                "udp": self.kdc_address,
                "cert": str(self.kdc_cert),
                "key": str(self.kdc_key),
                "anchor": str(self.kdc_anchor),
            },
            "scs": [
                {
                    "name": s.name,
                    "principal": s.principal,
                    "keytab": str(s.keytab),
                    "config": str(s.config) if s.config else None,
                    "km": f"{self.host}:{s.km_port}",
                    "esp": f"{self.host}:{s.esp_port}",
                    "key_log": str(s.key_log) if s.key_log else None,
                }
                for s in self.scs
            ],
            "ctas": [
                {
                    "name": c.name,
                    "principal": c.principal,
                    "provisioned": c.provisioned,
                    "identity_dir": str(c.identity_dir),
                    "cert": str(c.cert),
                    "key": str(c.key),
                    "issuer_anchor": str(c.issuer_anchor),
                    "config": str(c.config) if c.config else None,
                    "sc": c.sc,
                    "numbers": [c.phone_number] if c.phone_number else [],
                    "line": f"{self.host}:{c.line_port}" if c.line_port else None,
                    "key_log": str(c.key_log) if c.key_log else None,
                }
                for c in sorted(self.ctas, key=lambda c: not c.provisioned)
            ],
            "echo": None if self.echo is None else {
                "name": self.echo.name,
                "principal": self.echo.principal,
                "identity_dir": str(self.echo.identity_dir),
                "cert": str(self.echo.cert),
                "key": str(self.echo.key),
                "config": str(self.echo.config),
                "sc": self.echo.sc,
                "number": self.echo.phone_number,
                "numbers": [self.echo.phone_number],
                "key_log": str(self.echo.key_log) if self.echo.key_log else None,
            },
            "li": {
                "private_key": str(self.li_private_key) if self.li_private_key else None,
                "public_key": str(self.li_public_key) if self.li_public_key else None,
                "stores": {s.name: str(s.config.parent / "li") for s in self.scs if s.config},
            },
        }


def _check_realm(realm: str) -> str:
    if not realm or not realm.isprintable() or any(c in realm for c in "/@\\ \"'[]{}=#"):
        raise DeploymentError(f"invalid realm {realm!r}")
    if realm != realm.upper():
        raise DeploymentError(f"realm names are upper case by convention; use {realm.upper()!r}")
    return realm


def _prepare(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise DeploymentError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not force:
            raise DeploymentError(f"{directory} is not empty; pass --force to replace a deployment there")
        for name in _OWNED:
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these values


def _toml_list(values) -> str:
    return "[" + ", ".join(_toml_str(str(v)) for v in values) + "]"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    from common.fileio import atomic_write

    atomic_write(path, text.encode(), mode)


def _random_mac() -> bytes:
    # Locally administered, unicast: never a real vendor's address.
    return bytes([0x02]) + secrets.token_bytes(5)


def create_deployment(
    directory: str | os.PathLike[str],
    *,
    realm: str = "EXAMPLE.TEST",
    force: bool = False,
    host: str = "127.0.0.1",
    port: int | None = None,
    now: dt.datetime | None = None,
    key_bits: int = 2048,
    key_log: bool = False,
    cta_scs: dict[str, str] | None = None,
    echo_number: str = ECHO_NUMBER,
) -> Deployment:
    """Write a complete deployment into `directory` (see the module docstring) and return it.

    `cta_scs` places CTAs on signaling controllers by name ({"cta2": "sc2"}); the rest use sc1.
    Every SC's calls routing and every CTA's config follow from it. `echo_number` is the echo
    test service's number (on ECHO_SC)."""
    cta_scs = dict(cta_scs or {})
    echo_number = _check_echo_number(echo_number)
    unknown = {sc for sc in cta_scs.values() if sc not in ("sc1", "sc2")} | {c for c in cta_scs if c not in ("cta1", "cta2", "cta3")}
    if unknown:
        raise DeploymentError(f"cta_scs names unknown CTAs or SCs: {', '.join(sorted(unknown))}")
    from common import pki
    from common.pki import Role
    from kdcd.db import PrincipalAttributes, SQLiteDatabase, generate_master_key, save_master_key

    realm = _check_realm(realm)
    root = Path(directory).absolute()
    _prepare(root, force)
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    port = free_port(host) if port is None else port
    lower = realm.lower()

    # --- PKI -------------------------------------------------------------------------------
    manufacturer = pki.create_ca(Role.MANUFACTURER, f"{realm} test manufacturer CA", bits=key_bits, now=now)
    operator = pki.create_ca(Role.OPERATOR, f"{realm} operator CA", bits=key_bits, now=now)
    manufacturer_dir, operator_dir = root / "pki" / "manufacturer-ca", root / "pki" / "operator-ca"
    pki.save_ca(manufacturer, manufacturer_dir)
    pki.save_ca(operator, operator_dir)
    manufacturer_anchor = manufacturer_dir / pki.CA_CERT_FILE
    operator_anchor = operator_dir / pki.CA_CERT_FILE

    kdc_dir = root / "kdc"
    kdc_dir.mkdir(mode=0o700)
    kdc_key = pki.generate_key("rsa", key_bits)
    kdc_cert = pki.issue_kdc_certificate(operator, kdc_key.public_key(), realm, hostname=f"kdc.{lower}", now=now)
    pki.save_private_key(kdc_dir / pki.KEY_FILE, kdc_key)
    pki.save_certificates(kdc_dir / pki.CERT_FILE, kdc_cert)
    pki.save_certificates(kdc_dir / pki.ISSUER_FILE, operator.certificate)

    # --- database --------------------------------------------------------------------------
    database = root / "kdcd.db"
    master_key_path = root / "kdcd.db.mkey"
    master = generate_master_key()
    save_master_key(master_key_path, master, realm)
    db = SQLiteDatabase.create(database, realm, master_key=master, now=now)
    deployment = Deployment(
        directory=root,
        realm=realm,
        krb5_conf=root / "krb5.conf",
        kdc_config=root / "kdcd.toml",
        host=host,
        port=port,
        kdc_cert=kdc_dir / pki.CERT_FILE,
        kdc_key=kdc_dir / pki.KEY_FILE,
        kdc_anchor=operator_anchor,
        manufacturer_anchor=manufacturer_anchor,
        database=database,
        master_key=master_key_path,
    )
    with db:
        for index in (1, 2):
            name = f"sc{index}"
            principal = pki.service_principal("sc", f"{name}.{lower}", realm)
            entry = db.add_principal(principal, now=now, attributes=PrincipalAttributes(is_service=True))
            sc_dir = root / "scs" / name
            sc_dir.mkdir(mode=0o700, parents=True)
            keytab_path = sc_dir / "sc.keytab"
            stamp = int(now.timestamp()) & 0xFFFFFFFF
            Keytab([KeytabEntry(entry.principal, k.kvno, k.key, stamp) for k in entry.current_keys]).save(keytab_path)
            km_port, esp_port = free_udp_ports(2, host, exclude=(port,))
            deployment.scs.append(ScIdentity(
                name, str(principal), keytab_path, config=sc_dir / "scd.toml", km_port=km_port,
                esp_port=esp_port, key_log=sc_dir / "keys.jsonl" if key_log else None))

        taken = (port, *(p for s in deployment.scs for p in (s.km_port, s.esp_port)))
        line_ports = free_udp_ports(3, host, exclude=taken)  # ctad [line] listen, one per CTA
        for index, provisioned in ((1, True), (2, True), (3, False)):
            name = f"cta{index}"
            mac = _random_mac()
            cta_dir = root / "ctas" / name
            cta_dir.mkdir(mode=0o700, parents=True)
            key = pki.generate_key("rsa", key_bits)
            device_cert = pki.issue_device_certificate(manufacturer, key.public_key(), mac, realm, now=now)
            pki.save_private_key(cta_dir / pki.KEY_FILE, key)
            pki.save_certificates(cta_dir / "device.pem", device_cert)
            principal = pki.cta_principal(mac, realm)
            number = None
            if provisioned:
                number = PHONE_NUMBERS[index - 1]
                cert = pki.issue_operator_certificate(operator, device_cert, realm, phone_numbers=[number], now=now)
                issuer, anchor = operator.certificate, operator_anchor
                db.add_customer(now=now, phone_ids=[pki.phone_id(number)], label=f"test customer {index}")
                db.add_principal(
                    principal, now=now, attributes=PrincipalAttributes(requires_preauth=True, allow_pkinit=True)
                )
            else:
                cert, issuer, anchor = device_cert, manufacturer.certificate, manufacturer_anchor
            pki.save_certificates(cta_dir / pki.CERT_FILE, cert)
            pki.save_certificates(cta_dir / pki.ISSUER_FILE, issuer)
            deployment.ctas.append(
                CtaIdentity(
                    name=name,
                    principal=str(principal),
                    provisioned=provisioned,
                    identity_dir=cta_dir,
                    cert=cta_dir / pki.CERT_FILE,
                    key=cta_dir / pki.KEY_FILE,
                    issuer_anchor=anchor,
                    mac=pki.format_mac(mac),
                    phone_number=number,
                    config=cta_dir / "ctad.toml",
                    sc=cta_scs.get(name, "sc1"),
                    key_log=cta_dir / "keys.jsonl" if key_log else None,
                    line_port=line_ports[index - 1],
                )
            )

        echo = _create_echo(db, root, realm, operator, operator_anchor, manufacturer, echo_number,
                            key_bits=key_bits, key_log=key_log, now=now)

    from common.li import generate_key_pair

    li_private, li_public = generate_key_pair(root / "li")
    deployment = dataclasses.replace(deployment, li_private_key=li_private, li_public_key=li_public, echo=echo)
    _write(deployment.kdc_config, _kdcd_toml(deployment))
    for sc in deployment.scs:
        _write(sc.config, _scd_toml(deployment, sc))
    for cta in deployment.ctas:
        _write(cta.config, _ctad_toml(deployment, cta))
    _write(deployment.echo.config, _ctad_toml(deployment, deployment.echo, echo=True))
    _write(deployment.krb5_conf, _krb5_conf(deployment))
    _write(root / MANIFEST, json.dumps(deployment.manifest(), indent=2) + "\n")
    return deployment


def _check_echo_number(number: str) -> str:
    from common.pki import normalise_phone_number

    try:
        number = normalise_phone_number(number)
    except ValueError as exc:
        raise DeploymentError(f"echo number: {exc}") from None
    if number in (*PHONE_NUMBERS, EMERGENCY_LINE):
        raise DeploymentError(f"echo number {number} is already a CTA's or the emergency line's")
    return number


def _create_echo(db, root: Path, realm: str, operator, operator_anchor: Path, manufacturer, number: str, *,
                 key_bits: int, key_log: bool, now: dt.datetime) -> CtaIdentity:
    """The echo test service's identity: a device key and certificate like a CTA's, an operator
    certificate with the echo number, an active customer and a PKINIT principal, so that the KDC
    honours it and the SC lets it REGISTER the number (ctad/echo.py)."""
    from common import pki
    from kdcd.db import PrincipalAttributes

    mac = _random_mac()
    echo_dir = root / "echo"
    echo_dir.mkdir(mode=0o700)
    key = pki.generate_key("rsa", key_bits)
    device_cert = pki.issue_device_certificate(manufacturer, key.public_key(), mac, realm, now=now)
    cert = pki.issue_operator_certificate(operator, device_cert, realm, phone_numbers=[number], now=now)
    pki.save_private_key(echo_dir / pki.KEY_FILE, key)
    pki.save_certificates(echo_dir / "device.pem", device_cert)
    pki.save_certificates(echo_dir / pki.CERT_FILE, cert)
    pki.save_certificates(echo_dir / pki.ISSUER_FILE, operator.certificate)
    principal = pki.cta_principal(mac, realm)
    db.add_customer(now=now, phone_ids=[pki.phone_id(number)], label="echo test service")
    db.add_principal(principal, now=now, attributes=PrincipalAttributes(requires_preauth=True, allow_pkinit=True))
    return CtaIdentity(name="echo", principal=str(principal), provisioned=True, identity_dir=echo_dir,
                       cert=echo_dir / pki.CERT_FILE, key=echo_dir / pki.KEY_FILE, issuer_anchor=operator_anchor,
                       mac=pki.format_mac(mac), phone_number=number, config=echo_dir / "echo.toml", sc=ECHO_SC,
                       key_log=echo_dir / "keys.jsonl" if key_log else None)


def _rel(deployment: Deployment, path: Path) -> str:
    return str(path.relative_to(deployment.directory))


def _kdcd_toml(d: Deployment) -> str:
    return f"""\
# kdcd configuration written by `kerbtel init` for a throw-away loopback deployment.
# Relative paths are relative to this file's directory.

workers = 1

[listen]
tcp = [{_toml_str(d.kdc_address)}]
udp = [{_toml_str(d.kdc_address)}]

[database]
path = {_toml_str(_rel(d, d.database))}
master_key = {_toml_str(_rel(d, d.master_key))}

[logging]
level = "info"
format = "auto"

[kdc]
realm = {_toml_str(d.realm)}
kdc_certificate = {_toml_str(_rel(d, d.kdc_cert))}
kdc_private_key = {_toml_str(_rel(d, d.kdc_key))}
manufacturer_anchors = {_toml_list([_rel(d, d.manufacturer_anchor)])}
operator_anchors = {_toml_list([_rel(d, d.kdc_anchor)])}
csr_numbers = {_toml_list(CSR_NUMBERS)}
emergency_numbers = {_toml_list(EMERGENCY_NUMBERS)}
"""


def _scd_toml(d: Deployment, sc: ScIdentity) -> str:
    """scd's config for a loopback demo; paths relative to DIR/scs/scN/."""
    key_log = f"path = {_toml_str(sc.key_log.name)}" if sc.key_log else "# path = \"keys.jsonl\"   # kerbtel init --key-log"
    domain = sc.principal.split("/", 1)[1].split("@", 1)[0]
    return f"""\
# scd configuration written by `kerbtel init` for a throw-away loopback deployment.
# Relative paths are relative to this file's directory. conf/scd.toml documents every key.

[listen]
km = {_toml_str(f"{d.host}:{sc.km_port}")}
esp = {_toml_str(f"{d.host}:{sc.esp_port}")}

[sc]
principal = {_toml_str(sc.principal)}
keytab = {_toml_str(sc.keytab.name)}
suites = ["aes-gcm-16", "aes-cbc-sha256", "3des-sha1"]
sa_lifetime = 3600
grace_period = 300

[signaling]
domain = {_toml_str(domain)}

{_scd_calls_toml(d, sc)}
[key_log]
{key_log}

[logging]
level = "info"
format = "auto"
"""


def _sc_numbers(d: Deployment, sc: ScIdentity) -> list[str]:
    """What `sc` owns: the numbers of the CTAs it serves, and the emergency line on EMERGENCY_SC."""
    numbers = [c.phone_number for c in d.ctas if c.sc == sc.name and c.phone_number]
    if d.echo is not None and d.echo.sc == sc.name:
        numbers.append(d.echo.phone_number)
    if sc.name == EMERGENCY_SC:
        numbers.append(EMERGENCY_LINE)
    return numbers


def _toml_table(mapping: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in mapping.items()) + " }" if mapping else "{}"


def _scd_calls_toml(d: Deployment, sc: ScIdentity) -> str:
    """scd's [calls], [peering] and [li] tables (docs/operations.md, "Calls and peering in scd")."""
    others = [o for o in d.scs if o.name != sc.name]
    routes = {n: o.name for o in others for n in _sc_numbers(d, o)}
    aliases = {CSR_NUMBERS[0]: CSR_LINE, EMERGENCY_NUMBERS[0]: EMERGENCY_LINE}
    peers = "".join(f"""
[[peering.peers]]
name = {_toml_str(o.name)}
principal = {_toml_str(o.principal)}
km = {_toml_str(f"{d.host}:{o.km_port}")}
esp = {_toml_str(f"{d.host}:{o.esp_port}")}
""" for o in others)
    li = ""
    if d.li_public_key is not None:
        li = f"""
[li]
store = "li"
public_key = {_toml_str(os.path.relpath(d.li_public_key, sc.config.parent))}
"""
    return f"""[calls]
owned = {_toml_list(_sc_numbers(d, sc))}
routes = {_toml_table(routes)}
aliases = {_toml_table(aliases)}
esp_suite = "AES-GCM-16"
media_profile = "AES_CM_128_HMAC_SHA1_80"

[peering]
kdc = {_toml_str(d.kdc_address)}
{peers}{li}"""


def _ctad_toml(d: Deployment, cta: CtaIdentity, *, echo: bool = False) -> str:
    """ctad's config for a loopback demo: quick keep-alives and backoff (a restarted scd has
    every CTA registered again within keepalive_interval + a few seconds). `echo`: the echo
    test service's config, [echo] instead of [line]."""
    sc = next(s for s in d.scs if s.name == cta.sc)
    numbers = _toml_list([cta.phone_number] if cta.phone_number else [])
    key_log = f"path = {_toml_str(cta.key_log.name)}" if cta.key_log else "# path = \"keys.jsonl\"   # kerbtel init --key-log"
    return f"""\
# ctad configuration written by `kerbtel init` for a throw-away loopback deployment.
# Relative paths are relative to this file's directory. conf/ctad.toml documents every key.

[cta]
identity = "."
ccache = "ccache"
numbers = {numbers}
local = {_toml_str(f"{d.host}:0")}

[kdc]
address = {_toml_str(d.kdc_address)}
anchors = {_toml_list([os.path.relpath(d.kdc_anchor, cta.identity_dir)])}
ticket_lifetime = 86400
renew_before = 300

[sc]
principal = {_toml_str(sc.principal)}
km = {_toml_str(f"{d.host}:{sc.km_port}")}
esp = {_toml_str(f"{d.host}:{sc.esp_port}")}
suites = ["aes-gcm-16", "aes-cbc-sha256", "3des-sha1"]
retransmit_initial = 0.5
retransmit_max = 2.0

[signaling]
keepalive_interval = 3.0
keepalive_timeout = 2.0
register_expires = 3600

[backoff]
initial = 0.5
max = 3.0
jitter = 0.3

{_ECHO_TOML if echo else _line_toml(d, cta)}
[media]
host = {_toml_str(d.host)}

[key_log]
{key_log}

[logging]
level = "info"
format = "auto"
"""


def _line_toml(d: Deployment, cta: CtaIdentity) -> str:
    return f"""[line]
listen = {_toml_str(f"{d.host}:{cta.line_port}")}
# phone = "127.0.0.1:5070"            # a softphone to ring when none registered the number
"""


_ECHO_TOML = """[echo]                                 # the echo test service (ctad/echo.py); no [line]
enabled = true
max_duration = 300                     # seconds after the answer, then the echo hangs up
"""


def _krb5_conf(d: Deployment) -> str:
    lower = d.realm.lower()
    return f"""\
# MIT krb5 client configuration for the kerbtel test realm {d.realm} (written by `kerbtel init`).
# Use with KRB5_CONFIG={d.krb5_conf}
[libdefaults]
    default_realm = {d.realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    pkinit_anchors = FILE:{d.kdc_anchor}

[realms]
    {d.realm} = {{
        kdc = {d.kdc_address}
        pkinit_anchors = FILE:{d.kdc_anchor}
    }}

[domain_realm]
    .{lower} = {d.realm}
    {lower} = {d.realm}
"""


def load_manifest(directory: str | os.PathLike[str]) -> dict:
    """DIR/deployment.json as a dict."""
    return json.loads((Path(directory) / MANIFEST).read_text())
