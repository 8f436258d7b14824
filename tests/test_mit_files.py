"""Keytabs and credential caches exchanged with MIT krb5 1.20 (klist, kinit, kvno, kadmin.local)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from common.asn1 import decode
from common.asn1.krb5 import Ticket
from common.ccache import Ccache, Credential, TicketFlags
from common.crypto import generate_key, string_to_key
from common.keytab import Keytab, KeytabEntry
from common.principal import NameType, Principal
from conftest import require_peer
from peers.mit import ENCTYPE_NAMES, MIT_PROGRAMS, realm_fixture

pytestmark = pytest.mark.interop

REALM = "EXAMPLE.TEST"
PASSWORD = "correct horse battery staple"
ALICE = Principal(("alice",), REALM)
BOB = Principal(("bob",), REALM)
SC = Principal(("sc", "sc1.example.test"), REALM)
ENCTYPES = (16, 17, 18, 19, 20)
UTC = {"TZ": "UTC"}


def _setup(realm, tmp_dir):
    realm.add_principal("alice", password=PASSWORD, enctypes=[ENCTYPE_NAMES[e] for e in ENCTYPES])
    realm.add_principal("bob", password=PASSWORD, enctypes=["aes256-cts-hmac-sha1-96"])
    realm.add_principal("sc/sc1.example.test")


mit = realm_fixture(_setup, name="mit", realm=REALM)


def mit_name(enctype: int) -> str:
    # MIT 1.20 labels des3 as deprecated in its listings.
    return ("DEPRECATED:" if enctype == 16 else "") + ENCTYPE_NAMES[enctype]


def test_mit_klist_lists_our_keytab(mit, tmp_path):
    require_peer(*MIT_PROGRAMS)
    entries = [KeytabEntry(SC, 5, generate_key(e), 1_700_000_000) for e in ENCTYPES]
    entries.append(KeytabEntry(Principal(("cta", "0011223344aa"), REALM), 300, generate_key(18), 1_700_000_000))
    path = tmp_path / "ours.keytab"
    Keytab(entries).save(path)
    out = mit.klist("-k", "-e", "-t", "-K", path, extra_env=UTC).stdout
    rows = re.findall(r"^\s*(\d+) (\S+ \S+) (\S+) \((\S+)\)\s+\(0x([0-9a-f]+)\)\s*$", out, re.M)
    assert rows == [
        (str(e.kvno), "11/14/23 22:13:20", str(e.principal), mit_name(e.key.enctype), e.key.contents.hex())
        for e in entries
    ], out


def test_mit_kinit_accepts_keys_from_our_keytab(mit, tmp_path):
    """Our string-to-key output, written in our keytab format, authenticates to MIT's KDC."""
    require_peer(*MIT_PROGRAMS)
    salt = REALM + "alice"
    for enctype in ENCTYPES:
        # One enctype per keytab: MIT's kinit -k asks only for the enctypes the keytab holds, so
        # the AS-REP is encrypted in exactly this key.
        path = tmp_path / f"alice{enctype}.keytab"
        Keytab([KeytabEntry(ALICE, 1, string_to_key(enctype, PASSWORD, salt))]).save(path)
        cc = tmp_path / f"cc{enctype}"
        mit.kinit("alice", keytab=path, ccache=cc)
        assert Ccache.load(cc).principal == ALICE


def test_we_read_mit_ktadd_keytab_and_keys_match_string_to_key(mit, tmp_path):
    require_peer(*MIT_PROGRAMS)
    path = mit.ktadd(tmp_path / "mit.keytab", "alice", norandkey=True)
    keytab = Keytab.load(path)
    assert bytes(keytab) == path.read_bytes()  # we write what MIT writes, byte for byte
    assert sorted(e.key.enctype for e in keytab) == sorted(ENCTYPES)
    for entry in keytab:
        assert entry.principal == ALICE and entry.principal.name_type == NameType.PRINCIPAL
        assert entry.kvno == 1
        assert entry.key == string_to_key(entry.key.enctype, PASSWORD, REALM + "alice"), entry.key.enctype


def test_we_read_mit_keytab_with_several_kvnos(mit, tmp_path):
    require_peer(*MIT_PROGRAMS)
    path = tmp_path / "sc.keytab"
    for _ in range(3):  # every ktadd without -norandkey makes a new kvno
        mit.ktadd(path, "sc/sc1.example.test", enctypes=["aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha256-128"])
    keytab = Keytab.load(path)
    assert [(e.kvno, e.key.enctype) for e in keytab] == [(2, 18), (2, 19), (3, 18), (3, 19), (4, 18), (4, 19)]
    assert [k.enctype for k in keytab.keys_for(SC)] == [18, 19]
    assert keytab.keys_for(SC) == [e.key for e in keytab.entries[4:]]
    listed = mit.klist("-k", "-K", path).stdout
    for entry in keytab:
        assert f"(0x{entry.key.contents.hex()})" in listed


def test_we_read_the_ccache_mit_kinit_wrote(mit, tmp_path):
    require_peer(*MIT_PROGRAMS)
    cc = tmp_path / "cc"
    mit.kinit("alice", password=PASSWORD, ccache=cc, extra_args=["-f", "-r", "2d", "-l", "5h"])
    mit.kvno("sc/sc1.example.test", ccache=cc)
    raw = cc.read_bytes()
    cache = Ccache.parse(raw)
    assert bytes(cache) == raw
    assert cache.version == 0x0504 and cache.kdc_offset is not None
    assert cache.principal == ALICE
    assert ("fast_avail", f"krbtgt/{REALM}@{REALM}") in cache.config()
    tgt, service = cache.tickets()
    assert tgt.server == Principal.krbtgt(REALM) and tgt.client == ALICE
    assert service.server.same_name(SC)
    assert TicketFlags.INITIAL in tgt.flags and TicketFlags.FORWARDABLE in tgt.flags
    assert TicketFlags.RENEWABLE in tgt.flags and TicketFlags.INITIAL not in service.flags
    assert tgt.endtime - tgt.starttime == 5 * 3600
    assert tgt.renew_till - tgt.starttime == 2 * 86400
    for cred in (tgt, service):
        ticket = decode(cred.ticket)
        assert isinstance(ticket, Ticket)
        assert ticket["realm"].native == REALM
        assert ticket.dump(force=True) == cred.ticket
        assert cred.key.enctype == 18 and len(cred.key.contents) == 32 and not cred.is_skey
    # The times we read are the ones klist shows.
    listed = mit.klist(ccache=cc, extra_env=UTC).stdout
    start = datetime.fromtimestamp(tgt.starttime, timezone.utc).strftime("%m/%d/%y %H:%M:%S")
    end = datetime.fromtimestamp(tgt.endtime, timezone.utc).strftime("%m/%d/%y %H:%M:%S")
    assert f"{start}  {end}  krbtgt/{REALM}@{REALM}" in listed


def test_mit_klist_displays_a_ccache_we_wrote(mit, tmp_path):
    require_peer(*MIT_PROGRAMS)
    start = int(datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone.utc).timestamp())
    flags = TicketFlags.FORWARDABLE | TicketFlags.RENEWABLE | TicketFlags.INITIAL | TicketFlags.PRE_AUTHENT
    creds = []
    for server, etype, tkt_etype in ((Principal.krbtgt(REALM), 18, 18), (SC, 20, 19)):
        ticket = Ticket(
            {
                "realm": REALM,
                "sname": {"name-type": server.name_type, "name-string": list(server.components)},
                "enc-part": {"etype": tkt_etype, "kvno": 1, "cipher": b"\x00" * 64},
            }
        ).dump()
        creds.append(
            Credential(
                ALICE,
                server,
                generate_key(etype),
                authtime=start,
                starttime=start,
                endtime=start + 36000,
                renew_till=start + 7 * 86400,
                ticket_flags=int(flags),
                ticket=ticket,
            )
        )
    cache = Ccache(ALICE, [Credential.config(ALICE, "pa_type", b"16", Principal.krbtgt(REALM)), *creds], kdc_offset=(0, 0))
    cc = tmp_path / "ours.cc"
    cache.save(cc)
    out = mit.klist("-f", "-e", ccache=cc, extra_env=UTC).stdout
    assert "Default principal: alice@EXAMPLE.TEST" in out
    assert "03/04/31 05:06:07  03/04/31 15:06:07  krbtgt/EXAMPLE.TEST@EXAMPLE.TEST" in out
    assert "03/04/31 05:06:07  03/04/31 15:06:07  sc/sc1.example.test@EXAMPLE.TEST" in out
    assert out.count("renew until 03/11/31 05:06:07, Flags: FRIA") == 2
    assert "Etype (skey, tkt): aes256-cts-hmac-sha1-96, aes256-cts-hmac-sha1-96" in out
    assert "Etype (skey, tkt): aes256-cts-hmac-sha384-192, aes128-cts-hmac-sha256-128" in out
    assert "X-CACHECONF" not in out  # MIT recognises our config entry as one


def test_mit_uses_a_tgt_from_a_ccache_we_wrote(mit, tmp_path):
    """Rebuild the cache from parsed values (no config entries) and let MIT's kvno use the TGT."""
    require_peer(*MIT_PROGRAMS)
    cc = tmp_path / "mit.cc"
    mit.kinit("bob", password=PASSWORD, ccache=cc)
    tgt = Ccache.load(cc).tickets()[0]
    ours = tmp_path / "ours.cc"
    Ccache(BOB, [tgt]).save(ours)  # no KDC-offset header field, no config entries
    mit.kvno("sc/sc1.example.test", ccache=ours)
    after = Ccache.load(ours)
    assert [c.server.name for c in after.tickets()] == [f"krbtgt/{REALM}", "sc/sc1.example.test"]
