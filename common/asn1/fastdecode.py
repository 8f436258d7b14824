"""A strict DER reader for the two structures an AP exchange reads every time: the AP-REQ (outer
structure, the ticket's clear part, the authenticator's EncryptedData) and the decrypted
Authenticator.

asn1crypto builds a Python object per node and `decode_as` walks them all: about 150 us for an
AP-REQ and 90 us for an Authenticator. These readers walk the bytes once and return plain values.
What repeats from message to message is read once: a ticket's clear part (`TicketMemo`) and an
authenticator's client (`_client_part`, the same bytes in every authenticator of a client).

Contract: each reader returns its values, or None when the input is not in the exact shape it
knows (strict DER only: minimal lengths and INTEGERs, primitive OCTET STRINGs, exactly 32
KerberosFlags bits, KerberosTime exactly 'YYYYMMDDHHMMSSZ', no unknown elements, non-empty
names, values inside their RFC 4120 ranges). On None the caller decodes with `decode` /
`decode_as`, which accepts the BER deviations it tolerates or raises its precise
Asn1DecodeError. So the readers accept a subset of what asn1crypto accepts, with the same values;
tests/test_asn1_der_ap.py checks both on valid, mutated and random inputs.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

__all__ = ["ApReqFields", "AuthenticatorFields", "TicketMemo", "read_ap_req", "read_authenticator"]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_UINT32_MAX = 2**32 - 1
_MAX_PADDING = 7  # as common.asn1.types.MAX_PLAINTEXT_PADDING


class _Irregular(Exception):
    """Not the shape this reader knows: the caller falls back to asn1crypto."""


class ApReqFields:
    """The values of an AP-REQ an acceptor needs (the ticket's enc-part stays sealed)."""

    __slots__ = (
        "pvno", "msg_type", "ap_options", "sname_type", "sname", "realm",
        "ticket_etype", "ticket_kvno", "ticket_cipher", "auth_etype", "auth_kvno", "auth_cipher",
    )

    def __init__(self, pvno, msg_type, ap_options, sname_type, sname, realm, ticket_etype, ticket_kvno,
                 ticket_cipher, auth_etype, auth_kvno, auth_cipher) -> None:
        self.pvno = pvno
        self.msg_type = msg_type
        self.ap_options = ap_options
        self.sname_type = sname_type
        self.sname = sname  # tuple of str
        self.realm = realm
        self.ticket_etype = ticket_etype
        self.ticket_kvno = ticket_kvno  # None when absent
        self.ticket_cipher = ticket_cipher
        self.auth_etype = auth_etype
        self.auth_kvno = auth_kvno
        self.auth_cipher = auth_cipher


class AuthenticatorFields:
    """The Authenticator's values (cksum, subkey, seq-number, authorization-data are checked, and
    kept as raw values for callers that want them)."""

    __slots__ = ("vno", "crealm", "cname_type", "cname", "cksum", "cusec", "ctime", "subkey", "seq_number", "authorization_data")

    def __init__(self, vno, crealm, cname_type, cname, cksum, cusec, ctime, subkey, seq_number, authorization_data) -> None:
        self.vno = vno
        self.crealm = crealm
        self.cname_type = cname_type
        self.cname = cname  # tuple of str
        self.cksum = cksum  # (cksumtype, checksum) or None
        self.cusec = cusec
        self.ctime = ctime  # aware UTC datetime
        self.subkey = subkey  # (keytype, keyvalue) or None
        self.seq_number = seq_number  # int or None
        self.authorization_data = authorization_data  # tuple of (ad-type, ad-data) or None


# --- TLV primitives (each returns the content bounds, or raises _Irregular) -------------------------


def _tlv(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """The element at `pos` must have identifier `tag` and fit before `end`: (start, stop) of its
    contents, DER (minimal) length form only."""
    if pos + 2 > end or data[pos] != tag:
        raise _Irregular
    first = data[pos + 1]
    if first < 0x80:
        start = pos + 2
        stop = start + first
    elif first == 0x81:
        if pos + 3 > end:
            raise _Irregular
        n = data[pos + 2]
        if n < 0x80:
            raise _Irregular
        start = pos + 3
        stop = start + n
    elif first == 0x82:
        if pos + 4 > end:
            raise _Irregular
        n = (data[pos + 2] << 8) | data[pos + 3]
        if n < 0x100:
            raise _Irregular
        start = pos + 4
        stop = start + n
    elif first == 0x83:  # PKINIT requests with certificate chains can pass 64 KiB
        if pos + 5 > end:
            raise _Irregular
        n = (data[pos + 2] << 16) | (data[pos + 3] << 8) | data[pos + 4]
        if n < 0x10000:
            raise _Irregular
        start = pos + 5
        stop = start + n
    else:
        raise _Irregular  # 16 MiB or more (no request is), or not DER
    if stop > end:
        raise _Irregular
    return start, stop


def _integer(data: bytes, start: int, stop: int) -> int:
    n = stop - start
    if n == 0:
        raise _Irregular
    if n > 1:
        a, b = data[start], data[start + 1]
        if (a == 0 and b < 0x80) or (a == 0xFF and b >= 0x80):
            raise _Irregular  # not minimal
    return int.from_bytes(data[start:stop], "big", signed=True)


def _explicit_integer(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """[n] EXPLICIT INTEGER at `pos`: (value, position after it)."""
    if pos + 5 <= end and data[pos] == tag and data[pos + 2] == 0x02:
        # The usual case, both lengths in the short form: one call instead of three.
        size = data[pos + 3]
        stop = pos + 4 + size
        if 0 < size < 0x7E and data[pos + 1] == size + 2 and stop <= end:
            first = data[pos + 4]
            if size > 1:
                second = data[pos + 5]
                if (first == 0 and second < 0x80) or (first == 0xFF and second >= 0x80):
                    raise _Irregular  # not minimal
                return int.from_bytes(data[pos + 4 : stop], "big", signed=True), stop
            return (first - 256 if first & 0x80 else first), stop
    start, stop = _tlv(data, pos, end, tag)
    istart, istop = _tlv(data, start, stop, 0x02)
    if istop != stop:
        raise _Irregular
    return _integer(data, istart, istop), stop


def _int32(value: int) -> int:
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise _Irregular
    return value


def _explicit_octets(data: bytes, pos: int, end: int, tag: int) -> tuple[bytes, int]:
    start, stop, after = _inner(data, pos, end, tag, 0x04)
    return data[start:stop], after


def _explicit_string(data: bytes, pos: int, end: int, tag: int) -> tuple[str, int]:
    start, stop, after = _inner(data, pos, end, tag, 0x1B)
    return data[start:stop].decode("utf-8"), after  # UnicodeDecodeError: the caller falls back


def _principal_name(data: bytes, pos: int, end: int, tag: int) -> tuple[int, tuple[str, ...], int]:
    """[tag] PrincipalName: (name-type, components, position after); components non-empty."""
    start, sstop, stop = _inner(data, pos, end, tag, 0x30)
    name_type, p = _explicit_integer(data, start, sstop, 0xA0)
    if not _INT32_MIN <= name_type <= _INT32_MAX:
        raise _Irregular
    qstart, qstop, lstop = _inner(data, p, sstop, 0xA1, 0x30)
    if lstop != sstop:
        raise _Irregular
    components = []
    p = qstart
    while p < qstop:
        if data[p] == 0x1B and data[p + 1] < 0x80:  # short form, the usual case
            cstart = p + 2
            cstop = cstart + data[p + 1]
            if cstop > qstop:
                raise _Irregular
        else:
            cstart, cstop = _tlv(data, p, qstop, 0x1B)
        components.append(data[cstart:cstop].decode("utf-8"))
        p = cstop
    if not components:
        raise _Irregular  # Principal refuses it: let the reference path word the error
    return name_type, tuple(components), stop


def _inner(data: bytes, pos: int, end: int, tag: int, inner_tag: int) -> tuple[int, int, int]:
    """[tag] EXPLICIT around one element with identifier `inner_tag` filling it exactly:
    (inner content start, inner content stop, position after)."""
    if pos + 4 <= end and data[pos] == tag and data[pos + 2] == inner_tag:
        # The usual case, both lengths in the short form: one call instead of three.
        length = data[pos + 1]
        stop = pos + 2 + length
        if length < 0x80 and data[pos + 3] == length - 2 and stop <= end:
            return pos + 4, stop, stop
    start, stop = _tlv(data, pos, end, tag)
    istart, istop = _tlv(data, start, stop, inner_tag)
    if istop != stop:
        raise _Irregular
    return istart, istop, stop


def _encrypted_data(data: bytes, start: int, stop: int) -> tuple[int, int | None, bytes]:
    """The contents of an EncryptedData SEQUENCE: (etype, kvno or None, cipher)."""
    etype, p = _explicit_integer(data, start, stop, 0xA0)
    _int32(etype)
    kvno = None
    if p < stop and data[p] == 0xA1:
        kvno, p = _explicit_integer(data, p, stop, 0xA1)
        if not 0 <= kvno <= _UINT32_MAX:
            raise _Irregular
    cipher, p = _explicit_octets(data, p, stop, 0xA2)
    if p != stop:
        raise _Irregular
    return etype, kvno, cipher


def _kerberos_time(data: bytes, pos: int, end: int, tag: int) -> tuple[datetime, int]:
    start, stop, after = _inner(data, pos, end, tag, 0x18)
    if stop - start != 15 or data[stop - 1] != 0x5A:  # 'Z'
        raise _Irregular
    date, time = data[start : start + 8], data[start + 8 : stop - 1]
    if not (date.isdigit() and time.isdigit()) or time[:2] == b"24":  # ASCII digits; newer
        raise _Irregular  # Pythons read hour 24 as the next day's midnight, asn1crypto refuses it
    # 'YYYYMMDDTHHMMSSZ' is ISO 8601 basic format: fromisoformat raises ValueError for a month 13,
    # second 60, year 0, ... (the caller falls back), and is three times faster than datetime().
    return datetime.fromisoformat(f"{date.decode()}T{time.decode()}Z"), after


def _type_value(data: bytes, start: int, stop: int) -> tuple[int, bytes]:
    """SEQUENCE contents {[0] Int32, [1] OCTET STRING} (Checksum, EncryptionKey, AD entry)."""
    kind, p = _explicit_integer(data, start, stop, 0xA0)
    _int32(kind)
    value, p = _explicit_octets(data, p, stop, 0xA1)
    if p != stop:
        raise _Irregular
    return kind, value


# --- the readers ----------------------------------------------------------------------------------


def read_ap_req(data: bytes, memo: TicketMemo | None = None) -> ApReqFields | None:
    """The AP-REQ `data` (exactly one, nothing after it), or None: decode it with asn1crypto.

    `memo` remembers the clear part of tickets already read (a ticket is sent again with every
    AP-REQ of its lifetime), so the ticket's dozen elements are read once per ticket."""
    try:
        return _read_ap_req(data, memo)
    except (_Irregular, ValueError, IndexError):
        return None


class TicketMemo:
    """Ticket encoding -> its strictly read clear part (sname, realm, enc-part), at most `size`
    tickets (oldest dropped first). Only tickets the strict reader accepted are kept, so a hit
    gives exactly what reading the bytes again would. Entries are made before anything is
    decrypted, so anyone can add one: tickets over `MAX_TICKET` bytes are not kept, which bounds
    the memory to size * MAX_TICKET (16 MiB by default) whatever is sent."""

    MAX_TICKET = 4096  # ours are well under 2 KiB, restrictions included
    __slots__ = ("size", "_entries")

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: dict[bytes, tuple] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ticket: bytes) -> tuple | None:
        return self._entries.get(ticket)

    def put(self, ticket: bytes, value: tuple) -> None:
        if self.size <= 0 or len(ticket) > self.MAX_TICKET:
            return
        entries = self._entries
        entries[ticket] = value
        if len(entries) > self.size:
            del entries[next(iter(entries))]

    def clear(self) -> None:
        self._entries.clear()


def _read_ticket(data: bytes, tstart: int, tstop: int) -> tuple:
    """The contents of AP-REQ [3]: Ticket ::= [APPLICATION 1] SEQUENCE {tkt-vno, realm, sname,
    enc-part} -> (sname-type, sname, realm, etype, kvno, cipher)."""
    sstart, sstop, astop = _inner(data, tstart, tstop, 0x61, 0x30)
    if astop != tstop:
        raise _Irregular
    _, q = _explicit_integer(data, sstart, sstop, 0xA0)  # tkt-vno: any INTEGER, as the reference
    realm, q = _explicit_string(data, q, sstop, 0xA1)
    sname_type, sname, q = _principal_name(data, q, sstop, 0xA2)
    estart, estop, q = _inner(data, q, sstop, 0xA3, 0x30)
    if q != sstop:
        raise _Irregular
    etype, kvno, cipher = _encrypted_data(data, estart, estop)
    return sname_type, sname, realm, etype, kvno, cipher


# pvno 5, msg-type 14 and the header of a 32-bit ap-options: how every client starts an AP-REQ.
_USUAL_AP_REQ_START = b"\xa0\x03\x02\x01\x05\xa1\x03\x02\x01\x0e\xa2\x07\x03\x05\x00"


def _read_ap_req(data: bytes, memo: TicketMemo | None) -> ApReqFields:
    end = len(data)
    start, stop = _tlv(data, 0, end, 0x6E)  # [APPLICATION 14] SEQUENCE, nothing after it
    if stop != end:
        raise _Irregular
    start, stop = _tlv(data, start, stop, 0x30)
    if stop != end:
        raise _Irregular
    if stop - start >= 19 and data.startswith(_USUAL_AP_REQ_START, start):
        pvno, msg_type = 5, 14  # one comparison instead of reading three elements
        ap_options = int.from_bytes(data[start + 15 : start + 19], "big")
        p = start + 19
    else:
        pvno, p = _explicit_integer(data, start, stop, 0xA0)
        msg_type, p = _explicit_integer(data, p, stop, 0xA1)
        bstart, bstop, p = _inner(data, p, stop, 0xA2, 0x03)  # ap-options: exactly 32 bits
        if bstop - bstart != 5 or data[bstart] != 0:
            raise _Irregular
        ap_options = int.from_bytes(data[bstart + 1 : bstop], "big")
    tstart, tstop = _tlv(data, p, stop, 0xA3)
    if memo is None:
        ticket = _read_ticket(data, tstart, tstop)
    else:
        raw = data[tstart:tstop]
        ticket = memo.get(raw)
        if ticket is None:
            ticket = _read_ticket(data, tstart, tstop)
            memo.put(raw, ticket)
    sname_type, sname, realm, ticket_etype, ticket_kvno, ticket_cipher = ticket
    # authenticator: [4] EncryptedData
    estart, estop, p = _inner(data, tstop, stop, 0xA4, 0x30)
    if p != stop:
        raise _Irregular
    auth_etype, auth_kvno, auth_cipher = _encrypted_data(data, estart, estop)
    return ApReqFields(
        pvno, msg_type, ap_options, sname_type, sname, realm,
        ticket_etype, ticket_kvno, ticket_cipher, auth_etype, auth_kvno, auth_cipher,
    )


def read_authenticator(plaintext: bytes) -> AuthenticatorFields | None:
    """A decrypted Authenticator (up to 7 zero padding bytes after it, as `decode(padded=True)`),
    or None: decode it with asn1crypto."""
    try:
        return _read_authenticator(plaintext)
    except (_Irregular, ValueError, IndexError):
        return None


_CLIENT_PART_MEMO_BYTES = 512  # longer clients are read every time: the memo stays under ~2 MiB


@lru_cache(maxsize=4096)
def _client_part(encoded: bytes) -> tuple[int, str, int, tuple[str, ...]]:
    """The Authenticator's first three elements (authenticator-vno, crealm, cname): the same
    bytes in every authenticator of a client, so read once per client while it stays among
    the 4096 most recently seen. Raises like the readers (exceptions are not remembered)."""
    end = len(encoded)
    vno, p = _explicit_integer(encoded, 0, end, 0xA0)  # any INTEGER, as the reference
    crealm, p = _explicit_string(encoded, p, end, 0xA1)
    cname_type, cname, p = _principal_name(encoded, p, end, 0xA2)
    if p != end:
        raise _Irregular
    return vno, crealm, cname_type, cname


def _read_authenticator(data: bytes) -> AuthenticatorFields:
    end = len(data)
    start, stop = _tlv(data, 0, end, 0x62)  # [APPLICATION 2]
    if end - stop > _MAX_PADDING or any(data[stop:end]):
        raise _Irregular
    sstart, sstop = _tlv(data, start, stop, 0x30)
    if sstop != stop:
        raise _Irregular
    # authenticator-vno, crealm, cname: find where they end, then read them (once per client)
    p = _tlv(data, sstart, sstop, 0xA0)[1]
    p = _tlv(data, p, sstop, 0xA1)[1]
    p = _tlv(data, p, sstop, 0xA2)[1]
    client = data[sstart:p]
    read_client = _client_part if len(client) <= _CLIENT_PART_MEMO_BYTES else _client_part.__wrapped__
    vno, crealm, cname_type, cname = read_client(client)
    cksum = None
    if p < sstop and data[p] == 0xA3:
        cstart, cstop, p = _inner(data, p, sstop, 0xA3, 0x30)
        cksum = _type_value(data, cstart, cstop)
    cusec, p = _explicit_integer(data, p, sstop, 0xA4)
    if not 0 <= cusec <= 999_999:
        raise _Irregular
    ctime, p = _kerberos_time(data, p, sstop, 0xA5)
    subkey = None
    if p < sstop and data[p] == 0xA6:
        kstart, kstop, p = _inner(data, p, sstop, 0xA6, 0x30)
        subkey = _type_value(data, kstart, kstop)
    seq_number = None
    if p < sstop and data[p] == 0xA7:
        seq_number, p = _explicit_integer(data, p, sstop, 0xA7)
        if not 0 <= seq_number <= _UINT32_MAX:
            raise _Irregular
    authorization_data = None
    if p < sstop and data[p] == 0xA8:
        lstart, lstop, p = _inner(data, p, sstop, 0xA8, 0x30)
        entries = []
        q = lstart
        while q < lstop:
            estart, estop = _tlv(data, q, lstop, 0x30)
            entries.append(_type_value(data, estart, estop))
            q = estop
        authorization_data = tuple(entries)
    if p != sstop:
        raise _Irregular
    return AuthenticatorFields(vno, crealm, cname_type, cname, cksum, cusec, ctime, subkey, seq_number, authorization_data)
