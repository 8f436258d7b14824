"""Known external encodings, decoded and re-encoded byte for byte.

MIT: src/tests/asn.1/reference_encode.out and pkinit_encode.out in krb5 (the expected output of
MIT's own encoder on its ktest values: principal hftsai/extra@ATHENA.MIT.EDU, times 19940610060317Z,
key 12345678, "krbASN.1 test message" ciphertext). RFC 8636: section 8 test vectors' OtherInfo,
as reproduced in OpenSSL's test/recipes/30-test_evp_data/evpkdf_ss.txt.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from common.asn1 import Asn1DecodeError, KDCOptions, TicketFlags, decode, decode_as, decode_enc_kdc_rep_part
from common.asn1 import krb5, pkinit
from common.asn1.oids import ID_PKINIT_KDF_AH_SHA1, ID_PKINIT_KDF_AH_SHA256, ID_PKINIT_KDF_AH_SHA512
from common.principal import Principal


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# Recurring MIT pieces, spelled out so the vectors below stay readable.
REALM = "1B 0E 41 54 48 45 4E 41 2E 4D 49 54 2E 45 44 55"  # "ATHENA.MIT.EDU"
PRINC = "30 18 A0 03 02 01 01 A1 11 30 0F 1B 06 68 66 74 73 61 69 1B 05 65 78 74 72 61"  # hftsai/extra
TIME = "18 0F 31 39 39 34 30 36 31 30 30 36 30 33 31 37 5A"  # 19940610060317Z
KEY = "30 11 A0 03 02 01 01 A1 0A 04 08 31 32 33 34 35 36 37 38"
ENC = "30 23 A0 03 02 01 00 A1 03 02 01 05 A2 17 04 15 6B 72 62 41 53 4E 2E 31 20 74 65 73 74 20 6D 65 73 73 61 67 65"
TICKET = f"61 5C 30 5A A0 03 02 01 05 A1 10 {REALM} A2 1A {PRINC} A3 25 {ENC}"
ADDRS = "30 1E 30 0D A0 03 02 01 02 A1 06 04 04 12 D0 00 23 30 0D A0 03 02 01 02 A1 06 04 04 12 D0 00 23"
ADDR = "30 0D A0 03 02 01 02 A1 06 04 04 12 D0 00 23"
AUTHDATA = "30 22 30 0F A0 03 02 01 01 A1 08 04 06 66 6F 6F 62 61 72 30 0F A0 03 02 01 01 A1 08 04 06 66 6F 6F 62 61 72"
PADATA = "30 24 30 10 A1 03 02 01 0D A2 09 04 07 70 61 2D 64 61 74 61 30 10 A1 03 02 01 0D A2 09 04 07 70 61 2D 64 61 74 61"
REQ_BODY = (
    f"30 82 01 A6 A0 07 03 05 00 FE DC BA 90 A1 1A {PRINC} A2 10 {REALM} A3 1A {PRINC} A4 11 {TIME}"
    f" A5 11 {TIME} A6 11 {TIME} A7 03 02 01 2A A8 08 30 06 02 01 00 02 01 01 A9 20 {ADDRS} AA 25 {ENC}"
    f" AB 81 BF 30 81 BC {TICKET} {TICKET}"
)

MIT_MESSAGES = {
    "authenticator": f"62 81 A1 30 81 9E A0 03 02 01 05 A1 10 {REALM} A2 1A {PRINC}"
    " A3 0F 30 0D A0 03 02 01 01 A1 06 04 04 31 32 33 34 A4 05 02 03 01 E2 40"
    f" A5 11 {TIME} A6 13 {KEY} A7 03 02 01 11 A8 24 {AUTHDATA}",
    "authenticator(optionals empty)": f"62 4F 30 4D A0 03 02 01 05 A1 10 {REALM} A2 1A {PRINC} A4 05 02 03 01 E2 40 A5 11 {TIME}",
    "ticket": TICKET,
    "enc_tkt_part": f"63 82 01 14 30 82 01 10 A0 07 03 05 00 FE DC BA 98 A1 13 {KEY} A2 10 {REALM} A3 1A {PRINC}"
    " A4 2E 30 2C A0 03 02 01 01 A1 25 04 23 45 44 55 2C 4D 49 54 2E 2C 41 54 48 45 4E 41 2E 2C 57 41 53"
    f" 48 49 4E 47 54 4F 4E 2E 45 44 55 2C 43 53 2E A5 11 {TIME} A6 11 {TIME} A7 11 {TIME} A8 11 {TIME}"
    f" A9 20 {ADDRS} AA 24 {AUTHDATA}",
    "as_rep": f"6B 81 EA 30 81 E7 A0 03 02 01 05 A1 03 02 01 0B A2 26 {PADATA} A3 10 {REALM} A4 1A {PRINC}"
    f" A5 5E {TICKET} A6 25 {ENC}",
    "tgs_rep(optionals NULL)": f"6D 81 C2 30 81 BF A0 03 02 01 05 A1 03 02 01 0D A3 10 {REALM} A4 1A {PRINC}"
    f" A5 5E {TICKET} A6 25 {ENC}",
    "ap_req": f"6E 81 9D 30 81 9A A0 03 02 01 05 A1 03 02 01 0E A2 07 03 05 00 FE DC BA 98 A3 5E {TICKET} A4 25 {ENC}",
    "ap_rep": f"6F 33 30 31 A0 03 02 01 05 A1 03 02 01 0F A2 25 {ENC}",
    "ap_rep_enc_part": f"7B 36 30 34 A0 11 {TIME} A1 05 02 03 01 E2 40 A2 13 {KEY} A3 03 02 01 11",
    "as_req": f"6A 82 01 E4 30 82 01 E0 A1 03 02 01 05 A2 03 02 01 0A A3 26 {PADATA} A4 82 01 AA {REQ_BODY}",
    "tgs_req(optionals NULL except server)": f"6C 69 30 67 A1 03 02 01 05 A2 03 02 01 0C A4 5B 30 59"
    f" A0 07 03 05 00 FE DC BA 90 A2 10 {REALM} A3 1A {PRINC} A5 11 {TIME} A7 03 02 01 2A A8 08 30 06 02 01 00 02 01 01",
    "safe": f"74 6E 30 6C A0 03 02 01 05 A1 03 02 01 14 A2 4F 30 4D A0 0A 04 08 6B 72 62 35 64 61 74 61 A1 11 {TIME}"
    f" A2 05 02 03 01 E2 40 A3 03 02 01 11 A4 0F {ADDR} A5 0F {ADDR} A3 0F 30 0D A0 03 02 01 01 A1 06 04 04 31 32 33 34",
    "priv": f"75 33 30 31 A0 03 02 01 05 A1 03 02 01 15 A3 25 {ENC}",
    "enc_priv_part": f"7C 4F 30 4D A0 0A 04 08 6B 72 62 35 64 61 74 61 A1 11 {TIME} A2 05 02 03 01 E2 40"
    f" A3 03 02 01 11 A4 0F {ADDR} A5 0F {ADDR}",
    "cred": f"76 81 F6 30 81 F3 A0 03 02 01 05 A1 03 02 01 16 A2 81 BF 30 81 BC {TICKET} {TICKET} A3 25 {ENC}",
    "error": f"7E 81 BA 30 81 B7 A0 03 02 01 05 A1 03 02 01 1E A2 11 {TIME} A3 05 02 03 01 E2 40 A4 11 {TIME}"
    f" A5 05 02 03 01 E2 40 A6 03 02 01 3C A7 10 {REALM} A8 1A {PRINC} A9 10 {REALM} AA 1A {PRINC}"
    " AB 0A 1B 08 6B 72 62 35 64 61 74 61 AC 0A 04 08 6B 72 62 35 64 61 74 61",
}

MIT_ENC_KDC_REP_PART = (  # MIT encodes it with [APPLICATION 26] even for an AS-REP
    f"7A 82 01 0E 30 82 01 0A A0 13 {KEY} A1 36 30 34 30 18 A0 03 02 01 FB A1 11 {TIME} 30 18 A0 03 02 01 FB"
    f" A1 11 {TIME} A2 03 02 01 2A A3 11 {TIME} A4 07 03 05 00 FE DC BA 98 A5 11 {TIME} A6 11 {TIME}"
    f" A7 11 {TIME} A8 11 {TIME} A9 10 {REALM} AA 1A {PRINC} AB 20 {ADDRS}"
)

MIT_TYPES = {
    "kdc_req_body": (krb5.KDC_REQ_BODY, REQ_BODY),
    "keyblock": (krb5.EncryptionKey, KEY),
    "enc_data": (krb5.EncryptedData, ENC),
    "authorization_data": (krb5.AuthorizationData, AUTHDATA),
    "padata_sequence": (krb5.METHOD_DATA, PADATA),
    "padata_sequence(empty)": (krb5.METHOD_DATA, "30 00"),
    "etype_info": (
        krb5.ETYPE_INFO,
        "30 33 30 14 A0 03 02 01 00 A1 0D 04 0B 4D 6F 72 74 6F 6E 27 73 20 23 30 30 05 A0 03 02 01 01"
        " 30 14 A0 03 02 01 02 A1 0D 04 0B 4D 6F 72 74 6F 6E 27 73 20 23 32",
    ),
    "etype_info2": (
        krb5.ETYPE_INFO2,
        "30 51 30 1E A0 03 02 01 00 A1 0D 1B 0B 4D 6F 72 74 6F 6E 27 73 20 23 30 A2 08 04 06 73 32 6B 3A 20 30"
        " 30 0F A0 03 02 01 01 A2 08 04 06 73 32 6B 3A 20 31 30 1E A0 03 02 01 02 A1 0D 1B 0B 4D 6F 72 74 6F 6E"
        " 27 73 20 23 32 A2 08 04 06 73 32 6B 3A 20 32",
    ),
    "pa_enc_ts": (krb5.PA_ENC_TS_ENC, f"30 1A A0 11 {TIME} A1 05 02 03 01 E2 40"),
    "pa_enc_ts (no usec)": (krb5.PA_ENC_TS_ENC, f"30 13 A0 11 {TIME}"),
    "ad_kdcissued": (
        krb5.AD_KDCIssued,
        f"30 65 A0 0F 30 0D A0 03 02 01 01 A1 06 04 04 31 32 33 34 A1 10 {REALM} A2 1A {PRINC} A3 24 {AUTHDATA}",
    ),
    "auth_pack": (
        pkinit.AuthPack,
        f"30 81 93 A0 29 30 27 A0 05 02 03 01 E2 40 A1 11 {TIME} A2 03 02 01 2A A3 06 04 04 31 32 33 34"
        " A1 22 30 20 30 13 06 09 2A 86 48 86 F7 12 01 02 02 04 06 70 61 72 61 6D 73 03 09 00 6B 72 62 35 64 61 74 61"
        " A2 24 30 22 30 13 06 09 2A 86 48 86 F7 12 01 02 02 04 06 70 61 72 61 6D 73 30 0B 06 09 2A 86 48 86 F7 12 01 02 02"
        " A3 0A 04 08 6B 72 62 35 64 61 74 61 A4 10 30 0E 30 0C A0 0A 06 08 6B 72 62 35 64 61 74 61",
    ),
    "kdc_dh_key_info": (pkinit.KDCDHKeyInfo, f"30 25 A0 0B 03 09 00 6B 72 62 35 64 61 74 61 A1 03 02 01 2A A2 11 {TIME}"),
    "reply_key_pack": (pkinit.ReplyKeyPack, f"30 26 A0 13 {KEY} A1 0F 30 0D A0 03 02 01 01 A1 06 04 04 31 32 33 34"),
    "sp80056a_other_info": (
        pkinit.OtherInfo,
        f"30 81 81 30 0B 06 09 2A 86 48 86 F7 12 01 02 02 A0 32 04 30 30 2E A0 10 {REALM} A1 1A {PRINC}"
        f" A1 32 04 30 30 2E A0 10 {REALM} A1 1A {PRINC} A2 0A 04 08 6B 72 62 35 64 61 74 61",
    ),
    "pkinit_supp_pub_info": (
        pkinit.PkinitSuppPubInfo,
        "30 1D A0 03 02 01 01 A1 0A 04 08 6B 72 62 35 64 61 74 61 A2 0A 04 08 6B 72 62 35 64 61 74 61",
    ),
}


@pytest.mark.parametrize("name", sorted(MIT_MESSAGES))
def test_mit_message_decodes_and_reencodes(name):
    data = h(MIT_MESSAGES[name])
    msg = decode(data)
    assert msg.dump() == data
    assert decode(data).dump(force=True) == data


@pytest.mark.parametrize("name", sorted(MIT_TYPES))
def test_mit_type_decodes_and_reencodes(name):
    cls, text = MIT_TYPES[name]
    data = h(text)
    assert decode_as(cls, data).dump(force=True) == data


def test_mit_enc_kdc_rep_part_uses_tag_26():
    data = h(MIT_ENC_KDC_REP_PART)
    part = decode_enc_kdc_rep_part(data)
    assert isinstance(part, krb5.EncTGSRepPart)
    assert part["flags"].native == 0xFEDCBA98
    assert part["last-req"][0]["lr-type"].native == -5
    assert part.dump(force=True) == data


def test_mit_values_read_as_python():
    ticket = decode(h(TICKET))
    assert ticket["realm"].native == "ATHENA.MIT.EDU"
    assert krb5.principal_from_asn1(ticket["sname"], ticket["realm"]) == Principal(("hftsai", "extra"), "ATHENA.MIT.EDU", 1)
    body = decode_as(krb5.KDC_REQ_BODY, h(REQ_BODY))
    assert body["kdc-options"].native == 0xFEDCBA90
    assert KDCOptions.FORWARDABLE in body["kdc-options"].native
    assert body["till"].native == datetime(1994, 6, 10, 6, 3, 17, tzinfo=timezone.utc)
    assert body["etype"].native == [0, 1]
    enc = decode(h(MIT_MESSAGES["enc_tkt_part"]))
    assert TicketFlags.FORWARDABLE in enc["flags"].native


def test_mit_authenticator_built_from_python_values():
    ctime = datetime(1994, 6, 10, 6, 3, 17, tzinfo=timezone.utc)
    name, realm = krb5.principal_to_asn1(Principal(("hftsai", "extra"), "ATHENA.MIT.EDU", 1))
    auth = krb5.Authenticator(
        {
            "crealm": realm,
            "cname": name,
            "cusec": 123456,
            "ctime": ctime,
        }
    )
    assert auth.dump() == h(MIT_MESSAGES["authenticator(optionals empty)"])


def test_mit_pa_pk_as_req_encodes_but_its_placeholder_content_info_is_rejected():
    # MIT's test value puts the string "krb5data" where a ContentInfo belongs.
    data = h(
        "30 38 80 08 6B 72 62 35 64 61 74 61 A1 22 30 20 30 1E 80 08 6B 72 62 35 64 61 74 61 81 08 6B 72 62 35"
        " 64 61 74 61 82 08 6B 72 62 35 64 61 74 61 82 08 6B 72 62 35 64 61 74 61"
    )
    ident = {"subjectName": b"krb5data", "issuerAndSerialNumber": b"krb5data", "subjectKeyIdentifier": b"krb5data"}
    req = pkinit.PA_PK_AS_REQ({"signedAuthPack": b"krb5data", "trustedCertifiers": [ident], "kdcPkId": b"krb5data"})
    assert req.dump() == data
    with pytest.raises(Asn1DecodeError, match=r"PA_PK_AS_REQ\.signedAuthPack"):
        decode_as(pkinit.PA_PK_AS_REQ, data)


def test_mit_pa_pk_as_rep_encodings():
    # The dhInfo vector in this (older) pkinit_encode.out tags serverDHNonce IMPLICIT ("81 08");
    # RFC 4556 (EXPLICIT TAGS) and current MIT (DEFFIELD) tag it explicitly, as we do.
    rep = pkinit.PA_PK_AS_REP(("dhInfo", {"dhSignedData": b"krb5data"}))
    assert rep.dump() == h("A0 0C 30 0A 80 08 6B 72 62 35 64 61 74 61")
    rep = pkinit.PA_PK_AS_REP(("dhInfo", {"dhSignedData": b"krb5data", "serverDHNonce": b"krb5data"}))
    assert rep.dump()[4:] == h("80 08 6B 72 62 35 64 61 74 61 A1 0A 04 08 6B 72 62 35 64 61 74 61")
    assert pkinit.PA_PK_AS_REP(("encKeyPack", b"krb5data")).dump() == h("81 08 6B 72 62 35 64 61 74 61")


RFC8636_CLIENT = Principal(("lha",), "SU.SE", 1)
RFC8636_SERVER = Principal(("krbtgt", "SU.SE"), "SU.SE", 1)  # the RFC's vectors use NT-PRINCIPAL here
RFC8636_INFO = (
    "307e300a0608{oid}a01f041d301ba0071b0553552e5345a110300ea003020101a10730051b036c6861a12904273025a0071b"
    "0553552e5345a11a3018a003020101a111300f1b066b72627467741b0553552e5345a22404223020a0030201{enctype:02x}"
    "a10c040aaaaaaaaaaaaaaaaaaaaaa20b0409bbbbbbbbbbbbbbbbbb"
)


@pytest.mark.parametrize(
    "kdf_oid, oid_hex, enctype",
    [
        (ID_PKINIT_KDF_AH_SHA1, "2b06010502030601", 18),
        (ID_PKINIT_KDF_AH_SHA256, "2b06010502030602", 18),
        (ID_PKINIT_KDF_AH_SHA512, "2b06010502030603", 16),
    ],
)
def test_rfc8636_other_info(kdf_oid, oid_hex, enctype):
    info = pkinit.build_kdf_other_info(kdf_oid, RFC8636_CLIENT, RFC8636_SERVER, enctype, b"\xaa" * 10, b"\xbb" * 9)
    assert info.hex() == RFC8636_INFO.format(oid=oid_hex, enctype=enctype)
