"""The KDC's protocol policy: one frozen dataclass of simple values, documented field by field.

`kdcd/config.py` nests it as the `[kdc]` table of the daemon's TOML (loaded with
`common.config.load_config`), so every field is a bool, int, str, Path or a tuple of those, and
every field has a default. Cross-field checks are in `__post_init__` (a ValueError there is
reported under the table's key). Times are integer seconds.

The engine (`kdcd.engine.KdcEngine`) never reads the files named here while serving: the
PKINIT credentials are loaded once by `kdcd.pkinit.PkinitCredentials.load(policy)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.crypto import ENCTYPES
from common.crypto.dh import DH_GROUPS, EC_CURVES

__all__ = ["KdcPolicy", "KDF_NAMES"]

# Names accepted in `kdf_preference`, mapped to the RFC 8636 hash names.
KDF_NAMES = ("sha256", "sha384", "sha512", "sha1")


@dataclass(frozen=True)
class KdcPolicy:
    # --- realm and time -------------------------------------------------------------------
    realm: str = "EXAMPLE.TEST"
    """The one realm this KDC serves; requests for any other realm get KDC_ERR_WRONG_REALM."""
    max_skew: int = 300
    """Maximum clock skew in seconds (RFC 4120 default 5 minutes) for PA-ENC-TIMESTAMP, the
    PKINIT pkAuthenticator and TGS authenticators (KRB_AP_ERR_SKEW beyond it)."""

    # --- ticket lifetimes -----------------------------------------------------------------
    default_ticket_lifetime: int = 24 * 3600
    """Lifetime given when the request's `till` is absent or the zero/infinite time."""
    max_ticket_lifetime: int = 14 * 24 * 3600
    """Upper bound on any ticket's lifetime, whatever the principals allow (the seed's tickets
    live days to weeks)."""
    max_renewable_lifetime: int = 28 * 24 * 3600
    """Upper bound on renew-till - authtime; 0 disables renewable tickets."""

    # --- enctypes -------------------------------------------------------------------------
    supported_enctypes: tuple[int, ...] = (18, 17, 20, 19, 16)
    """Enctypes the KDC uses, in preference order: service ticket keys are the service's
    first key in this order; session and reply keys use the client's first etype in this set."""

    # --- PKINIT ---------------------------------------------------------------------------
    pkinit_enabled: bool = True
    kdc_certificate: Path | None = None
    """PEM: the KDC certificate (EKU id-pkinit-KPKdc, SAN krbtgt/REALM@REALM) first, then any
    intermediates the client needs."""
    kdc_private_key: Path | None = None
    """PEM private key of the KDC certificate (RSA or EC)."""
    manufacturer_anchors: tuple[Path, ...] = ()
    """PEM files of manufacturer root CAs: certificates chaining here are *unprovisioned* CTAs
    and get restricted tickets (FIG. 3 / the seed's provisioning flow)."""
    operator_anchors: tuple[Path, ...] = ()
    """PEM files of the network operator's CAs: provisioned CTAs, honoured only when one of the
    certificate's phone IDs belongs to an active customer."""
    dh_min_bits: int = 2048
    """Smallest MODP group accepted (KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED below it)."""
    allowed_dh_groups: tuple[int, ...] = (14, 15, 16)
    """RFC 3526 group numbers accepted, in the order TD-DH-PARAMETERS lists them (preferred
    first); groups below `dh_min_bits` are dropped from the list."""
    allowed_ecdh_curves: tuple[str, ...] = ("P-256", "P-384", "P-521")
    """RFC 5349 curves accepted for ECDH key agreement."""
    kdf_preference: tuple[str, ...] = ("sha256", "sha512", "sha384", "sha1")
    """RFC 8636 KDFs in preference order; the first one the client offers in supportedKDFs is
    used (none in common: KDC_ERR_NO_ACCEPTABLE_KDF)."""
    dh_key_reuse_seconds: int = 0
    """How long the KDC may reuse one (EC)DH key pair, with serverDHNonce and dhKeyExpiration
    (RFC 4556 3.2.3.1). Reuse happens only for clients that send clientDHNonce; 0 = a fresh key
    for every request."""
    freshness_token_lifetime: int = 300
    """Seconds an RFC 8070 freshness token is accepted after issue (KDC_ERR_PREAUTH_EXPIRED)."""
    require_freshness_token: bool = False
    """Refuse PKINIT requests without a freshness token (RFC 8070 4: KDC_ERR_PREAUTH_FAILED)."""
    certificate_cache_size: int = 10000
    """Entries in the verified-certificate (thumbprint) cache; 0 disables it."""
    replay_cache_size: int = 100000
    """Entries in the PKINIT authenticator replay cache (oldest dropped first)."""
    revoked_certificates: tuple[str, ...] = ()
    """SHA-256 thumbprints (hex) of client certificates the KDC refuses with
    KDC_ERR_REVOKED_CERTIFICATE (CTAs have no CRLs; this is the operator's deny-list, e.g. for a
    leaked manufacturer key)."""
    allow_unregistered_ctas: bool = True
    """A client named cta/<12 hex digits> that is not in the principal database may still
    authenticate with PKINIT: its certificate is the authority (factory-fresh CTAs are not
    registered anywhere). False: such a client is KDC_ERR_C_PRINCIPAL_UNKNOWN."""

    # --- unprovisioned CTAs ----------------------------------------------------------------
    csr_numbers: tuple[str, ...] = ()
    """Customer-service numbers an unprovisioned CTA may call (listed in its ticket)."""
    emergency_numbers: tuple[str, ...] = ("911",)
    """Emergency numbers an unprovisioned CTA may call (listed in its ticket)."""

    # --- protocol limits -------------------------------------------------------------------
    max_request_size: int = 65536
    """Largest request handled (bytes); larger ones get KRB_ERR_FIELD_TOOLONG."""

    def __post_init__(self) -> None:
        if not self.realm or any(c in self.realm for c in "/@\\"):
            raise ValueError(f"realm {self.realm!r} is not a valid Kerberos realm")
        if not 0 < self.max_skew <= 24 * 3600:
            raise ValueError("max_skew must be 1..86400 seconds")
        for name in ("default_ticket_lifetime", "max_ticket_lifetime"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.default_ticket_lifetime > self.max_ticket_lifetime:
            raise ValueError("default_ticket_lifetime exceeds max_ticket_lifetime")
        if self.max_renewable_lifetime < 0:
            raise ValueError("max_renewable_lifetime must be >= 0")
        if not self.supported_enctypes:
            raise ValueError("supported_enctypes is empty")
        for enctype in self.supported_enctypes:
            if enctype not in ENCTYPES:
                raise ValueError(f"supported_enctypes: {enctype} is not an enctype kerbtel implements ({sorted(ENCTYPES)})")
        for group in self.allowed_dh_groups:
            if group not in DH_GROUPS:
                raise ValueError(f"allowed_dh_groups: {group} is not a known MODP group ({sorted(DH_GROUPS)})")
        for curve in self.allowed_ecdh_curves:
            if curve not in EC_CURVES:
                raise ValueError(f"allowed_ecdh_curves: {curve!r} is not one of {sorted(EC_CURVES)}")
        for kdf in self.kdf_preference:
            if kdf not in KDF_NAMES:
                raise ValueError(f"kdf_preference: {kdf!r} is not one of {list(KDF_NAMES)}")
        if self.dh_min_bits < 1024:
            raise ValueError("dh_min_bits below 1024 is not allowed")
        for name in ("dh_key_reuse_seconds", "certificate_cache_size", "replay_cache_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.freshness_token_lifetime <= 0:
            raise ValueError("freshness_token_lifetime must be positive")
        for thumb in self.revoked_certificates:
            try:
                if len(bytes.fromhex(thumb)) != 32:
                    raise ValueError
            except ValueError:
                raise ValueError(f"revoked_certificates: {thumb!r} is not a hex SHA-256 thumbprint") from None
        if self.max_request_size < 1024:
            raise ValueError("max_request_size must be at least 1024")
        if self.pkinit_enabled and (self.kdc_certificate is None) != (self.kdc_private_key is None):
            raise ValueError("kdc_certificate and kdc_private_key must be given together")

    @property
    def restricted_destinations(self) -> tuple[str, ...]:
        """Every number an unprovisioned CTA may call: CSR numbers, then emergency numbers."""
        return self.csr_numbers + self.emergency_numbers

    def preferred_dh_groups(self) -> tuple[int, ...]:
        """allowed_dh_groups at or above dh_min_bits, in policy order."""
        return tuple(g for g in self.allowed_dh_groups if DH_GROUPS[g].bits >= self.dh_min_bits)
