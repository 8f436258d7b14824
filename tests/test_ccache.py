"""MIT FILE credential caches: exact layout, versions 1-4, config entries, malformed cases."""

from __future__ import annotations

import os
import stat
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.ccache import Address, AuthData, Ccache, CcacheFormatError, Credential, TicketFlags
from common.crypto.key import Key
from common.principal import NameType, Principal

ALICE = Principal(("alice",), "EXAMPLE.TEST")
TGS = Principal.krbtgt("EXAMPLE.TEST")
SESSION = Key(18, bytes(range(32)))


def d32(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def principal_bytes(name_type: int, realm: bytes, *components: bytes) -> bytes:
    return struct.pack(">II", name_type, len(components)) + d32(realm) + b"".join(d32(c) for c in components)


# A version 4 cache written by hand from the format description.
HEADER = b"\x05\x04" + b"\x00\x0c" + b"\x00\x01\x00\x08" + struct.pack(">ii", -3, 250000)
DEFAULT = principal_bytes(1, b"EXAMPLE.TEST", b"alice")
CRED = (
    DEFAULT
    + principal_bytes(2, b"EXAMPLE.TEST", b"krbtgt", b"EXAMPLE.TEST")
    + b"\x00\x12" + d32(bytes(range(32)))
    + struct.pack(">IIII", 1000, 1001, 2000, 3000)
    + b"\x00"
    + struct.pack(">I", 0x50E10000)  # forwardable renewable initial pre-authent enc-pa-rep
    + struct.pack(">I", 1) + b"\x00\x02" + d32(b"\x7f\x00\x00\x01")
    + struct.pack(">I", 1) + b"\x00\x01" + d32(b"\x30\x00")
    + d32(b"\x61\x03\x02\x01\x05")
    + d32(b"")
)
GOLDEN = HEADER + DEFAULT + CRED

GOLDEN_CRED = Credential(
    client=ALICE,
    server=TGS,
    key=SESSION,
    authtime=1000,
    starttime=1001,
    endtime=2000,
    renew_till=3000,
    is_skey=False,
    ticket_flags=0x50E10000,
    addresses=(Address(2, b"\x7f\x00\x00\x01"),),
    authdata=(AuthData(1, b"\x30\x00"),),
    ticket=b"\x61\x03\x02\x01\x05",
    second_ticket=b"",
)


def test_writes_the_documented_layout():
    cache = Ccache(ALICE, [GOLDEN_CRED], kdc_offset=(-3, 250000))
    assert bytes(cache) == GOLDEN


def test_parses_the_documented_layout():
    cache = Ccache.parse(GOLDEN)
    assert cache.version == 0x0504
    assert cache.principal == ALICE
    assert cache.kdc_offset == (-3, 250000)
    assert cache.credentials == [GOLDEN_CRED]
    flags = cache.credentials[0].flags
    assert TicketFlags.FORWARDABLE in flags and TicketFlags.INITIAL in flags and TicketFlags.PROXY not in flags


def test_header_without_offset_and_unknown_tags_preserved():
    data = b"\x05\x04" + b"\x00\x07" + b"\x00\x09\x00\x03abc" + DEFAULT
    cache = Ccache.parse(data)
    assert cache.kdc_offset is None
    assert cache.header_fields == [(9, b"abc")]
    assert cache.credentials == []
    assert bytes(cache) == data


def test_empty_header():
    data = b"\x05\x04\x00\x00" + DEFAULT
    assert bytes(Ccache.parse(data)) == data


def test_config_entries_are_kept_in_order_and_distinguished():
    conf = Credential.config(ALICE, "pa_type", b"16", principal=TGS)
    fast = Credential.config(ALICE, "fast_avail", b"yes")
    cache = Ccache(ALICE, [fast, GOLDEN_CRED, conf], kdc_offset=(0, 0))
    parsed = Ccache.parse(bytes(cache))
    assert parsed.credentials == [fast, GOLDEN_CRED, conf]
    assert [c.is_config for c in parsed] == [True, False, True]
    assert parsed.tickets() == [GOLDEN_CRED]
    assert parsed.config() == {("fast_avail", None): b"yes", ("pa_type", "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST"): b"16"}
    assert conf.server.realm == "X-CACHECONF:"
    assert conf.server.components == ("krb5_ccache_conf_data", "pa_type", "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST")
    assert parsed.find(TGS) == GOLDEN_CRED
    with pytest.raises(KeyError):
        parsed.find(Principal(("sc", "x"), "EXAMPLE.TEST"))


def test_config_entry_with_undecodable_value():
    conf = Credential.config(ALICE, "pa_config_data", b"\xff\x00not a ticket")
    assert Ccache.parse(bytes(Ccache(ALICE, [conf]))).credentials == [conf]


def test_version_3_repeats_the_enctype_and_has_no_header():
    cache = Ccache(ALICE, [GOLDEN_CRED], version=0x0503)
    data = bytes(cache)
    assert data[:2] == b"\x05\x03"
    assert data[2:] == DEFAULT + CRED.replace(b"\x00\x12" + d32(bytes(range(32))), b"\x00\x12\x00\x12" + d32(bytes(range(32))))
    parsed = Ccache.parse(data)
    assert parsed.credentials == [GOLDEN_CRED] and parsed.kdc_offset is None


def _native(version: int) -> bytes:
    order = "<" if sys.byteorder == "little" else ">"

    def data(raw):
        return struct.pack(order + "I", len(raw)) + raw

    def principal(name_type, realm, *comps):
        if version == 0x0501:
            head = struct.pack(order + "I", len(comps) + 1)
        else:
            head = struct.pack(order + "II", name_type, len(comps))
        return head + data(realm) + b"".join(data(c) for c in comps)

    cred = (
        principal(1, b"EXAMPLE.TEST", b"alice")
        + principal(2, b"EXAMPLE.TEST", b"krbtgt", b"EXAMPLE.TEST")
        + struct.pack(order + "H", 18) + data(bytes(range(32)))
        + struct.pack(order + "IIII", 1000, 1001, 2000, 3000)
        + b"\x01"
        + struct.pack(order + "I", 0x40000000)
        + struct.pack(order + "I", 0)
        + struct.pack(order + "I", 0)
        + data(b"tkt")
        + data(b"second")
    )
    return bytes([5, version & 0xFF]) + principal(1, b"EXAMPLE.TEST", b"alice") + cred


@pytest.mark.parametrize("version", [0x0501, 0x0502])
def test_reads_native_order_versions(version):
    cache = Ccache.parse(_native(version))
    cred = cache.credentials[0]
    assert cache.principal.same_name(ALICE)
    assert cred.server.same_name(TGS)
    assert cred.server.name_type == (0 if version == 0x0501 else 2)
    assert (cred.key, cred.is_skey, cred.ticket_flags, cred.ticket, cred.second_ticket) == (
        SESSION,
        True,
        0x40000000,
        b"tkt",
        b"second",
    )
    with pytest.raises(CcacheFormatError, match="writing ccache version"):
        bytes(cache)
    cache.version = 0x0504
    assert Ccache.parse(bytes(cache)).credentials == cache.credentials


def test_save_is_private_and_atomic(tmp_path):
    path = tmp_path / "cc"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    Ccache(ALICE, [GOLDEN_CRED], kdc_offset=(-3, 250000)).save(f"FILE:{path}")
    assert path.read_bytes() == GOLDEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["cc"]
    assert Ccache.load(f"FILE:{path}").credentials == [GOLDEN_CRED]
    assert Ccache.load(path).principal == ALICE


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "too short"),
        (b"\x06\x04", "does not start with 0x05"),
        (b"\x05\x05", "unsupported ccache version 0x0505"),
        (b"\x05\x04\x00", "header length needs 2 bytes at offset 2"),
        (b"\x05\x04\x00\x10\x00\x01", "header needs 16 bytes at offset 4"),
        (b"\x05\x04\x00\x08\x00\x01\x00\x04\x00\x00\x00\x00" + DEFAULT, "KDC time offset field at offset 4 has length 4, not 8"),
        (b"\x05\x04\x00\x03\x00\x01\x00" + DEFAULT, "header field length needs 2 bytes at offset 6"),
        (b"\x05\x04\x00\x06\x00\x02\x00\x05\x00\x00" + DEFAULT, "header field 2 needs 5 bytes at offset 8"),
        (HEADER, "default principal name type needs 4 bytes at offset 16"),
        (HEADER + b"\x00\x00\x00\x01\x00\x00\x00\x00" + d32(b"R"), "default principal at offset 16 has no name components"),
        (HEADER + b"\x00\x00\x00\x01\xff\xff\xff\xff", "default principal component count 4294967295 at offset 20 exceeds"),
        (HEADER + DEFAULT + DEFAULT[:-3], "credential 1 .*client component 1 needs 5 bytes"),
        (GOLDEN[:-1], "credential 1 .*second ticket length needs 4 bytes"),
        (GOLDEN + DEFAULT, "credential 2 .*server name type needs 4 bytes"),
        (_replace(GOLDEN, b"\x00" + struct.pack(">I", 0x50E10000), b"\x02" + struct.pack(">I", 0x50E10000)), "is_skey at offset .* is 2"),
        (_replace(GOLDEN, b"\x00\x00\x00\x01\x00\x02", b"\x10\x00\x00\x00\x00\x02"), "address count 268435456 at offset .* exceeds"),
        (_replace(GOLDEN, b"\x00\x00\x00\x01\x00\x01", b"\x00\x00\x10\x00\x00\x01"), "authdata count 4096 at offset .* exceeds"),
    ],
)
def test_malformed(data, message):
    with pytest.raises(CcacheFormatError, match=message):
        Ccache.parse(data)


@pytest.mark.parametrize("cut", list(range(1, len(CRED))))
def test_every_truncated_credential_is_a_format_error(cut):
    with pytest.raises(CcacheFormatError, match="needs|exceeds") as info:
        Ccache.parse(HEADER + DEFAULT + CRED[:cut])
    assert bytes(range(32)).hex() not in str(info.value)


def test_version_1_zero_count():
    data = b"\x05\x01" + b"\x00\x00\x00\x00"
    with pytest.raises(CcacheFormatError, match="component count of 0"):
        Ccache.parse(data)


@pytest.mark.parametrize(
    "cred, message",
    [
        (Credential(ALICE, TGS, Key(1 << 16, b"")), "enctype 65536"),
        (Credential(ALICE, TGS, SESSION, endtime=-1), "endtime -1"),
        (Credential(ALICE, TGS, SESSION, ticket_flags=1 << 32), "ticket flags"),
        (Credential(ALICE, TGS, SESSION, addresses=[Address(1 << 16, b"")]), "address type"),
        (Credential(ALICE, Principal(("x",), "R", -1), SESSION), "name type -1"),
    ],
)
def test_unwritable(cred, message):
    with pytest.raises(CcacheFormatError, match=message):
        bytes(Ccache(ALICE, [cred]))


def test_repr_never_shows_key_bytes():
    text = repr(Ccache(ALICE, [GOLDEN_CRED]))
    assert bytes(range(32)).hex() not in text and "\\x1f" not in text


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
principals = st.builds(
    Principal,
    components=st.lists(names, min_size=1, max_size=3).map(tuple),
    realm=names,
    name_type=st.sampled_from(list(NameType)),
)
u32 = st.integers(0, 0xFFFFFFFF)
credentials = st.builds(
    Credential,
    client=principals,
    server=principals,
    key=st.builds(Key, enctype=st.integers(0, 0xFFFF), contents=st.binary(max_size=32)),
    authtime=u32,
    starttime=u32,
    endtime=u32,
    renew_till=u32,
    is_skey=st.booleans(),
    ticket_flags=u32,
    addresses=st.lists(st.builds(Address, st.integers(0, 0xFFFF), st.binary(max_size=16)), max_size=2).map(tuple),
    authdata=st.lists(st.builds(AuthData, st.integers(0, 0xFFFF), st.binary(max_size=16)), max_size=2).map(tuple),
    ticket=st.binary(max_size=40),
    second_ticket=st.binary(max_size=8),
)


@given(principals, st.lists(credentials, max_size=3), st.none() | st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1)), st.sampled_from([0x0503, 0x0504]))
def test_round_trip_property(principal, creds, offset, version):
    cache = Ccache(principal, creds, kdc_offset=offset if version == 0x0504 else None, version=version)
    data = bytes(cache)
    parsed = Ccache.parse(data)
    assert parsed == cache
    assert bytes(parsed) == data


@given(st.binary(max_size=300))
def test_fuzz_only_format_errors(data):
    for prefix in (b"\x05\x04", b"\x05\x03", b"\x05\x04\x00\x00"):
        try:
            Ccache.parse(prefix + data)
        except CcacheFormatError:
            pass


def test_unwritable_kdc_offset():
    with pytest.raises(CcacheFormatError, match="KDC time offset seconds 2147483648 does not fit in 32 bits signed"):
        bytes(Ccache(ALICE, [], kdc_offset=(2**31, 0)))


def test_truncation_message_names_context_field_and_offsets():
    data = HEADER + DEFAULT + CRED[:-6]
    cred_at = len(HEADER + DEFAULT)
    with pytest.raises(CcacheFormatError) as info:
        Ccache.parse(data)
    assert str(info.value) == (
        f"ccache credential 1 (offset {cred_at}): ticket needs 5 bytes at offset {len(data) - 3}, 3 left"
    )
