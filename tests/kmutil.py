"""Test helpers for the pktc key-management engines: tickets made directly with a service key
(no KDC), an in-memory CTA <-> SC pair with a clock the test moves."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from common.asn1.krb5 import EncryptionKey, EncTicketPart, Ticket, principal_to_asn1
from common.crypto import Key, KeyUsage, encrypt, get_enctype, random_to_key
from common.keytab import Keytab, KeytabEntry
from common.principal import Principal

REALM = "EXAMPLE.TEST"
SERVICE = Principal(("sc", "sc1.example.test"), REALM, 2)
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
AES256 = 18


def seeded_rng(seed: int):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def service_keytab(kvnos=(1, 2), enctype: int = AES256, seed: int = 7) -> Keytab:
    rng = seeded_rng(seed)
    return Keytab([KeytabEntry(SERVICE, kvno, random_to_key(enctype, rng(32))) for kvno in kvnos])


def make_ticket(
    keytab: Keytab,
    client: Principal,
    *,
    kvno: int = 2,
    enctype: int = AES256,
    session_enctype: int = AES256,
    authtime: datetime = T0 - timedelta(hours=1),
    endtime: datetime = T0 + timedelta(hours=10),
    authorization_data=None,
    service_key: Key | None = None,
    seed: int = 1,
) -> tuple[bytes, Key]:
    """(Ticket DER, session key) for `client` to SERVICE, sealed with the keytab's key."""
    session_key = random_to_key(session_enctype, seeded_rng(seed)(get_enctype(session_enctype).seed_bytes))
    cname, crealm = principal_to_asn1(client)
    value = {
        "flags": 0x40810000,  # forwardable, renewable, pre-authent
        "key": EncryptionKey.from_key(session_key),
        "crealm": crealm,
        "cname": cname,
        "transited": {"tr-type": 1, "contents": b""},
        "authtime": authtime,
        "endtime": endtime,
    }
    if authorization_data is not None:
        value["authorization-data"] = authorization_data
    key = service_key or keytab.key_for(SERVICE, enctype, kvno)
    sname, realm = principal_to_asn1(SERVICE)
    ticket = Ticket({
        "realm": realm,
        "sname": sname,
        "enc-part": {"etype": key.enctype, "kvno": kvno, "cipher": encrypt(key, KeyUsage.TICKET, EncTicketPart(value).dump())},
    })
    return ticket.dump(), session_key


@dataclass
class Clock:
    now: float = 1000.0
    base: datetime = T0

    @property
    def wallclock(self) -> datetime:
        return self.base + timedelta(seconds=self.now - 1000.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Wire:
    """Datagrams in flight between one CTA engine and one SC engine."""

    to_sc: list = field(default_factory=list)
    to_cta: list = field(default_factory=list)
