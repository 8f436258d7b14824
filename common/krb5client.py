"""A sans-I/O AS-exchange client: PKINIT (RFC 4556 / 8636 / 8070) or a long-term key
(PA-ENC-TIMESTAMP, RFC 4120 5.2.7.2), plus a small asyncio transport.

    exchange = AsExchange(AsClientConfig(identity=..., client=cta, realm="EXAMPLE.TEST",
                                         anchors=[operator_ca], service=sc))
    request = exchange.start(wallclock=now_utc)
    while True:
        reply = await send_to_kdc(host, port, request)
        step = exchange.receive(reply, wallclock=now_utc)
        if isinstance(step, AsResult):
            break
        request = step.request                      # Retry: freshness token, other DH group

The engine never reads a clock, a socket or a file: requests carry the `wallclock` given to
`start`/`receive` (ctime, till), replies are checked against it. Randomness (nonces, DH keys)
comes from the OS.

With a `KeyIdentity` (keys from a keytab: a signaling controller authenticating to kdcd) the
first request carries PA-ENC-TIMESTAMP under the strongest key (`optimistic`, the default) or no
pre-authentication; a KDC_ERR_PREAUTH_REQUIRED (or PREAUTH_FAILED) with ETYPE-INFO2 selects the
key of the hinted enctype (keytab keys are already derived, so salt and s2kparams are not
needed), and the AS-REP enc-part is decrypted with that long-term key (usage 3, tag 25 or 26).
The reply checks are the same for both identities.

Every check of the reply fails with one `ReplyError` subclass carrying the KRB-ERROR code that
names the problem (KDC certificate, CMS signature, nonce, asChecksum, KDF, names, times); an
error from the KDC itself is `KdcError` with the KDC's code and e-text.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import os
import struct
from dataclasses import dataclass, field

from asn1crypto import algos, cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from common import cms as C
from common.asn1 import (
    Asn1DecodeError,
    ErrorCode,
    KDCOptions,
    PaDataType,
    decode,
    decode_as,
    decode_enc_kdc_rep_part,
    field_bytes,
    oids,
    principal_from_asn1,
    principal_to_asn1,
)
from common.asn1.krb5 import (
    AS_REP,
    AS_REQ,
    ETYPE_INFO,
    ETYPE_INFO2,
    KRB_ERROR,
    METHOD_DATA,
    PA_DATA,
    PA_ENC_TIMESTAMP,
    PA_ENC_TS_ENC,
)
from common.asn1.pkinit import (
    PA_PK_AS_REP,
    PA_PK_AS_REQ,
    TD_DH_PARAMETERS,
    AuthPack,
    ContentInfoOctets,
    build_kdf_other_info,
    decode_dh_public_value,
    decode_enc_key_pack_content,
    dh_client_public_value,
    ec_client_public_value,
    unwrap_kdc_dh_key_info,
    unwrap_reply_key_pack,
)
from common.ccache import Credential
from common.crypto import CryptoError, Key, KeyUsage, decrypt, encrypt, get_enctype, verify_checksum
from common.crypto.dh import DhError, DhGroup, EcdhKeyPair, curve_by_name, group_by_id, group_for_parameters
from common.crypto.pkinit import KDF_HASH_BY_OID, KDF_OID_BY_HASH, octetstring2key, rfc8636_kdf
from common.pki import CertificateError, CertificateVerifier, Purpose
from common.pki.errors import (
    KdcNameMismatch,
    MissingExtendedKeyUsage,
    MissingExtension,
    PrincipalMismatch,
    WrongExtendedKeyUsage,
)
from common.principal import NameType, Principal

__all__ = [
    "AsClientConfig",
    "AsExchange",
    "AsResult",
    "ClientIdentity",
    "KdcCertificateError",
    "KdcError",
    "KdcSignatureError",
    "KeyIdentity",
    "KrbClientError",
    "ReplyError",
    "Retry",
    "TransportError",
    "send_to_kdc",
]

DEFAULT_ENCTYPES = (18, 17, 20, 19, 16)
DEFAULT_KDFS = ("sha256", "sha1", "sha512")
MAX_ROUNDS = 4  # requests per exchange: initial, freshness retry, DH-group retry, one spare
_CMS_TYPE_OIDS = {"des-ede3-cbc": "1.2.840.113549.3.7", "aes128-cbc": "2.16.840.1.101.3.4.1.2",
                  "aes256-cbc": "2.16.840.1.101.3.4.1.42"}

# --- errors ---------------------------------------------------------------------------------------


class KrbClientError(Exception):
    """The AS exchange failed. `code` is a KRB-ERROR code, `text` a human explanation."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{_code_name(code)} ({int(code)}): {text}")
        self.code = int(code)
        self.text = text


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


class KdcError(KrbClientError):
    """The KDC answered with a KRB-ERROR we cannot (or may no longer) recover from."""

    def __init__(self, code: int, text: str, krb_error: KRB_ERROR | None = None) -> None:
        super().__init__(code, text)
        self.krb_error = krb_error


class ReplyError(KrbClientError):
    """The KDC's reply failed a check; the default code is KRB_AP_ERR_MODIFIED."""

    def __init__(self, text: str, code: int = ErrorCode.KRB_AP_ERR_MODIFIED) -> None:
        super().__init__(code, text)


class KdcCertificateError(ReplyError):
    """The KDC's certificate is not trusted for PKINIT (code from common.pki's error)."""

    def __init__(self, text: str, code: int = ErrorCode.KDC_ERR_KDC_NOT_TRUSTED, cause: Exception | None = None):
        super().__init__(text, code)
        self.cause = cause


class KdcSignatureError(ReplyError):
    """The KDC's CMS SignedData does not verify (code from common.cms's error)."""


class TransportError(OSError):
    """The KDC could not be reached or sent something that is not a Kerberos reply."""


# --- configuration and results ------------------------------------------------------------------


@dataclass(frozen=True)
class ClientIdentity:
    """The CTA's PKINIT identity: certificate, private key and intermediate CA certificates."""

    certificate: x509.Certificate
    key: object = field(repr=False)
    intermediates: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class KeyIdentity:
    """A client's long-term keys (one per enctype, e.g. from its keytab) for PA-ENC-TIMESTAMP.

    `kvno` is informational (the keytab's kvno); it is not sent, as MIT's client does not send
    one either, so the KDC picks the key by enctype.
    """

    keys: tuple[Key, ...] = field(repr=False)
    kvno: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        if not self.keys:
            raise ValueError("a key identity needs at least one key")
        enctypes = [k.enctype for k in self.keys]
        if len(set(enctypes)) != len(enctypes):
            raise ValueError(f"one key per enctype, got enctypes {enctypes}")

    @classmethod
    def from_keytab(cls, keytab, principal: Principal) -> KeyIdentity:
        """The keys of `principal` at its highest kvno in `keytab` (a common.keytab.Keytab)."""
        entries = keytab.entries_for(principal)
        if not entries:
            raise ValueError(f"the keytab has no key for {principal}")
        keys: dict[int, Key] = {}
        for entry in entries:
            keys.setdefault(entry.key.enctype, entry.key)
        return cls(tuple(keys.values()), entries[0].kvno)

    @property
    def enctypes(self) -> tuple[int, ...]:
        return tuple(k.enctype for k in self.keys)

    def key(self, enctype: int) -> Key | None:
        for key in self.keys:
            if key.enctype == enctype:
                return key
        return None


@dataclass(frozen=True)
class AsClientConfig:
    """What to ask for and how.

    `identity` is a `ClientIdentity` (PKINIT) or a `KeyIdentity` (PA-ENC-TIMESTAMP; then `mode`,
    `dh_group`, `kdfs`, `cms_types` and `anchors` are unused, and the request offers only the
    enctypes of `enctypes` that the identity has keys for).
    `service` defaults to krbtgt/REALM (NT-SRV-INST); a service principal is sent with the name
    type it carries (Principal.parse gives NT-PRINCIPAL, as MIT's `kinit -S`). `mode` is 'dh'
    (MODP group `dh_group`, 14 by default), 'ecdh' (`ec_curve`) or 'rsa' (key transport).
    `kdfs` are offered as supportedKDFs in order of preference; `anchors` are the CA
    certificates trusted to have issued the KDC certificate. `optimistic` sends PKINIT in the
    first request; otherwise the first request, like MIT's, carries only an empty
    PA-AS-FRESHNESS and PKINIT follows the KDC's PREAUTH_REQUIRED.
    """

    identity: ClientIdentity | KeyIdentity
    client: Principal
    realm: str
    anchors: tuple[x509.Certificate, ...] = ()
    service: Principal | None = None
    mode: str = "dh"
    dh_group: int = 14
    ec_curve: str = "P-256"
    kdfs: tuple[str, ...] = DEFAULT_KDFS
    enctypes: tuple[int, ...] = DEFAULT_ENCTYPES
    lifetime: _dt.timedelta = _dt.timedelta(hours=24)
    kdc_options: int = int(KDCOptions.FORWARDABLE | KDCOptions.RENEWABLE_OK)
    cms_types: tuple[str, ...] = ("aes256-cbc", "des-ede3-cbc")  # the KDC envelopes with the first it can
    max_skew: _dt.timedelta = _dt.timedelta(minutes=5)
    optimistic: bool = True

    def __post_init__(self) -> None:
        for enctype in self.enctypes:
            get_enctype(enctype)
        if isinstance(self.identity, KeyIdentity):
            if not self.request_enctypes:
                raise ValueError(f"the key identity has keys of enctypes {list(self.identity.enctypes)}, "
                                 f"none of them in enctypes {list(self.enctypes)}")
            return
        if self.mode not in ("dh", "ecdh", "rsa"):
            raise ValueError(f"mode must be 'dh', 'ecdh' or 'rsa', not {self.mode!r}")
        if self.mode == "rsa" and not isinstance(self.identity.key, rsa.RSAPrivateKey):
            raise ValueError("RSA key transport needs an RSA client key")
        unknown = [k for k in self.kdfs if k not in KDF_OID_BY_HASH]
        if unknown:
            raise ValueError(f"unknown KDF hash(es) {unknown}; known: {sorted(KDF_OID_BY_HASH)}")
        if not self.anchors:
            raise ValueError("at least one trust anchor for the KDC certificate is needed")

    @property
    def server(self) -> Principal:
        return self.service if self.service is not None else Principal.krbtgt(self.realm)

    @property
    def uses_keys(self) -> bool:
        return isinstance(self.identity, KeyIdentity)

    @property
    def request_enctypes(self) -> tuple[int, ...]:
        """The etype list of the request: with keys, only the enctypes we can decrypt a reply in."""
        if isinstance(self.identity, KeyIdentity):
            held = set(self.identity.enctypes)
            return tuple(e for e in self.enctypes if e in held)
        return self.enctypes


@dataclass(frozen=True)
class Retry:
    """Send `request` (the next AS-REQ) to the KDC; `reason` says why."""

    request: bytes
    reason: str


@dataclass(frozen=True)
class AsResult:
    """A verified AS-REP: the ticket (DER) and what the client needs to use it."""

    client: Principal
    server: Principal
    session_key: Key
    ticket: bytes
    flags: int
    authtime: _dt.datetime
    starttime: _dt.datetime | None
    endtime: _dt.datetime
    renew_till: _dt.datetime | None
    reply_key: Key = field(repr=False)
    kdc_certificate: x509.Certificate | None  # None with a key identity
    mode: str  # 'dh', 'ecdh', 'rsa', or 'enc-timestamp' / 'no-preauth' with a key identity
    kdf: str | None  # 'sha256', ... or None for octetstring2key / RSA mode / key identity

    def to_credential(self) -> Credential:
        def ts(value: _dt.datetime | None) -> int:
            return int(value.timestamp()) if value is not None else 0

        return Credential(
            client=self.client,
            server=self.server,
            key=self.session_key,
            authtime=ts(self.authtime),
            starttime=ts(self.starttime or self.authtime),
            endtime=ts(self.endtime),
            renew_till=ts(self.renew_till),
            ticket_flags=int(self.flags),
            ticket=self.ticket,
        )


# --- the engine -----------------------------------------------------------------------------------


@dataclass
class _Sent:
    """The state of the request in flight: what a reply must match."""

    data: bytes
    nonce: int
    with_pkinit: bool
    dh: object | None  # DhKeyPair or EcdhKeyPair
    enc_ts_key: Key | None = field(default=None, repr=False)  # the key of the PA-ENC-TIMESTAMP sent


def _utc(value: _dt.datetime) -> _dt.datetime:
    if value.tzinfo is None:
        raise ValueError("wallclock must be a timezone-aware datetime")
    return value.astimezone(_dt.timezone.utc)


class AsExchange:
    """One PKINIT AS exchange: `start()`, then `receive()` each reply until an `AsResult`."""

    def __init__(self, config: AsClientConfig) -> None:
        self.config = config
        self._verifier = CertificateVerifier(config.anchors) if not config.uses_keys else None
        self._tried_keys: set[int] = set()  # enctypes of the PA-ENC-TIMESTAMPs sent
        self._group: DhGroup | None = group_by_id(config.dh_group) if config.mode == "dh" else None
        self._freshness_token: bytes | None = None
        self._cookie: bytes | None = None
        self._rounds = 0
        self._sent: _Sent | None = None
        self._group_retried = False
        self.result: AsResult | None = None

    # -- requests --------------------------------------------------------------------------

    def start(self, *, wallclock: _dt.datetime) -> bytes:
        """The first AS-REQ."""
        if self._sent is not None:
            raise RuntimeError("the exchange has already started")
        if self.config.uses_keys:
            key = self._strongest_key() if self.config.optimistic else None
            return self._request(_utc(wallclock), with_pkinit=False, enc_ts_key=key)
        return self._request(_utc(wallclock), with_pkinit=self.config.optimistic)

    def _strongest_key(self) -> Key:
        """Our key of the first enctype in the configured order (the identity has it)."""
        return self.config.identity.key(self.config.request_enctypes[0])

    def _request(self, wallclock: _dt.datetime, *, with_pkinit: bool, enc_ts_key: Key | None = None) -> bytes:
        self._rounds += 1
        if self._rounds > MAX_ROUNDS:
            raise KrbClientError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"no ticket after {MAX_ROUNDS} requests")
        cfg = self.config
        nonce = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF  # MIT keeps nonces positive
        cname, _ = principal_to_asn1(cfg.client.with_name_type(NameType.PRINCIPAL)
                                     if cfg.client.name_type == NameType.UNKNOWN else cfg.client)
        sname, _ = principal_to_asn1(cfg.server)
        body = {
            "kdc-options": cfg.kdc_options,
            "cname": cname,
            "realm": cfg.realm,
            "sname": sname,
            "till": (wallclock + cfg.lifetime).replace(microsecond=0),
            "nonce": nonce,
            "etype": list(cfg.request_enctypes),
        }
        # Build once without padata to get the req-body DER that paChecksum covers.
        body_der = decode(AS_REQ({"req-body": body}).dump(force=True)).req_body_bytes()
        padata = []
        key_pair = None
        if with_pkinit:
            pk_req, key_pair = self._pa_pk_as_req(wallclock, nonce, hashlib.sha1(body_der).digest())
            padata.append(PA_DATA({"padata-type": PaDataType.PA_PK_AS_REQ, "padata-value": pk_req}))
        if enc_ts_key is not None:
            self._tried_keys.add(enc_ts_key.enctype)
            padata.append(PA_DATA({"padata-type": PaDataType.PA_ENC_TIMESTAMP,
                                   "padata-value": _pa_enc_timestamp(enc_ts_key, wallclock)}))
        if self._freshness_token is None and not cfg.uses_keys:
            padata.append(PA_DATA({"padata-type": PaDataType.PA_AS_FRESHNESS, "padata-value": b""}))
        if self._cookie is not None:
            padata.append(PA_DATA({"padata-type": PaDataType.PA_FX_COOKIE, "padata-value": self._cookie}))
        req = AS_REQ({"padata": METHOD_DATA(padata), "req-body": body} if padata else {"req-body": body})
        data = req.dump(force=True)
        if decode(data).req_body_bytes() != body_der:  # paChecksum must cover the body as sent
            raise RuntimeError("KDC-REQ-BODY encoding changed between checksum and request")
        self._sent = _Sent(data, nonce, with_pkinit, key_pair, enc_ts_key)
        return data

    def _pa_pk_as_req(self, wallclock: _dt.datetime, nonce: int, pa_checksum: bytes):
        cfg = self.config
        authenticator = {
            "cusec": wallclock.microsecond,
            "ctime": wallclock.replace(microsecond=0),
            "nonce": nonce,
            "paChecksum": pa_checksum,
        }
        if self._freshness_token is not None:
            authenticator["freshnessToken"] = self._freshness_token
        pack = {
            "pkAuthenticator": authenticator,
            "supportedCMSTypes": [algos.AlgorithmIdentifier({"algorithm": _CMS_TYPE_OIDS[t]}) for t in cfg.cms_types],
            "supportedKDFs": [{"kdf-id": KDF_OID_BY_HASH[k]} for k in cfg.kdfs],
        }
        key_pair = None
        if cfg.mode == "dh":
            key_pair = self._group.generate_key_pair()
            pack["clientPublicValue"] = dh_client_public_value(
                self._group.p, self._group.g, self._group.q, key_pair.public_value
            )
        elif cfg.mode == "ecdh":
            key_pair = EcdhKeyPair.generate(curve_by_name(cfg.ec_curve))
            pack["clientPublicValue"] = ec_client_public_value(key_pair.curve.oid, key_pair.public_point)
        auth_pack = AuthPack(pack).dump(force=True)
        signed = C.sign_signed_data(
            auth_pack, oids.ID_PKINIT_AUTHDATA, cfg.identity.certificate, cfg.identity.key,
            certificates=cfg.identity.intermediates,
        )
        pk_req = PA_PK_AS_REQ({"signedAuthPack": ContentInfoOctets(C.content_info(signed))})
        return pk_req.dump(), key_pair  # fresh values: force would re-encode the embedded certificates

    # -- replies ---------------------------------------------------------------------------

    def receive(self, data: bytes, *, wallclock: _dt.datetime) -> Retry | AsResult:
        """Process the KDC's reply to the last request: the next request to send, or the result."""
        if self._sent is None:
            raise RuntimeError("receive() before start()")
        if self.result is not None:
            raise RuntimeError("the exchange is complete")
        wallclock = _utc(wallclock)
        try:
            message = decode(bytes(data))
        except Asn1DecodeError as exc:
            raise ReplyError(f"reply does not decode: {exc}") from None
        if isinstance(message, KRB_ERROR):
            if self.config.uses_keys:
                return self._on_error_keys(message, wallclock)
            return self._on_error(message, wallclock)
        if not isinstance(message, AS_REP):
            raise ReplyError(f"expected AS-REP or KRB-ERROR, got {type(message).__name__}")
        if self.config.uses_keys:
            self.result = self._on_reply_keys(message, wallclock)
            return self.result
        if not self._sent.with_pkinit:
            raise ReplyError("AS-REP to a request without pre-authentication", ErrorCode.KDC_ERR_PREAUTH_FAILED)
        self.result = self._on_reply(message, wallclock)
        return self.result

    def _on_error(self, err: KRB_ERROR, wallclock: _dt.datetime) -> Retry:
        code = err["error-code"].native
        text = err["e-text"].native or ""
        if code == ErrorCode.KDC_ERR_PREAUTH_REQUIRED:
            try:
                methods = err.method_data() or []
            except (Asn1DecodeError, ValueError) as exc:
                raise KdcError(code, f"PREAUTH_REQUIRED with undecodable METHOD-DATA: {exc}", err) from None
            by_type = {m["padata-type"].native: m["padata-value"].native for m in methods}
            if PaDataType.PA_PK_AS_REQ not in by_type:
                raise KdcError(code, f"the KDC does not offer PKINIT (offers {sorted(by_type)})", err)
            token = by_type.get(PaDataType.PA_AS_FRESHNESS) or None
            cookie = by_type.get(PaDataType.PA_FX_COOKIE) or None
            if self._sent.with_pkinit and (token is None or token == self._freshness_token):
                raise KdcError(code, f"the KDC refused our PKINIT request {text!r}".strip(), err)
            self._freshness_token = token
            self._cookie = cookie
            reason = "freshness token" if token else "PKINIT offered"
            return Retry(self._request(wallclock, with_pkinit=True), reason)
        if code == ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED and self.config.mode == "dh":
            if self._group_retried:
                raise KdcError(code, "the KDC refused our second DH group too", err)
            self._group = self._acceptable_group(err)
            self._group_retried = True
            return Retry(self._request(wallclock, with_pkinit=True), f"DH group {self._group.group_id}")
        raise KdcError(code, text or _code_name(code), err)

    def _acceptable_group(self, err: KRB_ERROR) -> DhGroup:
        code = ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED
        try:
            typed = err.typed_data() or []
            for entry in typed:
                if entry["data-type"].native != PaDataType.TD_DH_PARAMETERS:
                    continue
                for alg in decode_as(TD_DH_PARAMETERS, entry["data-value"].native):
                    params = alg["parameters"]
                    try:
                        q = params["q"].native if "q" in params else None
                        return group_for_parameters(params["p"].native, params["g"].native, q)
                    except DhError:
                        continue
        except (Asn1DecodeError, ValueError, KeyError, TypeError) as exc:
            raise KdcError(code, f"undecodable TD-DH-PARAMETERS: {exc}", err) from None
        raise KdcError(code, "the KDC offers no DH group we support", err)

    def _verify_kdc(self, verified: C.VerifiedSignedData, wallclock: _dt.datetime) -> x509.Certificate:
        """RFC 4556 3.2.4: the KDC certificate chains to an anchor and either carries the
        id-pkinit-KPKdc EKU or names krbtgt/REALM@REALM in id-pkinit-san (as MIT accepts)."""
        cert = verified.signer_certificate
        krbtgt = Principal.krbtgt(self.config.realm)
        try:
            try:
                self._verifier.verify(cert, verified.intermediates, now=wallclock, purpose=Purpose.KDC)
            except (KdcNameMismatch, MissingExtension):
                # EKU was fine (checked before names) but no krbtgt SAN: EKU suffices.
                self._verifier.verify(cert, verified.intermediates, now=wallclock, purpose=Purpose.ANY)
            except (WrongExtendedKeyUsage, MissingExtendedKeyUsage) as eku_error:
                # No KPKdc EKU: the certificate must then name krbtgt/REALM@REALM.
                try:
                    self._verifier.verify(cert, verified.intermediates, now=wallclock, purpose=Purpose.ANY,
                                          expected_principal=krbtgt)
                except PrincipalMismatch as exc:
                    raise KdcNameMismatch(f"{exc}; and {eku_error}", cert) from None
        except CertificateError as exc:
            raise KdcCertificateError(f"KDC certificate: {exc}", exc.krb_error_code, exc) from None
        return cert

    def _verify_signed(self, signed, content_type: str, wallclock: _dt.datetime):
        try:
            verified = C.verify_signed_data(signed, expected_content_type=content_type)
        except C.CmsError as exc:
            raise KdcSignatureError(f"KDC SignedData: {exc}", exc.krb_error_code) from None
        return verified, self._verify_kdc(verified, wallclock)

    def _on_reply(self, rep: AS_REP, wallclock: _dt.datetime) -> AsResult:
        cfg = self.config
        sent = self._sent
        pk_rep_bytes = None
        for item in rep["padata"] if rep["padata"].native is not None else []:
            if item["padata-type"].native == PaDataType.PA_PK_AS_REP:
                pk_rep_bytes = item["padata-value"].native
        if pk_rep_bytes is None:
            raise ReplyError("AS-REP without PA-PK-AS-REP", ErrorCode.KDC_ERR_PREAUTH_FAILED)
        enc_part = rep["enc-part"]
        enctype = enc_part["etype"].native
        if enctype not in cfg.enctypes:
            raise ReplyError(f"AS-REP enc-part uses enctype {enctype}, which we did not offer",
                             ErrorCode.KDC_ERR_ETYPE_NOSUPP)
        try:
            pk_rep = decode_as(PA_PK_AS_REP, pk_rep_bytes)
        except Asn1DecodeError as exc:
            raise ReplyError(f"PA-PK-AS-REP: {exc}") from None

        kdf = None
        if pk_rep.name == "dhInfo":
            if cfg.mode == "rsa":
                raise ReplyError("DH reply to an RSA key-transport request")
            reply_key, kdc_cert, kdf = self._dh_reply_key(pk_rep.chosen, pk_rep_bytes, enctype, wallclock)
        else:
            if cfg.mode != "rsa":
                raise ReplyError("key-transport reply to a DH request")
            reply_key, kdc_cert = self._rsa_reply_key(pk_rep.chosen.parsed, enctype, wallclock)

        try:
            plain = decrypt(reply_key, KeyUsage.AS_REP_ENC_PART, enc_part["cipher"].native)
        except CryptoError:
            raise ReplyError("the AS-REP enc-part does not decrypt with the PKINIT reply key") from None
        return self._finish(rep, plain, reply_key, wallclock, kdc_certificate=kdc_cert, mode=cfg.mode, kdf=kdf)

    def _finish(self, rep: AS_REP, plain: bytes, reply_key: Key, wallclock: _dt.datetime, *,
                kdc_certificate: x509.Certificate | None, mode: str, kdf: str | None) -> AsResult:
        """The checks every AS-REP gets once its enc-part decrypted: nonce, names, times."""
        cfg = self.config
        sent = self._sent
        try:
            part = decode_enc_kdc_rep_part(plain, padded=True)
            part.native  # parse every field now, inside the try
        except (Asn1DecodeError, ValueError) as exc:
            raise ReplyError(f"EncKDCRepPart: {exc}") from None

        if part["nonce"].native != sent.nonce:
            raise ReplyError(f"EncKDCRepPart nonce {part['nonce'].native} is not the request's {sent.nonce}")
        cname = principal_from_asn1(rep["cname"], rep["crealm"])
        if not cname.same_name(cfg.client):
            raise ReplyError(f"AS-REP is for {cname}, not {cfg.client}", ErrorCode.KDC_ERR_CLIENT_NAME_MISMATCH)
        sname = principal_from_asn1(part["sname"], part["srealm"])
        ticket_sname = principal_from_asn1(rep["ticket"]["sname"], rep["ticket"]["realm"])
        if not sname.same_name(cfg.server) or not ticket_sname.same_name(cfg.server):
            raise ReplyError(f"AS-REP is for service {sname} (ticket {ticket_sname}), not {cfg.server}")
        authtime = part["authtime"].native
        starttime = part["starttime"].native
        endtime = part["endtime"].native
        skew = cfg.max_skew
        if endtime <= wallclock:
            raise ReplyError(f"ticket already expired at {endtime:%Y-%m-%dT%H:%M:%SZ}", ErrorCode.KRB_AP_ERR_SKEW)
        if abs((authtime - wallclock).total_seconds()) > skew.total_seconds():
            raise ReplyError(f"KDC authtime {authtime:%Y-%m-%dT%H:%M:%SZ} is outside the clock skew",
                             ErrorCode.KRB_AP_ERR_SKEW)
        if starttime is not None and starttime > wallclock + skew:
            raise ReplyError("the ticket starts in the future (postdated tickets were not asked for)")
        return AsResult(
            client=cname,
            server=sname,
            session_key=part["key"].to_key(),
            ticket=field_bytes(rep, "ticket"),
            flags=int(part["flags"].native),
            authtime=authtime,
            starttime=starttime,
            endtime=endtime,
            renew_till=part["renew-till"].native,
            reply_key=reply_key,
            kdc_certificate=kdc_certificate,
            mode=mode,
            kdf=kdf,
        )

    # -- PA-ENC-TIMESTAMP (key identity) ---------------------------------------------------

    def _on_error_keys(self, err: KRB_ERROR, wallclock: _dt.datetime) -> Retry:
        code = err["error-code"].native
        text = err["e-text"].native or ""
        optimistic_first = self._rounds == 1 and self._sent.enc_ts_key is not None
        if code == ErrorCode.KDC_ERR_ETYPE_NOSUPP and optimistic_first:
            # The KDC has no key of our strongest enctype: ask without pre-authentication, and
            # let PREAUTH_REQUIRED's ETYPE-INFO2 name the enctype it has.
            return Retry(self._request(wallclock, with_pkinit=False), "optimistic enctype refused")
        if code not in (ErrorCode.KDC_ERR_PREAUTH_REQUIRED, ErrorCode.KDC_ERR_PREAUTH_FAILED):
            raise KdcError(code, text or _code_name(code), err)
        try:
            methods = err.method_data() or []
            by_type = {m["padata-type"].native: m["padata-value"].native for m in methods}
            hints = _etype_hints(by_type)
        except (Asn1DecodeError, ValueError, KeyError, TypeError) as exc:
            raise KdcError(code, f"{_code_name(code)} with undecodable METHOD-DATA: {exc}", err) from None
        if code == ErrorCode.KDC_ERR_PREAUTH_REQUIRED and PaDataType.PA_ENC_TIMESTAMP not in by_type:
            raise KdcError(code, f"the KDC does not offer PA-ENC-TIMESTAMP for {self.config.client} "
                                 f"(offers {sorted(by_type)})", err)
        key = self._hinted_key(hints)
        if key is None:
            if hints:
                raise KdcError(code, f"the KDC wants a key of enctype {hints}, which we do not hold "
                                     f"(we have {list(self.config.identity.enctypes)})", err)
            if code == ErrorCode.KDC_ERR_PREAUTH_REQUIRED and self._sent.enc_ts_key is None:
                key = self._strongest_key()  # no hint: RFC 4120 says use the default salt; keys need none
        if key is None or key.enctype in self._tried_keys:
            # Our PA-ENC-TIMESTAMP under this key was refused: the key is not the KDC's.
            tried = ", ".join(str(e) for e in sorted(self._tried_keys)) or "none"
            raise KdcError(ErrorCode.KDC_ERR_PREAUTH_FAILED,
                           f"the KDC refused our PA-ENC-TIMESTAMP (enctypes tried: {tried}; KDC said "
                           f"{_code_name(code)} {text!r}): is the keytab current?", err)
        self._cookie = by_type.get(PaDataType.PA_FX_COOKIE) or self._cookie
        return Retry(self._request(wallclock, with_pkinit=False, enc_ts_key=key), f"PA-ENC-TIMESTAMP etype {key.enctype}")

    def _hinted_key(self, hints: list[int]) -> Key | None:
        """Our key of the first hinted enctype we hold and offered."""
        for enctype in hints:
            if enctype in self.config.request_enctypes:
                return self.config.identity.key(enctype)
        return None

    def _on_reply_keys(self, rep: AS_REP, wallclock: _dt.datetime) -> AsResult:
        cfg = self.config
        enc_part = rep["enc-part"]
        enctype = enc_part["etype"].native
        if enctype not in cfg.request_enctypes:
            raise ReplyError(f"AS-REP enc-part uses enctype {enctype}, which we did not offer",
                             ErrorCode.KDC_ERR_ETYPE_NOSUPP)
        sent_key = self._sent.enc_ts_key
        # The reply key is our long-term key of the enc-part's enctype (normally the one of the
        # PA-ENC-TIMESTAMP): that it decrypts, with our nonce inside, is what authenticates the KDC.
        reply_key = cfg.identity.key(enctype)
        try:
            plain = decrypt(reply_key, KeyUsage.AS_REP_ENC_PART, enc_part["cipher"].native)
        except CryptoError:
            raise ReplyError(f"the AS-REP enc-part does not decrypt with our enctype {enctype} key") from None
        mode = "enc-timestamp" if sent_key is not None else "no-preauth"
        return self._finish(rep, plain, reply_key, wallclock, kdc_certificate=None, mode=mode, kdf=None)

    def _dh_reply_key(self, dh_info, pk_rep_bytes: bytes, enctype: int, wallclock: _dt.datetime):
        cfg = self.config
        content_info = dh_info["dhSignedData"].parsed
        verified, kdc_cert = self._verify_signed(content_info, oids.ID_PKINIT_DHKEYDATA, wallclock)
        try:
            _, key_info = unwrap_kdc_dh_key_info(content_info)
        except Asn1DecodeError as exc:
            raise ReplyError(f"KDCDHKeyInfo: {exc}") from None
        if key_info["nonce"].native != self._sent.nonce:
            raise ReplyError(f"KDCDHKeyInfo nonce {key_info['nonce'].native} is not our pkAuthenticator nonce")
        expiration = key_info["dhKeyExpiration"].native
        if expiration is not None and expiration <= wallclock:
            raise ReplyError("the KDC's DH key has expired (dhKeyExpiration)")
        public = key_info["subjectPublicKey"].native
        pair = self._sent.dh
        try:
            if cfg.mode == "dh":
                z = pair.shared_secret(decode_dh_public_value(public))
            else:
                z = pair.shared_secret(public)
        except (DhError, Asn1DecodeError) as exc:
            raise ReplyError(f"KDC public value: {exc}", ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED) from None
        server_nonce = dh_info["serverDHNonce"].native
        kdf_id = dh_info["kdf"]
        if kdf_id.native is not None:
            oid = kdf_id["kdf-id"].dotted
            name = KDF_HASH_BY_OID.get(oid)
            if name is None or name not in cfg.kdfs:
                raise ReplyError(f"the KDC chose KDF {oid}, which we did not offer", ErrorCode.KDC_ERR_NO_ACCEPTABLE_KDF)
            other_info = build_kdf_other_info(oid, cfg.client, cfg.server, enctype, self._sent.data, pk_rep_bytes)
            return rfc8636_kdf(name, z, other_info, enctype), kdc_cert, name
        return octetstring2key(z, enctype, b"", server_nonce or b""), kdc_cert, None

    def _rsa_reply_key(self, content_info: cms.ContentInfo, enctype: int, wallclock: _dt.datetime):
        cfg = self.config
        try:
            plain = C.open_envelope(content_info, cfg.identity.key, cfg.identity.certificate)
            signed = decode_enc_key_pack_content(plain)
        except C.CmsError as exc:
            raise ReplyError(f"encKeyPack: {exc}", exc.krb_error_code) from None
        except Asn1DecodeError as exc:
            raise ReplyError(f"encKeyPack content: {exc}") from None
        _, kdc_cert = self._verify_signed(signed, oids.ID_PKINIT_RKEYDATA, wallclock)
        try:
            pack = unwrap_reply_key_pack(signed)
            reply_key = pack["replyKey"].to_key()
            checksum = pack["asChecksum"]
            cksumtype, value = checksum["cksumtype"].native, checksum["checksum"].native
        except (Asn1DecodeError, ValueError) as exc:
            raise ReplyError(f"ReplyKeyPack: {exc}") from None
        if reply_key.enctype != enctype:
            raise ReplyError(f"replyKey enctype {reply_key.enctype} differs from the enc-part's {enctype}")
        try:
            get_enctype(reply_key.enctype)
            if get_enctype(reply_key.enctype).checksum_type != cksumtype:
                raise CryptoError(f"asChecksum type {cksumtype} is not the replyKey's checksum type")
            verify_checksum(cksumtype, reply_key, KeyUsage.PKINIT_AS_CHECKSUM, self._sent.data, value)
        except CryptoError as exc:
            raise ReplyError(f"asChecksum over the AS-REQ does not verify: {exc}") from None
        return reply_key, kdc_cert


def _pa_enc_timestamp(key: Key, wallclock: _dt.datetime) -> bytes:
    """PA-ENC-TIMESTAMP (RFC 4120 5.2.7.2): PA-ENC-TS-ENC under the client key, usage 1, no kvno."""
    ts = PA_ENC_TS_ENC({"patimestamp": wallclock.replace(microsecond=0), "pausec": wallclock.microsecond}).dump()
    return PA_ENC_TIMESTAMP({"etype": key.enctype, "cipher": encrypt(key, KeyUsage.PA_ENC_TIMESTAMP, ts)}).dump()


def _etype_hints(by_type: dict[int, bytes]) -> list[int]:
    """Enctypes the KDC names in PA-ETYPE-INFO2 (preferred) or PA-ETYPE-INFO, in its order."""
    if by_type.get(PaDataType.PA_ETYPE_INFO2):
        return [entry["etype"].native for entry in decode_as(ETYPE_INFO2, by_type[PaDataType.PA_ETYPE_INFO2])]
    if by_type.get(PaDataType.PA_ETYPE_INFO):
        return [entry["etype"].native for entry in decode_as(ETYPE_INFO, by_type[PaDataType.PA_ETYPE_INFO])]
    return []


# --- transport ------------------------------------------------------------------------------------

MAX_TCP_REPLY = 1 << 20


async def _tcp_exchange(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack(">I", len(data)) + data)
        await writer.drain()
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        if length & 0x80000000:
            raise TransportError("KDC reply length has the reserved high bit set")
        if length > MAX_TCP_REPLY:
            raise TransportError(f"KDC reply of {length} bytes exceeds {MAX_TCP_REPLY}")
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise TransportError(f"KDC closed the connection after {len(exc.partial)} bytes") from None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _udp_exchange(host: str, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_UdpClient, remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await protocol.reply
    finally:
        transport.close()


def _is_response_too_big(reply: bytes) -> bool:
    try:
        message = decode(reply)
    except Asn1DecodeError:
        return False
    return isinstance(message, KRB_ERROR) and message["error-code"].native == ErrorCode.KRB_ERR_RESPONSE_TOO_BIG


async def send_to_kdc(host: str, port: int, data: bytes, *, transport: str = "tcp", timeout: float = 10.0) -> bytes:
    """Send one Kerberos request and return the reply bytes.

    TCP uses RFC 4120 7.2.2 framing (4-byte big-endian length). UDP sends one datagram and, when
    the KDC answers KRB_ERR_RESPONSE_TOO_BIG, repeats the request over TCP. Raises
    TransportError (an OSError) on connection problems and TimeoutError after `timeout` seconds.
    """
    if transport not in ("tcp", "udp"):
        raise ValueError("transport must be 'tcp' or 'udp'")
    async with asyncio.timeout(timeout):
        try:
            if transport == "udp":
                reply = await _udp_exchange(host, port, data)
                if not _is_response_too_big(reply):
                    return reply
            return await _tcp_exchange(host, port, data)
        except TransportError:
            raise
        except OSError as exc:
            raise TransportError(f"KDC {host}:{port}: {exc}") from exc
