"""MIT keytab files: exact layout, round trips, holes, kvno rules and every malformed case."""

from __future__ import annotations

import os
import stat
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.crypto.key import Key
from common.keytab import Keytab, KeytabEntry, KeytabFormatError
from common.principal import NameType, Principal

SC = Principal(("sc", "sc1.example.test"), "EXAMPLE.TEST", NameType.SRV_INST)
ALICE = Principal(("alice",), "EXAMPLE.TEST")
KEY16 = Key(17, bytes(range(16)))
KEY32 = Key(18, bytes(range(32)))

# One entry written by hand from the format description (0x0502, big-endian): principal
# sc/sc1.example.test@EXAMPLE.TEST NT-SRV-INST, timestamp 0x5f000000, kvno 3, aes128 key 00..0f.
ENTRY_BODY = (
    b"\x00\x02"  # two components (the realm is not counted in version 2)
    + b"\x00\x0cEXAMPLE.TEST"
    + b"\x00\x02sc"
    + b"\x00\x10sc1.example.test"
    + b"\x00\x00\x00\x02"  # name type
    + b"\x5f\x00\x00\x00"  # timestamp
    + b"\x03"  # 8-bit kvno
    + b"\x00\x11"  # enctype 17
    + b"\x00\x10" + bytes(range(16))
    + b"\x00\x00\x00\x03"  # 32-bit kvno
)
GOLDEN = b"\x05\x02" + struct.pack(">i", len(ENTRY_BODY)) + ENTRY_BODY


def test_writes_the_documented_layout():
    keytab = Keytab([KeytabEntry(SC, 3, KEY16, 0x5F000000)])
    assert bytes(keytab) == GOLDEN


def test_parses_the_documented_layout():
    keytab = Keytab.parse(GOLDEN)
    assert keytab.entries == [KeytabEntry(SC, 3, KEY16, 0x5F000000)]
    assert keytab.entries[0].principal.name_type == NameType.SRV_INST


def test_empty_keytab_is_just_the_version():
    assert bytes(Keytab()) == b"\x05\x02"
    assert Keytab.parse(b"\x05\x02").entries == []


def test_round_trip_several_principals_and_kvnos():
    entries = [
        KeytabEntry(ALICE, 1, KEY16, 1),
        KeytabEntry(ALICE, 2, KEY32, 2),
        KeytabEntry(SC, 300, Key(20, b"\xaa" * 32), 3),  # kvno above 255 needs the 32-bit field
        KeytabEntry(Principal(("cta", "00:11:22:aa:bb:cc"), "EXAMPLE.TEST"), 0xFFFFFFFF, Key(16, b"\x01" * 24), 0),
        KeytabEntry(Principal(("ünï", "çødé"), "RÉALM"), 7, Key(19, b"\x02" * 16), 0xFFFFFFFF),
    ]
    data = bytes(Keytab(entries))
    parsed = Keytab.parse(data)
    assert parsed.entries == entries
    assert bytes(parsed) == data


def test_kvno_above_255_keeps_low_byte_in_8_bit_field():
    data = bytes(Keytab([KeytabEntry(ALICE, 0x1234, KEY16, 0)]))
    body = data[6:]
    kvno8 = body[2 + 14 + 7 + 4 + 4]
    assert kvno8 == 0x34
    assert body[-4:] == b"\x00\x00\x12\x34"


def test_8_bit_kvno_used_without_trailing_field():
    body = ENTRY_BODY[:-4]
    data = b"\x05\x02" + struct.pack(">i", len(body)) + body
    assert Keytab.parse(data).entries[0].kvno == 3


def test_trailing_kvno_zero_means_use_8_bit_kvno():
    body = ENTRY_BODY[:-4] + b"\x00\x00\x00\x00"
    data = b"\x05\x02" + struct.pack(">i", len(body)) + body
    assert Keytab.parse(data).entries[0].kvno == 3


def test_trailing_kvno_supersedes_8_bit_kvno():
    body = ENTRY_BODY[:-4] + b"\x00\x00\x01\x03"
    data = b"\x05\x02" + struct.pack(">i", len(body)) + body
    assert Keytab.parse(data).entries[0].kvno == 0x103


def test_record_longer_than_entry_is_padding():
    # An entry written into a larger hole: the record length exceeds the entry; extra bytes
    # (zeros, or Heimdal's flags field) are ignored.
    body = ENTRY_BODY + b"\x00\x00\x00\x07" + b"\x00" * 9
    data = b"\x05\x02" + struct.pack(">i", len(body)) + body
    assert Keytab.parse(data).entries == [KeytabEntry(SC, 3, KEY16, 0x5F000000)]


def test_holes_are_skipped():
    hole = struct.pack(">i", -20) + b"\x00" * 20
    data = b"\x05\x02" + hole + GOLDEN[2:] + hole + GOLDEN[2:]
    assert len(Keytab.parse(data).entries) == 2


def test_zero_length_record_ends_the_keytab():
    data = GOLDEN + b"\x00\x00\x00\x00" + b"garbage after the end marker"
    assert len(Keytab.parse(data).entries) == 1


def _v1(order: str) -> bytes:
    # Version 0x0501: native byte order, component count includes the realm, no name type.
    fmt = "<" if order == "little" else ">"
    body = (
        struct.pack(fmt + "H", 3)
        + struct.pack(fmt + "H", 12) + b"EXAMPLE.TEST"
        + struct.pack(fmt + "H", 2) + b"sc"
        + struct.pack(fmt + "H", 16) + b"sc1.example.test"
        + struct.pack(fmt + "I", 0x5F000000)
        + b"\x03"
        + struct.pack(fmt + "H", 17)
        + struct.pack(fmt + "H", 16) + bytes(range(16))
    )
    return b"\x05\x01" + struct.pack(fmt + "i", len(body)) + body


def test_reads_version_1_in_native_order():
    keytab = Keytab.parse(_v1(sys.byteorder))
    entry = keytab.entries[0]
    assert entry.principal.same_name(SC)
    assert entry.principal.name_type == NameType.UNKNOWN
    assert (entry.kvno, entry.key, entry.timestamp) == (3, KEY16, 0x5F000000)
    # Written back as version 2.
    assert bytes(keytab)[:2] == b"\x05\x02"


def test_keys_for_defaults_to_highest_kvno_and_ignores_name_type():
    keytab = Keytab(
        [
            KeytabEntry(SC, 1, KEY16),
            KeytabEntry(SC, 2, KEY16),
            KeytabEntry(SC, 2, KEY32),
            KeytabEntry(ALICE, 9, KEY32),
        ]
    )
    as_principal = SC.with_name_type(NameType.PRINCIPAL)
    assert keytab.keys_for(as_principal) == [KEY16, KEY32]
    assert keytab.keys_for(SC, kvno=1) == [KEY16]
    assert keytab.keys_for(SC, kvno=5) == []
    assert keytab.keys_for(Principal(("bob",), "EXAMPLE.TEST")) == []
    assert keytab.key_for(SC, 18) == KEY32
    with pytest.raises(KeyError):
        keytab.key_for(SC, 20)
    assert keytab.principals() == [SC, ALICE]


def test_save_is_private_and_atomic(tmp_path):
    path = tmp_path / "sc.keytab"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    Keytab([KeytabEntry(SC, 3, KEY16, 0x5F000000)]).save(path)
    assert path.read_bytes() == GOLDEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sc.keytab"]
    assert Keytab.load(path).entries[0].kvno == 3


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "too short for the 2-byte version"),
        (b"\x05", "too short for the 2-byte version"),
        (b"\x04\x02", "does not start with 0x05"),
        (b"\x05\x03", "unsupported keytab version 0x0503"),
        (b"\x05\x02\x00\x00", "record length at offset 2 is truncated"),
        (b"\x05\x02\x00\x00\x00\x10" + b"\x00" * 8, "entry at offset 2 claims 16 bytes but only 8 remain"),
        (b"\x05\x02\xff\xff\xff\xf0" + b"\x00" * 8, "hole at offset 2 claims 16 bytes but only 8 remain"),
        (b"\x05\x02\x80\x00\x00\x00", "invalid length -2**31"),
        (b"\x05\x02\x00\x00\x00\x01\x00", "component count needs 2 bytes"),
        (
            b"\x05\x02\x00\x00\x00\x06\x00\x01\x00\x20AB",
            "realm needs 32 bytes at offset 10, 2 left in the record",
        ),
        (
            b"\x05\x02\x00\x00\x00\x06\x00\x00\x00\x02AB",
            "has a principal with no name components",
        ),
    ],
)
def test_malformed(data, message):
    with pytest.raises(KeytabFormatError, match=message.replace("*", r"\*").replace("(", r"\(")):
        Keytab.parse(data)


# Cut 0 would be the end marker; cuts past the key leave a valid entry without the 32-bit kvno.
@pytest.mark.parametrize("cut", list(range(1, len(ENTRY_BODY) - 4)))
def test_every_truncated_entry_is_a_format_error(cut):
    body = ENTRY_BODY[:cut]
    data = b"\x05\x02" + struct.pack(">i", len(body)) + body
    with pytest.raises(KeytabFormatError, match="is truncated|no name components") as info:
        Keytab.parse(data)
    assert bytes(range(16)).hex() not in str(info.value)


def test_empty_realm():
    body = b"\x00\x01\x00\x00\x00\x01a" + b"\x00" * 4 * 2 + b"\x01\x00\x11\x00\x00"
    data = b"\x05\x02" + struct.pack(">i", len(body)) + body
    with pytest.raises(KeytabFormatError, match="empty realm"):
        Keytab.parse(data)


def test_version_1_zero_count():
    data = b"\x05\x01" + (4).to_bytes(4, sys.byteorder, signed=True) + b"\x00\x00\x00\x00"
    with pytest.raises(KeytabFormatError, match="component count of 0"):
        Keytab.parse(data)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kvno=-1), "kvno -1 does not fit"),
        (dict(kvno=1 << 32), "does not fit in 32 bits"),
        (dict(timestamp=-5), "timestamp -5 does not fit"),
        (dict(key=Key(70000, b"")), "enctype 70000 does not fit"),
    ],
)
def test_unwritable_entries(kwargs, message):
    values = dict(principal=ALICE, kvno=1, key=KEY16, timestamp=0) | kwargs
    with pytest.raises(KeytabFormatError, match=message):
        KeytabEntry(**values)


def test_unwritable_long_key():
    with pytest.raises(KeytabFormatError, match="longer than 65535"):
        bytes(Keytab([KeytabEntry(ALICE, 1, Key(18, b"\x00" * 70000))]))


def test_repr_never_shows_key_bytes():
    text = repr(Keytab([KeytabEntry(ALICE, 1, KEY32)]))
    assert bytes(range(32)).hex() not in text and "\\x1f" not in text


components = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
entries = st.builds(
    KeytabEntry,
    principal=st.builds(
        Principal,
        components=st.lists(components, min_size=1, max_size=3).map(tuple),
        realm=components,
        name_type=st.integers(0, 0xFFFFFFFF),
    ),
    kvno=st.integers(0, 0xFFFFFFFF),
    key=st.builds(Key, enctype=st.integers(0, 0xFFFF), contents=st.binary(max_size=64)),
    timestamp=st.integers(0, 0xFFFFFFFF),
)


@given(st.lists(entries, max_size=4))
def test_round_trip_property(items):
    data = bytes(Keytab(items))
    parsed = Keytab.parse(data)
    # A 32-bit kvno of 0 is indistinguishable from "absent": the 8-bit kvno (also 0) applies.
    assert parsed.entries == items
    assert bytes(parsed) == data


@given(st.binary(max_size=200))
def test_fuzz_only_format_errors(data):
    try:
        Keytab.parse(b"\x05\x02" + data)
    except KeytabFormatError:
        pass


def test_unwritable_name_type_and_component():
    with pytest.raises(KeytabFormatError, match="name type -1 does not fit in 32 bits"):
        bytes(Keytab([KeytabEntry(Principal(("a",), "R", -1), 1, KEY16)]))
    with pytest.raises(KeytabFormatError, match="principal component of 65536 bytes is longer than 65535"):
        KeytabEntry(Principal(("a" * 65536,), "R"), 1, KEY16).to_bytes()


def test_version_1_native_order_truncated_key_names_file_offsets():
    order = sys.byteorder
    body = (2).to_bytes(2, order) + (1).to_bytes(2, order) + b"R" + (1).to_bytes(2, order) + b"a"
    body += b"\x00" * 4 + b"\x01" + (17).to_bytes(2, order) + (16).to_bytes(2, order) + b"\x00" * 3
    data = b"\x05\x01" + len(body).to_bytes(4, order, signed=True) + body
    with pytest.raises(KeytabFormatError, match=r"^keytab entry at offset 2 is truncated: key needs 16 bytes at offset 23, 3 left in the record$"):
        Keytab.parse(data)
