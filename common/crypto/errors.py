"""Exceptions raised by the crypto layer. Messages name enctypes, lengths and usages, never key bytes."""


class CryptoError(ValueError):
    """Any failure of a Kerberos cryptographic operation."""


class IntegrityError(CryptoError):
    """A MAC or checksum does not verify, or the ciphertext is too short or malformed to carry one."""


class UnsupportedEnctypeError(CryptoError):
    """The encryption type number is not one this implementation provides."""


class UnsupportedChecksumTypeError(CryptoError):
    """The checksum type number is not one this implementation provides."""
