"""A strict DER reader for what a PKINIT AS-REQ carries: the AS-REQ with its KDC-REQ-BODY and
padata, and the PA-PK-AS-REQ with its SignedData and AuthPack.

asn1crypto builds a Python object per node and `decode_as` walks them all: about 0.2 ms for a
PKINIT AS-REQ and 0.35 ms more for its PA-PK-AS-REQ, more than the KDC's RSA signature. These
readers walk the bytes once and return plain values.

Contract (as common.asn1.fastdecode): each reader returns its values, or None when the input is
not in the exact shape it knows -- strict DER only (minimal lengths and INTEGERs, primitive
strings, KerberosTime exactly 'YYYYMMDDHHMMSSZ', exactly 32 KDCOptions bits); no element it does
not know (enc-authorization-data, additional-tickets, crls, unsignedAttrs, extensions after the
last known field, signed attributes other than contentType and messageDigest, algorithm
parameters other than absent or NULL, DH domain parameters other than p, g, q); values inside
their ranges; and the PKINIT content types (ContentInfo signedData, eContentType
id-pkinit-authData, one SignerInfo). Elements the KDC does not use (from, trustedCertifiers,
kdcPkId) are read and dropped. On None the caller decodes with `decode` / `decode_as`, which
accepts the BER deviations it tolerates or raises its precise error. So the readers accept a
subset of what asn1crypto accepts, with the same values; tests/test_kdc_fastdecode_as.py checks
both on valid, mutated and random inputs.

Nothing here checks a signature: `SignedAuthPackFields` is what a verifier needs (the signed
attributes' bytes as received, the digest and signature algorithms, the embedded certificates).
Two values are left for the verifier to decode, as it must anyway: the embedded certificates
(DER blobs) and the sid's issuer Name (DER); kdcd.auth_pack decodes both as the reference path
does before it relies on them.
"""

from __future__ import annotations

from common.asn1.fastdecode import (
    _explicit_integer,
    _explicit_octets,
    _explicit_string,
    _inner,
    _int32,
    _integer,
    _Irregular,
    _kerberos_time,
    _tlv,
    _type_value,
)
from common.asn1.fastdecode import _principal_name as _name_type_components

__all__ = ["AsReqFields", "AuthPackFields", "SignedAuthPackFields", "read_as_req", "read_pa_pk_as_req"]

_UINT32_MAX = 2**32 - 1

ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_PKINIT_AUTHDATA = "1.3.6.1.5.2.3.1"
ID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
DHPUBLICNUMBER = "1.2.840.10046.2.1"
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"


# --- the values --------------------------------------------------------------------------------------


class AsReqFields:
    """An AS-REQ's values. Names are (name-type, components); padata and addresses are tuples of
    (type, value) in the order received (None when the element is absent)."""

    __slots__ = ("pvno", "msg_type", "padata", "req_body", "kdc_options", "cname", "realm", "sname",
                 "till", "rtime", "nonce", "etypes", "addresses")

    def __init__(self, pvno, msg_type, padata, req_body, kdc_options, cname, realm, sname, till, rtime, nonce,
                 etypes, addresses) -> None:
        self.pvno = pvno
        self.msg_type = msg_type
        self.padata = padata
        self.req_body = req_body  # the KDC-REQ-BODY as received (what paChecksum covers)
        self.kdc_options = kdc_options
        self.cname = cname
        self.realm = realm
        self.sname = sname
        self.till = till
        self.rtime = rtime
        self.nonce = nonce
        self.etypes = etypes
        self.addresses = addresses


class AuthPackFields:
    """The AuthPack's values. clientPublicValue is split by algorithm: `dh` = (p, g, q, y) for
    dhpublicnumber, `ec` = (named-curve OID, point octets) for id-ecPublicKey, both None for
    RSA key transport (no clientPublicValue). Algorithm lists are tuples of dotted OIDs."""

    __slots__ = ("cusec", "ctime", "nonce", "pa_checksum", "freshness_token", "pa_checksum2",
                 "public_algorithm", "dh", "ec", "cms_types", "client_dh_nonce", "kdfs")

    def __init__(self, cusec, ctime, nonce, pa_checksum, freshness_token, pa_checksum2, public_algorithm, dh, ec,
                 cms_types, client_dh_nonce, kdfs) -> None:
        self.cusec = cusec
        self.ctime = ctime
        self.nonce = nonce
        self.pa_checksum = pa_checksum
        self.freshness_token = freshness_token
        self.pa_checksum2 = pa_checksum2  # (digest OID, checksum) or None
        self.public_algorithm = public_algorithm
        self.dh = dh
        self.ec = ec
        self.cms_types = cms_types
        self.client_dh_nonce = client_dh_nonce
        self.kdfs = kdfs


class SignedAuthPackFields:
    """signedAuthPack's SignedData and the AuthPack it carries (not verified)."""

    __slots__ = ("content", "certificates", "sid_issuer", "sid_serial", "sid_key_id", "digest_algorithm",
                 "signed_attributes", "content_type_attribute", "message_digest", "signature_algorithm",
                 "signature", "auth_pack")

    def __init__(self, content, certificates, sid_issuer, sid_serial, sid_key_id, digest_algorithm,
                 signed_attributes, content_type_attribute, message_digest, signature_algorithm, signature,
                 auth_pack) -> None:
        self.content = content  # eContent: the AuthPack DER the messageDigest covers
        self.certificates = certificates  # tuple of DER Certificates, in order
        self.sid_issuer = sid_issuer  # DER Name of issuerAndSerialNumber, or None
        self.sid_serial = sid_serial
        self.sid_key_id = sid_key_id  # subjectKeyIdentifier, or None
        self.digest_algorithm = digest_algorithm  # dotted OID
        self.signed_attributes = signed_attributes  # the DER SET OF the signature covers (RFC 5652 5.4)
        self.content_type_attribute = content_type_attribute  # dotted OID
        self.message_digest = message_digest
        self.signature_algorithm = signature_algorithm  # dotted OID (parameters absent or NULL)
        self.signature = signature
        self.auth_pack = auth_pack


# --- primitives: common.asn1.fastdecode's (the AP-REQ reader's), plus these ----------------------------


def _principal_name(data: bytes, pos: int, end: int, tag: int) -> tuple[tuple[int, tuple[str, ...]], int]:
    """[tag] PrincipalName: ((name-type, components), position after)."""
    name_type, components, after = _name_type_components(data, pos, end, tag)
    return (name_type, components), after


def _uint32(value: int) -> int:
    if not 0 <= value <= _UINT32_MAX:
        raise _Irregular
    return value


# Object identifiers seen again and again (algorithm and content types): contents -> dotted text.
_OIDS: dict[bytes, str] = {}
_OID_CACHE_SIZE = 512


def _oid(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """OBJECT IDENTIFIER at `pos`: (dotted text, position after); minimal sub-identifiers only."""
    start, stop = _tlv(data, pos, end, 0x06)
    raw = data[start:stop]
    dotted = _OIDS.get(raw)
    if dotted is not None:
        return dotted, stop
    if not raw or raw[-1] & 0x80:
        raise _Irregular
    parts: list[int] = []
    value = 0
    fresh = True
    for octet in raw:
        if fresh and octet == 0x80:
            raise _Irregular  # a leading 0x80 octet is not minimal
        value = (value << 7) | (octet & 0x7F)
        fresh = not octet & 0x80
        if fresh:
            if not parts:
                first = min(value // 40, 2)
                parts += [first, value - 40 * first]
            else:
                parts.append(value)
            value = 0
    dotted = ".".join(map(str, parts))
    if len(_OIDS) >= _OID_CACHE_SIZE:
        _OIDS.clear()
    _OIDS[raw] = dotted
    return dotted, stop


def _algorithm(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """AlgorithmIdentifier with absent or NULL parameters: (dotted OID, position after)."""
    start, stop = _tlv(data, pos, end, 0x30)
    oid, p = _oid(data, start, stop)
    if p != stop and data[p : stop] != b"\x05\x00":
        raise _Irregular
    return oid, stop


# --- the AS-REQ ----------------------------------------------------------------------------------------


def read_as_req(data: bytes) -> AsReqFields | None:
    """The AS-REQ `data` (exactly one, nothing after it), or None: decode it with asn1crypto."""
    try:
        return _read_as_req(data)
    except (_Irregular, ValueError, IndexError):
        return None


def _read_as_req(data: bytes) -> AsReqFields:
    end = len(data)
    start, stop, after = _inner(data, 0, end, 0x6A, 0x30)  # [APPLICATION 10] SEQUENCE
    if after != end:
        raise _Irregular
    pvno, p = _explicit_integer(data, start, stop, 0xA1)
    msg_type, p = _explicit_integer(data, p, stop, 0xA2)
    padata = None
    if p < stop and data[p] == 0xA3:
        lstart, lstop, p = _inner(data, p, stop, 0xA3, 0x30)
        entries = []
        q = lstart
        while q < lstop:
            estart, estop = _tlv(data, q, lstop, 0x30)
            kind, r = _explicit_integer(data, estart, estop, 0xA1)
            _int32(kind)
            value, r = _explicit_octets(data, r, estop, 0xA2)
            if r != estop:
                raise _Irregular
            entries.append((kind, value))
            q = estop
        padata = tuple(entries)
    rstart, rstop = _tlv(data, p, stop, 0xA4)
    bstart, bstop = _tlv(data, rstart, rstop, 0x30)
    if bstop != rstop or rstop != stop:
        raise _Irregular
    body = _read_req_body(data, bstart, bstop)
    return AsReqFields(pvno, msg_type, padata, data[rstart:rstop], *body)


def _read_req_body(data: bytes, start: int, stop: int) -> tuple:
    ostart, ostop, p = _inner(data, start, stop, 0xA0, 0x03)  # kdc-options: exactly 32 bits
    if ostop - ostart != 5 or data[ostart] != 0:
        raise _Irregular
    options = int.from_bytes(data[ostart + 1 : ostop], "big")
    cname = sname = None
    if p < stop and data[p] == 0xA1:
        cname, p = _principal_name(data, p, stop, 0xA1)
    realm, p = _explicit_string(data, p, stop, 0xA2)
    if p < stop and data[p] == 0xA3:
        sname, p = _principal_name(data, p, stop, 0xA3)
    if p < stop and data[p] == 0xA4:
        _, p = _kerberos_time(data, p, stop, 0xA4)  # from: read (a malformed one falls back), unused
    till, p = _kerberos_time(data, p, stop, 0xA5)
    rtime = None
    if p < stop and data[p] == 0xA6:
        rtime, p = _kerberos_time(data, p, stop, 0xA6)
    nonce, p = _explicit_integer(data, p, stop, 0xA7)
    _uint32(nonce)
    estart, estop, p = _inner(data, p, stop, 0xA8, 0x30)
    etypes = []
    q = estart
    while q < estop:
        istart, istop = _tlv(data, q, estop, 0x02)
        etypes.append(_int32(_integer(data, istart, istop)))
        q = istop
    addresses = None
    if p < stop and data[p] == 0xA9:
        lstart, lstop, p = _inner(data, p, stop, 0xA9, 0x30)
        entries = []
        q = lstart
        while q < lstop:
            astart, astop = _tlv(data, q, lstop, 0x30)
            entries.append(_type_value(data, astart, astop))
            q = astop
        addresses = tuple(entries)
    if p != stop:
        raise _Irregular  # enc-authorization-data, additional-tickets or junk: the reference path
    return options, cname, realm, sname, till, rtime, nonce, tuple(etypes), addresses


# --- the PA-PK-AS-REQ ----------------------------------------------------------------------------------


def read_pa_pk_as_req(data: bytes) -> SignedAuthPackFields | None:
    """The PA-PK-AS-REQ padata-value `data`, or None: decode it with asn1crypto."""
    try:
        return _read_pa_pk_as_req(data)
    except (_Irregular, ValueError, IndexError):
        return None


def _read_pa_pk_as_req(data: bytes) -> SignedAuthPackFields:
    end = len(data)
    start, stop = _tlv(data, 0, end, 0x30)
    if stop != end:
        raise _Irregular
    cstart, cstop = _tlv(data, start, stop, 0x80)  # signedAuthPack [0] IMPLICIT OCTET STRING
    p = cstop
    if p < stop and data[p] == 0xA1:  # trustedCertifiers (MIT sends them): read, unused
        lstart, lstop, p = _inner(data, p, stop, 0xA1, 0x30)
        q = lstart
        while q < lstop:
            estart, estop = _tlv(data, q, lstop, 0x30)
            r = estart
            for tag in (0x80, 0x81, 0x82):  # subjectName, issuerAndSerialNumber, subjectKeyIdentifier
                if r < estop and data[r] == tag:
                    _, r = _tlv(data, r, estop, tag)
            if r != estop:
                raise _Irregular
            q = estop
    if p < stop and data[p] == 0x82:  # kdcPkId [2] IMPLICIT OCTET STRING: read, unused
        _, p = _tlv(data, p, stop, 0x82)
    if p != stop:
        raise _Irregular  # extensions or junk: the reference path
    # ContentInfo { contentType, [0] EXPLICIT SignedData }
    istart, istop = _tlv(data, cstart, cstop, 0x30)
    if istop != cstop:
        raise _Irregular
    content_type, p = _oid(data, istart, istop)
    if content_type != ID_SIGNED_DATA:
        raise _Irregular
    sstart, sstop, p = _inner(data, p, istop, 0xA0, 0x30)
    if p != istop:
        raise _Irregular
    return _read_signed_data(data, sstart, sstop)


def _read_signed_data(data: bytes, start: int, stop: int) -> SignedAuthPackFields:
    vstart, vstop = _tlv(data, start, stop, 0x02)  # version: any INTEGER, as the reference
    _integer(data, vstart, vstop)
    dstart, p = _tlv(data, vstop, stop, 0x31)  # digestAlgorithms SET OF AlgorithmIdentifier
    q = dstart
    while q < p:
        _, q = _algorithm(data, q, p)
    # encapContentInfo { eContentType, [0] EXPLICIT OCTET STRING }
    estart, estop = _tlv(data, p, stop, 0x30)
    e_content_type, q = _oid(data, estart, estop)
    if e_content_type != ID_PKINIT_AUTHDATA:
        raise _Irregular
    ostart, ostop, q = _inner(data, q, estop, 0xA0, 0x04)
    if q != estop:
        raise _Irregular
    content = data[ostart:ostop]
    p = estop
    certificates = []
    if p < stop and data[p] == 0xA0:  # certificates [0] IMPLICIT SET OF CertificateChoices
        lstart, lstop = _tlv(data, p, stop, 0xA0)
        q = lstart
        while q < lstop:
            cstart, cstop = _tlv(data, q, lstop, 0x30)  # only plain certificates
            certificates.append(data[q:cstop])
            q = cstop
        p = lstop
    istart, istop = _tlv(data, p, stop, 0x31)  # signerInfos: exactly one
    if istop != stop:
        raise _Irregular  # crls or junk
    sstart, sstop = _tlv(data, istart, istop, 0x30)
    if sstop != istop:
        raise _Irregular
    signer = _read_signer_info(data, sstart, sstop)
    return SignedAuthPackFields(content, tuple(certificates), *signer, _read_auth_pack(content))


def _read_signer_info(data: bytes, start: int, stop: int) -> tuple:
    vstart, p = _tlv(data, start, stop, 0x02)
    _integer(data, vstart, p)
    sid_issuer = sid_serial = sid_key_id = None
    if p < stop and data[p] == 0x30:  # issuerAndSerialNumber { Name, INTEGER }
        astart, astop = _tlv(data, p, stop, 0x30)
        nstart, nstop = _tlv(data, astart, astop, 0x30)
        sid_issuer = data[astart:nstop]
        rstart, rstop = _tlv(data, nstop, astop, 0x02)
        if rstop != astop:
            raise _Irregular
        sid_serial = _integer(data, rstart, rstop)
        p = astop
    else:  # subjectKeyIdentifier [0] IMPLICIT OCTET STRING
        kstart, p = _tlv(data, p, stop, 0x80)
        sid_key_id = data[kstart:p]
    digest_algorithm, p = _algorithm(data, p, stop)
    # signedAttrs [0] IMPLICIT SET OF Attribute: exactly contentType and messageDigest
    astart, astop = _tlv(data, p, stop, 0xA0)
    signed_attributes = b"\x31" + data[p + 1 : astop]
    content_type = message_digest = None
    q = astart
    while q < astop:
        tstart, tstop = _tlv(data, q, astop, 0x30)
        kind, r = _oid(data, tstart, tstop)
        vstart, vstop = _tlv(data, r, tstop, 0x31)
        if vstop != tstop:
            raise _Irregular
        if kind == ID_CONTENT_TYPE and content_type is None:
            content_type, r = _oid(data, vstart, vstop)
        elif kind == ID_MESSAGE_DIGEST and message_digest is None:
            mstart, r = _tlv(data, vstart, vstop, 0x04)
            message_digest = data[mstart:r]
        else:
            raise _Irregular  # another attribute, or a repeated one
        if r != vstop:
            raise _Irregular  # more than one value
        q = tstop
    if content_type is None or message_digest is None:
        raise _Irregular
    signature_algorithm, p = _algorithm(data, astop, stop)
    gstart, gstop = _tlv(data, p, stop, 0x04)
    if gstop != stop:
        raise _Irregular  # unsignedAttrs or junk
    return (sid_issuer, sid_serial, sid_key_id, digest_algorithm, signed_attributes, content_type, message_digest,
            signature_algorithm, data[gstart:gstop])


def _read_auth_pack(data: bytes) -> AuthPackFields:
    end = len(data)
    start, stop = _tlv(data, 0, end, 0x30)
    if stop != end:
        raise _Irregular
    # pkAuthenticator [0] PKAuthenticator
    astart, astop, p = _inner(data, start, stop, 0xA0, 0x30)
    cusec, q = _explicit_integer(data, astart, astop, 0xA0)
    if not 0 <= cusec <= 999_999:
        raise _Irregular
    ctime, q = _kerberos_time(data, q, astop, 0xA1)
    nonce, q = _explicit_integer(data, q, astop, 0xA2)
    _uint32(nonce)
    pa_checksum = freshness_token = pa_checksum2 = None
    if q < astop and data[q] == 0xA3:
        pa_checksum, q = _explicit_octets(data, q, astop, 0xA3)
    if q < astop and data[q] == 0xA4:
        freshness_token, q = _explicit_octets(data, q, astop, 0xA4)
    if q < astop and data[q] == 0xA5:
        cstart, cstop, q = _inner(data, q, astop, 0xA5, 0x30)
        checksum, r = _explicit_octets(data, cstart, cstop, 0xA0)
        gstart, gstop, r = _inner(data, r, cstop, 0xA1, 0x30)
        algorithm, g = _oid(data, gstart, gstop)
        if g != gstop and data[g:gstop] != b"\x05\x00":
            raise _Irregular
        if r != cstop:
            raise _Irregular
        pa_checksum2 = (algorithm, checksum)
    if q != astop:
        raise _Irregular
    public_algorithm = dh = ec = None
    if p < stop and data[p] == 0xA1:  # clientPublicValue [1] SubjectPublicKeyInfo
        kstart, kstop, p = _inner(data, p, stop, 0xA1, 0x30)
        public_algorithm, dh, ec = _read_public_value(data, kstart, kstop)
    cms_types = None
    if p < stop and data[p] == 0xA2:  # supportedCMSTypes [2] SEQUENCE OF AlgorithmIdentifier
        lstart, lstop, p = _inner(data, p, stop, 0xA2, 0x30)
        found = []
        q = lstart
        while q < lstop:
            tstart, tstop = _tlv(data, q, lstop, 0x30)
            oid, r = _oid(data, tstart, tstop)
            if r != tstop:
                raise _Irregular  # parameters (an IV, ...): the reference path
            found.append(oid)
            q = tstop
        cms_types = tuple(found)
    client_dh_nonce = None
    if p < stop and data[p] == 0xA3:
        client_dh_nonce, p = _explicit_octets(data, p, stop, 0xA3)
    kdfs = None
    if p < stop and data[p] == 0xA4:  # supportedKDFs [4] SEQUENCE OF KDFAlgorithmId { [0] OID }
        lstart, lstop, p = _inner(data, p, stop, 0xA4, 0x30)
        found = []
        q = lstart
        while q < lstop:
            tstart, tstop = _tlv(data, q, lstop, 0x30)
            kstart, kstop = _tlv(data, tstart, tstop, 0xA0)
            oid, r = _oid(data, kstart, kstop)
            if r != kstop or kstop != tstop:
                raise _Irregular
            found.append(oid)
            q = tstop
        kdfs = tuple(found)
    if p != stop:
        raise _Irregular
    return AuthPackFields(cusec, ctime, nonce, pa_checksum, freshness_token, pa_checksum2, public_algorithm, dh, ec,
                          cms_types, client_dh_nonce, kdfs)


def _read_public_value(data: bytes, start: int, stop: int) -> tuple:
    astart, astop = _tlv(data, start, stop, 0x30)  # AlgorithmIdentifier
    algorithm, p = _oid(data, astart, astop)
    bstart, bstop = _tlv(data, astop, stop, 0x03)  # subjectPublicKey BIT STRING, no unused bits
    if bstop != stop or bstop == bstart or data[bstart] != 0:
        raise _Irregular
    if algorithm == DHPUBLICNUMBER:  # DomainParameters { p, g, q }, y as a DER INTEGER
        dstart, dstop = _tlv(data, p, astop, 0x30)
        if dstop != astop:
            raise _Irregular
        values = []
        q = dstart
        while q < dstop:
            istart, q = _tlv(data, q, dstop, 0x02)
            values.append(_integer(data, istart, q))
        if len(values) != 3:
            raise _Irregular  # j, validationParms or missing q: the reference path
        ystart, ystop = _tlv(data, bstart + 1, bstop, 0x02)
        if ystop != bstop:
            raise _Irregular
        y = _integer(data, ystart, ystop)
        if y <= 0:
            raise _Irregular
        return algorithm, (*values, y), None
    if algorithm == ID_EC_PUBLIC_KEY:  # namedCurve only
        curve, q = _oid(data, p, astop)
        if q != astop:
            raise _Irregular
        return algorithm, None, (curve, data[bstart + 1 : bstop])
    raise _Irregular  # another algorithm: the reference path words the refusal
