"""Kerberos cryptography (RFC 3961/3962/8009) and PKINIT key agreement on `cryptography`."""

from common.crypto.key import Key

__all__ = ["Key"]
