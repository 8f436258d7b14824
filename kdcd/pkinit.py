"""The KDC side of PKINIT (RFC 4556, RFC 8636 KDFs, RFC 8070 freshness, RFC 5349 ECDH, MS-PKCA
paChecksum2), sans-I/O.

`PkinitServer.verify(...)` checks a PA-PK-AS-REQ and decides whether the certificate is honoured
(the seed's customer-database rule); `PkinitServer.reply(...)` builds the PA-PK-AS-REP and the
AS reply key in one of three modes:

- DH: clientPublicValue is dhpublicnumber with an RFC 3526 group of at least `dh_min_bits`;
- ECDH: clientPublicValue is id-ecPublicKey on an allowed named curve;
- RSA key transport: no clientPublicValue; a random reply key in a ReplyKeyPack signed by the
  KDC, enveloped to the client certificate (encKeyPack content is the bare SignedData, as MIT).

Every refusal is a `KrbError` with the RFC 4556 code; see docs/protocol.md for the choices.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from asn1crypto import keys
from cryptography import x509

from common import cms
from common.asn1 import ErrorCode, PaDataType, encode, oids
from common.asn1.pkinit import TD_DH_PARAMETERS, DomainParameters, decode_dh_public_value, encode_dh_public_value
from common.crypto import Key, KeyUsage, generate_key, make_checksum, required_checksum_type
from common.crypto.dh import DH_GROUPS, DhError, DhGroup, DhKeyPair, EcCurve, EcdhKeyPair, curve_by_name, curve_by_oid, group_for_parameters
from common.crypto.pkinit import KDF_HASH_BY_OID, KDF_OID_BY_HASH, octetstring2key, rfc8636_kdf
from common.pki import (
    CertificateError,
    CertificateVerifier,
    Purpose,
    Role,
    TrustAnchor,
    VerifiedCertificate,
    format_mac,
    load_certificates,
    load_private_key,
    thumbprint,
)
from common.principal import Principal
from kdcd.caches import CachedCertificate, CertificateCache, ReplayCache, principal_text
from kdcd.auth_pack import ClientAuthPack, MalformedAuthPack, SignedAuthPackReader, client_auth_pack, read_reference
from kdcd.db import Customer, CustomerStatus, DeviceStatus, ThumbprintMismatch
from common.krberror import KrbError, typed_data
from kdcd.freshness import FreshnessError, FreshnessTokens
from common.crypto.legendre import check_public_value
from kdcd.policy import KdcPolicy

__all__ = ["PkinitClient", "PkinitCredentials", "PkinitReply", "PkinitServer"]

_PA_CHECKSUM2_DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_CMS_CIPHER_BY_OID = {  # supportedCMSTypes the KDC can envelope with, strongest first
    "2.16.840.1.101.3.4.1.42": "aes256-cbc",
    "2.16.840.1.101.3.4.1.2": "aes128-cbc",
    "1.2.840.113549.3.7": "des-ede3-cbc",
}


@dataclass(frozen=True)
class PkinitCredentials:
    """The KDC's certificate, key and trust anchors, loaded once (the engine does no file I/O)."""

    certificate: x509.Certificate
    private_key: object = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()  # intermediates sent after the KDC certificate
    manufacturer_anchors: tuple[x509.Certificate, ...] = ()
    operator_anchors: tuple[x509.Certificate, ...] = ()

    @classmethod
    def load(cls, policy: KdcPolicy) -> PkinitCredentials:
        """Read the PEM files the policy names (OSError / ValueError with the path on failure)."""
        if policy.kdc_certificate is None or policy.kdc_private_key is None:
            raise ValueError("PKINIT needs kdc_certificate and kdc_private_key")
        certs = load_certificates(policy.kdc_certificate)
        if not certs:
            raise ValueError(f"{policy.kdc_certificate}: no certificate")

        def anchors(paths: tuple[Path, ...]) -> tuple[x509.Certificate, ...]:
            return tuple(c for p in paths for c in load_certificates(p))

        return cls(
            certificate=certs[0],
            private_key=load_private_key(policy.kdc_private_key),
            chain=tuple(certs[1:]),
            manufacturer_anchors=anchors(policy.manufacturer_anchors),
            operator_anchors=anchors(policy.operator_anchors),
        )

    def verifier(self) -> CertificateVerifier:
        trust = [TrustAnchor(c, Role.MANUFACTURER) for c in self.manufacturer_anchors]
        trust += [TrustAnchor(c, Role.OPERATOR) for c in self.operator_anchors]
        if not trust:
            raise ValueError("PKINIT needs at least one manufacturer or operator trust anchor")
        return CertificateVerifier(trust)


@dataclass(frozen=True)
class PkinitClient:
    """A PKINIT request that verified and is honoured."""

    auth_pack: ClientAuthPack
    verified: VerifiedCertificate
    restricted: bool  # manufacturer certificate: an unprovisioned CTA
    customer_ids: tuple[int, ...]
    from_cache: bool
    customers: tuple[Customer, ...] = ()  # the records the customer rule read (operator certificates)


@dataclass(frozen=True)
class PkinitReply:
    pa_value: bytes  # DER PA-PK-AS-REP
    reply_key: Key
    mode: str  # "dh", "ecdh" or "rsa"


@dataclass
class _ReusableKey:
    key_pair: DhKeyPair | EcdhKeyPair
    expires: float  # monotonic
    expires_wall: datetime


def _cert_hint(verified: VerifiedCertificate) -> str:
    return verified.thumbprint[:8].hex()


class PkinitServer:
    def __init__(
        self,
        policy: KdcPolicy,
        credentials: PkinitCredentials,
        db,
        freshness: FreshnessTokens,
        *,
        rng: Callable[[int], bytes],
    ) -> None:
        self.policy = policy
        self.credentials = credentials
        self.db = db
        self.freshness = freshness
        self.rng = rng
        self.verifier = credentials.verifier()
        self.certificate_cache = CertificateCache(policy.certificate_cache_size)
        self.replay_cache = ReplayCache(policy.replay_cache_size, lifetime=2 * policy.max_skew + 1)
        self._auth_pack_reader = SignedAuthPackReader()
        self._reusable: dict[object, _ReusableKey] = {}
        self._revoked = frozenset(bytes.fromhex(t) for t in policy.revoked_certificates)
        self._kdf_oids = [KDF_OID_BY_HASH[name] for name in policy.kdf_preference]
        try:  # the KDC's signer template (pre-encoded certificates, sid, algorithms), built once
            self._signer = cms.signer(credentials.certificate, credentials.private_key, certificates=credentials.chain)
        except cms.UnsupportedAlgorithm:
            self._signer = None

    # --- verification ----------------------------------------------------------------------

    def verify(
        self, pa_value: bytes, *, cname: Principal, req_body: bytes, nonce: int, wallclock: datetime, now: float, peer: str
    ) -> PkinitClient:
        # The fast reader succeeds or says nothing; then the reference path reads and checks
        # again and words the refusal (kdcd/auth_pack.py).
        fast = self._auth_pack_reader.read(pa_value)
        if fast is not None:
            signed_ok, thumb, auth = fast.signed, fast.thumbprint, fast.auth_pack
        else:
            signed_ok, thumb, auth = self._verify_reference(pa_value)

        # The pkAuthenticator: time, nonce, checksum over the KDC-REQ-BODY as received.
        ctime, cusec = auth.ctime, auth.cusec
        client_time = ctime + timedelta(microseconds=cusec)
        skew = abs((wallclock - client_time).total_seconds())
        if skew > self.policy.max_skew:
            raise KrbError(
                ErrorCode.KRB_AP_ERR_SKEW,
                f"pkAuthenticator time is {skew:.0f} s from the KDC's clock (limit {self.policy.max_skew} s)",
                ctime=ctime,
                cusec=cusec,
            )
        pa_checksum = auth.pa_checksum
        if pa_checksum is None:
            raise KrbError(ErrorCode.KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED, "pkAuthenticator has no paChecksum")
        if not hmac.compare_digest(pa_checksum, hashlib.sha1(req_body).digest()):
            raise KrbError(ErrorCode.KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED, "paChecksum does not match the KDC-REQ-BODY")
        if auth.pa_checksum2 is not None:
            algorithm, checksum2 = auth.pa_checksum2
            digest = _PA_CHECKSUM2_DIGESTS.get(algorithm)
            if digest is None:
                raise KrbError(ErrorCode.KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED, f"paChecksum2 digest {algorithm} is not accepted")
            if not hmac.compare_digest(checksum2, digest(req_body).digest()):
                raise KrbError(ErrorCode.KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED, "paChecksum2 does not match the KDC-REQ-BODY")
        if auth.nonce != nonce:
            raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, "pkAuthenticator nonce differs from the request nonce")

        token = auth.freshness_token
        if token is not None:
            try:
                self.freshness.check(token, int(wallclock.timestamp()), self.policy.max_skew)
            except FreshnessError as exc:
                code = ErrorCode.KDC_ERR_PREAUTH_EXPIRED if exc.expired else ErrorCode.KDC_ERR_PREAUTH_FAILED
                raise KrbError(code, str(exc)) from None
        elif self.policy.require_freshness_token:
            raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, "this KDC requires an RFC 8070 freshness token")

        # The certificate: cached verification or the full chain check.
        signer = signed_ok.signer_certificate
        if thumb in self._revoked:
            raise KrbError(ErrorCode.KDC_ERR_REVOKED_CERTIFICATE, f"certificate {thumb[:8].hex()} is on the KDC's revocation list")
        cached = self.certificate_cache.get(thumb, wallclock)
        verified = cached.verified if cached is not None else None
        if verified is None:
            try:
                verified = self.verifier.verify(signer, signed_ok.intermediates, now=wallclock, purpose=Purpose.CTA)
            except CertificateError as exc:
                raise KrbError(exc.krb_error_code, str(exc)) from None
        if not any(p.same_name(cname) for p in verified.principals):
            names = ", ".join(str(p) for p in verified.principals) or "no principal"
            raise KrbError(ErrorCode.KDC_ERR_CLIENT_NAME_MISMATCH, f"certificate names {names}, the request {cname}")

        # Replay: recorded only now that signature and checksum are known good.
        replay_key = (principal_text(cname), ctime, cusec, pa_checksum)
        if self.replay_cache.seen_or_add(replay_key, now):
            raise KrbError(ErrorCode.KRB_AP_ERR_REPEAT, "PKINIT authenticator replayed", ctime=ctime, cusec=cusec)

        customers = self._authorize(verified, cached, wallclock=wallclock, peer=peer)
        return PkinitClient(
            auth_pack=auth,
            verified=verified,
            restricted=not verified.provisioned,
            customer_ids=tuple(c.id for c in customers),
            from_cache=cached is not None,
            customers=customers,
        )

    def _verify_reference(self, pa_value: bytes) -> tuple[cms.VerifiedSignedData, bytes, ClientAuthPack]:
        """asn1crypto and common.cms: the reference reading and CMS check, with the refusals' wording."""
        try:
            signed, auth_pack = read_reference(pa_value)
        except MalformedAuthPack as exc:
            raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"malformed PA-PK-AS-REQ: {exc}") from None
        try:
            signed_ok = cms.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_AUTHDATA)
        except cms.CmsError as exc:
            raise KrbError(exc.krb_error_code, f"signedAuthPack: {exc}") from None
        try:
            auth = client_auth_pack(auth_pack)
        except ValueError as exc:
            raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"malformed pkAuthenticator: {exc}") from None
        return signed_ok, thumbprint(signed_ok.signer_certificate), auth

    def _authorize(
        self, verified: VerifiedCertificate, cached: CachedCertificate | None, *, wallclock: datetime, peer: str
    ) -> tuple[Customer, ...]:
        """The seed's rule: operator certificates need an active customer holding one of their phone
        IDs; manufacturer certificates are recorded (MAC, thumbprint, peer) unless the device is bad.
        Returns the customer records read (none for a manufacturer certificate)."""
        if verified.provisioned:
            customers = self.db.customers_for_phone_ids(list(verified.phone_ids))
            stamp = tuple((c.id, c.generation) for c in customers)
            if cached is not None and cached.customers != stamp:
                self.certificate_cache.invalidate(verified.thumbprint)  # the customer record changed
                cached = None
            if not customers:
                ids = ", ".join(p[:4].hex() + "..." for p in verified.phone_ids)
                raise KrbError(
                    ErrorCode.KDC_ERR_CLIENT_REVOKED,
                    f"no customer record holds the certificate's phone ID(s) {ids} (certificate {_cert_hint(verified)})",
                )
            if not any(c.status is CustomerStatus.ACTIVE for c in customers):
                states = ", ".join(f"customer {c.id} is {c.status.value}" for c in customers)
                raise KrbError(ErrorCode.KDC_ERR_CLIENT_REVOKED, f"no active customer for this certificate: {states}")
            if cached is None:
                self.certificate_cache.put(CachedCertificate(verified, stamp))
            return tuple(customers)
        # A manufacturer certificate: an unprovisioned CTA.
        mac = verified.mac
        if mac is None:  # pragma: no cover - the verifier requires it for manufacturer certificates
            raise KrbError(ErrorCode.KDC_ERR_CLIENT_NOT_TRUSTED, "manufacturer certificate without a MAC address")
        try:
            device = self.db.record_device_seen(mac, verified.thumbprint, now=wallclock, peer=peer[:128] if peer else None)
        except ThumbprintMismatch:
            raise KrbError(
                ErrorCode.KDC_ERR_REVOKED_CERTIFICATE,
                f"device {format_mac(mac)} is registered with a different manufacturer certificate (possible clone)",
            ) from None
        if device.status is DeviceStatus.BAD:
            reason = f": {device.status_reason}" if device.status_reason else ""
            raise KrbError(ErrorCode.KDC_ERR_CLIENT_REVOKED, f"device {format_mac(mac)} is marked bad{reason}")
        if cached is None:
            self.certificate_cache.put(CachedCertificate(verified, ()))
        return ()

    # --- the reply -----------------------------------------------------------------------------

    def reply(
        self,
        client: PkinitClient,
        *,
        request: bytes,
        enctype: int,
        cname: Principal,
        sname: Principal,
        wallclock: datetime,
        now: float,
    ) -> PkinitReply:
        """PA-PK-AS-REP and reply key. `request` is the whole AS-REQ as received; `cname`/`sname`
        are the request's names with their name-types as sent (RFC 8636 OtherInfo)."""
        auth_pack = client.auth_pack
        if auth_pack.public_algorithm is None:
            return self._reply_rsa(client, request=request, enctype=enctype)
        kdf_oid = self._choose_kdf(auth_pack.kdfs)
        algorithm = auth_pack.public_algorithm
        client_nonce = auth_pack.client_dh_nonce
        nonce = auth_pack.nonce
        if algorithm == oids.DHPUBLICNUMBER:
            group, y = self._client_dh(auth_pack)
            key_pair, expiration = self._key_pair(("dh", group.group_id), group, client_nonce, now, wallclock)
            try:
                check_public_value(group, y)  # range and subgroup (in C when libcrypto loads)
                z = key_pair.shared_secret(y, check_subgroup=False)
            except DhError as exc:
                raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"clientPublicValue: {exc}") from None
            subject_public_key = encode_dh_public_value(key_pair.public_value)
            mode = "dh"
        elif algorithm == oids.ID_EC_PUBLIC_KEY:
            curve, point = self._client_ec(auth_pack)
            key_pair, expiration = self._key_pair(("ecdh", curve.name), curve, client_nonce, now, wallclock)
            try:
                z = key_pair.shared_secret(point)
            except DhError as exc:
                raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"clientPublicValue: {exc}") from None
            subject_public_key = key_pair.public_point
            mode = "ecdh"
        else:
            raise KrbError(
                ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED,
                f"clientPublicValue algorithm {algorithm} is neither dhpublicnumber nor id-ecPublicKey",
                e_data=self._td_dh_parameters(),
            )

        # Written as DER directly (common.asn1.encode; byte-identical to the asn1crypto classes
        # KDCDHKeyInfo, DHRepInfo, PA-PK-AS-REP and OtherInfo, see tests/test_asn1_der.py).
        signed = self._sign(encode.kdc_dh_key_info(subject_public_key, nonce, expiration), oids.ID_PKINIT_DHKEYDATA)
        server_nonce = self.rng(32) if client_nonce is not None else None
        pa_value = encode.dh_rep_info_pa_value(encode.signed_data_content_info(signed), server_nonce, kdf_oid)
        if kdf_oid is not None:
            other_info = encode.kdf_other_info(kdf_oid, cname, sname, enctype, request, pa_value)
            reply_key = rfc8636_kdf(KDF_HASH_BY_OID[kdf_oid], z, other_info, enctype)
        else:
            reply_key = octetstring2key(z, enctype, client_nonce or b"", server_nonce or b"")
        return PkinitReply(pa_value, reply_key, mode)

    def _choose_kdf(self, offered: tuple[str, ...] | None) -> str | None:
        if offered is None:
            return None
        offered_oids = set(offered)
        for oid in self._kdf_oids:
            if oid in offered_oids:
                return oid
        raise KrbError(
            ErrorCode.KDC_ERR_NO_ACCEPTABLE_KDF,
            f"none of the offered KDFs ({', '.join(sorted(offered_oids)) or 'none'}) is acceptable",
        )

    def _td_dh_parameters(self, *, curves: bool = False) -> bytes:
        entries = [
            {
                "algorithm": oids.DHPUBLICNUMBER,
                "parameters": DomainParameters({"p": DH_GROUPS[g].p, "g": DH_GROUPS[g].g, "q": DH_GROUPS[g].q}),
            }
            for g in self.policy.preferred_dh_groups()
        ]
        if curves:
            entries += [
                {"algorithm": oids.ID_EC_PUBLIC_KEY, "parameters": keys.ECDomainParameters(("named", curve_by_name(c).oid))}
                for c in self.policy.allowed_ecdh_curves
            ]
        return typed_data((PaDataType.TD_DH_PARAMETERS, TD_DH_PARAMETERS(entries).dump()))

    def _client_dh(self, auth_pack: ClientAuthPack) -> tuple[DhGroup, int]:
        public_value = auth_pack.public_value_asn1
        if auth_pack.dh is not None:  # the fast reader's values: well-formed, y > 0
            p, g, q, y = auth_pack.dh
        else:
            y = None
            try:
                params = public_value["algorithm"]["parameters"]
                p, g = params["p"].native, params["g"].native
                q = params["q"].native if params["q"].contents is not None else None
            except (ValueError, KeyError, TypeError) as exc:
                raise KrbError(ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED, f"DH domain parameters: {exc}", e_data=self._td_dh_parameters()) from None
        try:
            group = group_for_parameters(p, g, q, min_bits=self.policy.dh_min_bits)
        except DhError as exc:
            raise KrbError(ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED, str(exc), e_data=self._td_dh_parameters()) from None
        if group.group_id not in self.policy.allowed_dh_groups:
            raise KrbError(
                ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED,
                f"{group.name} is not an allowed DH group",
                e_data=self._td_dh_parameters(),
            )
        if y is None:
            try:
                y = decode_dh_public_value(public_value["public_key"].__bytes__())
            except (ValueError, TypeError, AttributeError) as exc:
                raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"clientPublicValue: malformed DH public value ({exc})") from None
        return group, y

    def _client_ec(self, auth_pack: ClientAuthPack) -> tuple[EcCurve, bytes]:
        public_value = auth_pack.public_value_asn1
        try:
            if auth_pack.ec is not None:  # the fast reader's values: a named curve and a point
                curve_oid = auth_pack.ec[0]
            else:
                params = public_value["algorithm"]["parameters"]
                if params.name != "named":
                    raise ValueError("only named curves are accepted")
                curve_oid = params.chosen.dotted
            curve = curve_by_oid(curve_oid)
        except (ValueError, KeyError, TypeError, AttributeError, DhError) as exc:
            raise KrbError(ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED, f"EC parameters: {exc}", e_data=self._td_dh_parameters(curves=True)) from None
        if curve.name not in self.policy.allowed_ecdh_curves:
            raise KrbError(
                ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED,
                f"curve {curve.name} is not allowed",
                e_data=self._td_dh_parameters(curves=True),
            )
        if auth_pack.ec is not None:
            return curve, auth_pack.ec[1]
        try:
            point = public_value["public_key"].__bytes__()
        except (ValueError, TypeError, AttributeError) as exc:
            raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"clientPublicValue: malformed EC point ({exc})") from None
        return curve, point

    def _key_pair(self, slot, group_or_curve, client_nonce, now: float, wallclock: datetime):
        """The KDC's (EC)DH key pair: reused for `dh_key_reuse_seconds` with clients that send
        clientDHNonce (RFC 4556 3.2.3.1), fresh otherwise. Returns (pair, dhKeyExpiration)."""
        period = self.policy.dh_key_reuse_seconds
        if period > 0 and client_nonce is not None:
            entry = self._reusable.get(slot)
            if entry is None or entry.expires <= now:
                pair = self._generate(group_or_curve)
                expires_wall = (wallclock + timedelta(seconds=period)).replace(microsecond=0)
                entry = _ReusableKey(pair, now + period, expires_wall)
                self._reusable[slot] = entry
            return entry.key_pair, entry.expires_wall
        return self._generate(group_or_curve), None

    @staticmethod
    def _generate(group_or_curve):
        if isinstance(group_or_curve, DhGroup):
            return group_or_curve.generate_key_pair()
        return EcdhKeyPair.generate(group_or_curve)

    def _sign(self, content: bytes, content_type: str) -> bytes:
        """DER SignedData by the KDC over `content` (eContent of `content_type`)."""
        if self._signer is not None:
            return self._signer.sign_der(content, content_type)
        creds = self.credentials
        return cms.sign_signed_data_der(content, content_type, creds.certificate, creds.private_key, certificates=creds.chain)

    def _reply_rsa(self, client: PkinitClient, *, request: bytes, enctype: int) -> PkinitReply:
        if not client.verified.key_transport_allowed:
            raise KrbError(
                ErrorCode.KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED,
                "RSA key transport needs an RSA client certificate with keyEncipherment; send a clientPublicValue",
            )
        reply_key = generate_key(enctype)
        cksumtype = required_checksum_type(enctype)
        as_checksum = make_checksum(cksumtype, reply_key, KeyUsage.PKINIT_AS_CHECKSUM, request)
        signed = self._sign(encode.reply_key_pack(reply_key, cksumtype, as_checksum), oids.ID_PKINIT_RKEYDATA)
        cipher = "des-ede3-cbc"
        offered = client.auth_pack.cms_types
        if offered is not None:
            for oid in offered:
                if oid in _CMS_CIPHER_BY_OID:
                    cipher = _CMS_CIPHER_BY_OID[oid]
                    break
        try:
            enveloped = cms.envelope_der(signed, client.verified.certificate, cipher=cipher, rng=self.rng)
        except cms.CmsError as exc:
            raise KrbError(ErrorCode.KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED, str(exc)) from None
        pa_value = encode.enc_key_pack_pa_value(enveloped)
        return PkinitReply(pa_value, reply_key, "rsa")
