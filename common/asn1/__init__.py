"""Kerberos (RFC 4120) and PKINIT (RFC 4556, 8636, 8070, 5349) ASN.1 on asn1crypto."""
