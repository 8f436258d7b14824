"""Crypto cross-check against MIT krb5kdc: tickets MIT issued decrypt with our crypto.

For each enctype 16 (des3-cbc-sha1), 17, 18, 19, 20 a service principal has a key of that one
enctype. MIT's KDC issues its ticket (TGS path: kinit + kvno; AS path: kinit -S); we read MIT's
ccache with our reader, the service key from MIT's keytab (kadmin.local ktadd -norandkey) with our
reader, decrypt the ticket's enc-part with our RFC 3961/3962/8009 code, parse the EncTicketPart
with our codec, and compare it with what MIT put in the ccache (session key, client, times, flags).
"""

from __future__ import annotations

import pytest

from common.asn1 import decode
from common.asn1.krb5 import EncTicketPart, Ticket
from common.ccache import Ccache, Credential
from common.crypto import IntegrityError, Key, KeyUsage, decrypt
from common.keytab import Keytab
from common.principal import Principal
from conftest import require_peer
from peers.mit import ENCTYPE_NAMES, MIT_PROGRAMS, realm_fixture

pytestmark = pytest.mark.interop

REALM = "EXAMPLE.TEST"
PASSWORD = "kerbtel-cross-check"
ALICE = Principal(("alice",), REALM)
ENCTYPES = (16, 17, 18, 19, 20)


def service(enctype: int) -> Principal:
    return Principal(("svc", f"e{enctype}.example.test"), REALM)


def _setup(realm, tmp_dir):
    realm.add_principal("alice", password=PASSWORD, enctypes=["aes256-cts-hmac-sha1-96"])
    keytab = tmp_dir / "services.keytab"
    for enctype in ENCTYPES:
        name = service(enctype).name
        realm.add_principal(name, enctypes=[ENCTYPE_NAMES[enctype]])
        realm.ktadd(keytab, name, norandkey=True)
    realm.ktadd(keytab, f"krbtgt/{REALM}", norandkey=True)
    return keytab


mit = realm_fixture(_setup, name="mit", realm=REALM)


@pytest.fixture(scope="module")
def keytab(mit) -> Keytab:
    return Keytab.load(mit.extra)


@pytest.fixture(scope="module")
def tgs_cache(mit, tmp_path_factory) -> Ccache:
    """alice's TGT plus one service ticket per enctype, all obtained by MIT's kvno."""
    cc = tmp_path_factory.mktemp("cc") / "cc"
    mit.kinit("alice", password=PASSWORD, ccache=cc)
    mit.kvno(*(str(service(e)) for e in ENCTYPES), ccache=cc)
    return Ccache.load(cc)


def decrypt_ticket(cred: Credential, keytab: Keytab, expected_enctype: int) -> EncTicketPart:
    ticket = decode(cred.ticket)
    assert isinstance(ticket, Ticket)
    enc = ticket["enc-part"]
    assert enc["etype"].native == expected_enctype
    key = keytab.key_for(cred.server, expected_enctype, kvno=enc["kvno"].native)
    plain = decrypt(key, KeyUsage.TICKET, enc["cipher"].native)
    # des3-cbc-sha1 plaintext keeps its zero padding to the 8-byte block; the others have none.
    part = decode(plain, padded=True)
    assert isinstance(part, EncTicketPart)
    encoded = part.dump(force=True)  # MIT's encoding is DER our codec reproduces
    assert plain.startswith(encoded)
    assert len(plain) - len(encoded) < (8 if expected_enctype == 16 else 1)
    return part


def check_against_ccache(part: EncTicketPart, cred: Credential) -> None:
    assert part["key"].to_key() == cred.key  # the session key MIT put in the ccache
    assert part["crealm"].native == REALM
    assert tuple(part["cname"]["name-string"].native) == ALICE.components
    assert int(part["flags"].native) == cred.ticket_flags
    assert int(part["authtime"].native.timestamp()) == cred.authtime
    assert int(part["endtime"].native.timestamp()) == cred.endtime
    start = part["starttime"].native
    assert int(start.timestamp()) == cred.starttime if start is not None else cred.starttime == cred.authtime


@pytest.mark.parametrize("enctype", ENCTYPES, ids=[ENCTYPE_NAMES[e] for e in ENCTYPES])
def test_service_ticket_from_tgs_decrypts_with_our_crypto(mit, keytab, tgs_cache, enctype):
    require_peer(*MIT_PROGRAMS)
    cred = tgs_cache.find(service(enctype))
    part = decrypt_ticket(cred, keytab, enctype)
    check_against_ccache(part, cred)


@pytest.mark.parametrize("enctype", ENCTYPES, ids=[ENCTYPE_NAMES[e] for e in ENCTYPES])
def test_service_ticket_from_as_exchange_decrypts_with_our_crypto(mit, keytab, tmp_path, enctype):
    require_peer(*MIT_PROGRAMS)
    cc = tmp_path / "cc"
    mit.kinit("alice", password=PASSWORD, service=str(service(enctype)), ccache=cc)
    (cred,) = Ccache.load(cc).tickets()
    assert cred.server.same_name(service(enctype))
    part = decrypt_ticket(cred, keytab, enctype)
    check_against_ccache(part, cred)


def test_tgt_decrypts_with_krbtgt_key(mit, keytab, tgs_cache):
    require_peer(*MIT_PROGRAMS)
    tgt = tgs_cache.find(Principal.krbtgt(REALM))
    enctype = decode(tgt.ticket)["enc-part"]["etype"].native
    part = decrypt_ticket(tgt, keytab, enctype)
    check_against_ccache(part, tgt)


def test_wrong_key_fails_integrity(mit, keytab, tgs_cache):
    require_peer(*MIT_PROGRAMS)
    cred = tgs_cache.find(service(18))
    cipher = decode(cred.ticket)["enc-part"]["cipher"].native
    with pytest.raises(IntegrityError):
        decrypt(Key(18, bytes(32)), KeyUsage.TICKET, cipher)
    with pytest.raises(IntegrityError):  # right key, wrong key usage
        decrypt(keytab.key_for(cred.server, 18), KeyUsage.AS_REP_ENC_PART, cipher)
