"""Key usage numbers (RFC 4120 7.5.1, plus the PKINIT and FAST ones kerbtel uses)."""

from enum import IntEnum


class KeyUsage(IntEnum):
    PA_ENC_TIMESTAMP = 1
    TICKET = 2  # EncTicketPart, under the service key
    AS_REP_ENC_PART = 3  # EncASRepPart, under the client (or PKINIT reply) key
    TGS_REQ_AUTH_DATA_SESSION_KEY = 4
    TGS_REQ_AUTH_DATA_SUBKEY = 5
    TGS_REQ_AUTH_CKSUM = 6  # checksum over the TGS-REQ body in the PA-TGS-REQ authenticator
    PKINIT_AS_CHECKSUM = 6  # RFC 4556 3.2.3.2: ReplyKeyPack.asChecksum over the AS-REQ
    TGS_REQ_AUTH = 7  # PA-TGS-REQ authenticator
    TGS_REP_ENC_PART_SESSION_KEY = 8
    TGS_REP_ENC_PART_SUBKEY = 9
    AP_REQ_AUTH_CKSUM = 10
    AP_REQ_AUTH = 11
    AP_REP_ENC_PART = 12
    KRB_PRIV_ENC_PART = 13
    KRB_CRED = 14  # EncKrbCredPart
    KRB_SAFE_CHKSUM = 15
    AD_KDC_ISSUED_CHKSUM = 19
    GSS_ACCEPTOR_SEAL = 22  # RFC 4121 2
    GSS_ACCEPTOR_SIGN = 23
    GSS_INITIATOR_SEAL = 24
    GSS_INITIATOR_SIGN = 25
    FAST_REQ_CHKSUM = 50  # RFC 6113 5.4
    FAST_ENC = 51
    FAST_REP = 52
    FAST_FINISHED = 53
    ENC_CHALLENGE_CLIENT = 54
    ENC_CHALLENGE_KDC = 55
