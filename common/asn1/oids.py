"""Object identifiers used by kerbtel, in one place.

Standard arcs name their RFC. kerbtel's own identifiers live under a UUID arc (ITU-T X.667,
2.25.<uuid as integer>), which needs no registration and cannot collide with anyone else's.
"""

# --- RFC 4556 PKINIT -------------------------------------------------------------------------
ID_PKINIT = "1.3.6.1.5.2.3"
ID_PKINIT_AUTHDATA = "1.3.6.1.5.2.3.1"  # content type of signedAuthPack
ID_PKINIT_DHKEYDATA = "1.3.6.1.5.2.3.2"  # content type of dhSignedData
ID_PKINIT_RKEYDATA = "1.3.6.1.5.2.3.3"  # content type of the ReplyKeyPack in encKeyPack
ID_PKINIT_KPCLIENTAUTH = "1.3.6.1.5.2.3.4"  # EKU for PKINIT client certificates
ID_PKINIT_KPKDC = "1.3.6.1.5.2.3.5"  # EKU for KDC certificates
ID_PKINIT_SAN = "1.3.6.1.5.2.2"  # otherName type: KRB5PrincipalName

# --- RFC 8636 PKINIT KDFs ----------------------------------------------------------------------
ID_PKINIT_KDF = "1.3.6.1.5.2.3.6"
ID_PKINIT_KDF_AH_SHA1 = "1.3.6.1.5.2.3.6.1"
ID_PKINIT_KDF_AH_SHA256 = "1.3.6.1.5.2.3.6.2"
ID_PKINIT_KDF_AH_SHA512 = "1.3.6.1.5.2.3.6.3"
ID_PKINIT_KDF_AH_SHA384 = "1.3.6.1.5.2.3.6.4"

# --- Diffie-Hellman and EC public keys ---------------------------------------------------------
DHPUBLICNUMBER = "1.2.840.10046.2.1"  # ANSI X9.42, RFC 3279 2.3.3
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"  # RFC 5480
SECP256R1 = "1.2.840.10045.3.1.7"
SECP384R1 = "1.3.132.0.34"
SECP521R1 = "1.3.132.0.35"

# --- Microsoft extensions seen in the wild -----------------------------------------------------
ID_MS_KP_SC_LOGON = "1.3.6.1.4.1.311.20.2.2"  # smart-card logon EKU, accepted by Heimdal/MIT
ID_MS_SAN_UPN = "1.3.6.1.4.1.311.20.2.3"

# --- kerbtel's own arc -------------------------------------------------------------------------
KERBTEL_ARC = "2.25.155855998052828621443578892532400974958"
# Certificate extensions (common/pki.py, documented in docs/pki.md).
KERBTEL_EXT = KERBTEL_ARC + ".1"
ID_KERBTEL_EXT_MAC_ADDRESS = KERBTEL_EXT + ".1"  # CTA MAC address, in manufacturer certificates
ID_KERBTEL_EXT_PHONE_IDS = KERBTEL_EXT + ".2"  # SEQUENCE OF OCTET STRING (SHA-1 of phone numbers)
# Certificate policies that say which role a CA or certificate plays.
KERBTEL_POLICY = KERBTEL_ARC + ".2"
ID_KERBTEL_POLICY_MANUFACTURER = KERBTEL_POLICY + ".1"
ID_KERBTEL_POLICY_OPERATOR = KERBTEL_POLICY + ".2"

# --- CMS (RFC 5652) and digests used in PKINIT ------------------------------------------------
ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
ID_SHA1 = "1.3.14.3.2.26"
ID_SHA256 = "2.16.840.1.101.3.4.2.1"
ID_SHA384 = "2.16.840.1.101.3.4.2.2"
ID_SHA512 = "2.16.840.1.101.3.4.2.3"
