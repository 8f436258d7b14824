"""Key agreement for PKINIT: RFC 3526 MODP groups (RFC 4556 3.2.3.1) and ECDH (RFC 5349).

The KDC accepts only the well-known groups below (looked up from the client's DomainParameters
with `group_for_parameters`) and refuses anything under `min_bits`. Shared secrets keep their
leading zero octets: Z is always len(p) bytes for MODP and the coordinate size for ECDH, because
RFC 4556 hashes Z as a fixed-length octet string (stripping zeros breaks 1 exchange in 256).

    group = group_for_parameters(p, g, q)          # or group_by_id(14)
    mine = group.generate_key_pair()
    z = mine.shared_secret(peer_y)                 # validates peer_y first

    pair = EcdhKeyPair.generate(curve_by_name("P-256"))
    z = pair.shared_secret(peer_point_octets)      # uncompressed point, checked on the curve
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric import dh, ec
from cryptography.utils import CryptographyDeprecationWarning

from common.asn1 import oids
from common.crypto.errors import CryptoError

DEFAULT_MIN_BITS = 2048

# cryptography 50 deprecates finite-field DH, which PKINIT still requires (MIT and Heimdal
# clients default to MODP groups). Silence exactly that warning; ECDH is the way forward.
warnings.filterwarnings(
    "ignore", message="Diffie-Hellman over finite fields", category=CryptographyDeprecationWarning
)


class DhError(CryptoError):
    """Unacceptable (EC)DH parameters, public value or point."""


# --- finite-field Diffie-Hellman ---------------------------------------------------------------

# RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k), generator 2.
_MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
_MODP_3072 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)
_MODP_4096 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6"
    "287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
    16,
)


@dataclass(frozen=True)
class DhGroup:
    """A safe-prime MODP group: p, generator g and subgroup order q = (p-1)/2.

    (p, g, q) is what goes into X9.42 DomainParameters in the client's AuthPack.
    """

    group_id: int  # RFC 3526 / IKE group number
    name: str
    p: int
    g: int
    q: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "q", (self.p - 1) // 2)

    @property
    def bits(self) -> int:
        return self.p.bit_length()

    @property
    def byte_length(self) -> int:
        return (self.bits + 7) // 8

    @cached_property
    def _parameters(self) -> dh.DHParameters:
        return dh.DHParameterNumbers(self.p, self.g, self.q).parameters()

    def generate_key_pair(self) -> DhKeyPair:
        return DhKeyPair(self, self._parameters.generate_private_key())

    def key_pair_from_private(self, x: int) -> DhKeyPair:
        """A key pair with a chosen private value (tests and vectors only)."""
        if not 1 < x < self.q:
            raise DhError(f"DH private value must satisfy 1 < x < q for {self.name}")
        numbers = dh.DHParameterNumbers(self.p, self.g, self.q)
        public = dh.DHPublicNumbers(pow(self.g, x, self.p), numbers)
        return DhKeyPair(self, dh.DHPrivateNumbers(x, public).private_key())

    @cached_property
    def _parameter_numbers(self) -> dh.DHParameterNumbers:
        return dh.DHParameterNumbers(self.p, self.g, self.q)

    def validate_public(self, y: int, check_subgroup: bool = True) -> None:
        """Refuse y outside 1 < y < p-1 and, by default, y not in the order-q subgroup (y^q != 1).

        p = 2q + 1 is a safe prime, so the order-q subgroup is the quadratic residues and, by
        Euler's criterion, y^q mod p is the Legendre symbol (y/p): the Jacobi symbol computes
        the same answer in ~0.3 ms instead of a 2048-bit Python pow (~20 ms per request)."""
        if not 1 < y < self.p - 1:
            raise DhError(f"DH public value is out of range for {self.name} (need 1 < y < p-1)")
        if check_subgroup and jacobi_symbol(y, self.p) != 1:
            raise DhError(f"DH public value is not in the prime-order subgroup of {self.name}")


def jacobi_symbol(a: int, n: int) -> int:
    """The Jacobi symbol (a/n) for odd n > 0: 1, -1, or 0 when gcd(a, n) > 1 (binary algorithm
    with quadratic reciprocity). For a prime n it is the Legendre symbol a^((n-1)/2) mod n."""
    if n <= 0 or not n & 1:
        raise ValueError("the Jacobi symbol needs an odd positive modulus")
    a %= n
    result = 1
    while a:
        zeros = (a & -a).bit_length() - 1
        if zeros:
            a >>= zeros
            if zeros & 1 and n & 7 in (3, 5):  # (2/n) = -1 for n = 3, 5 mod 8
                result = -result
        if a & n & 3 == 3:  # reciprocity: both 3 mod 4
            result = -result
        a, n = n % a, a
    return result if n == 1 else 0


MODP_2048 = DhGroup(14, "MODP-2048", _MODP_2048, 2)
MODP_3072 = DhGroup(15, "MODP-3072", _MODP_3072, 2)
MODP_4096 = DhGroup(16, "MODP-4096", _MODP_4096, 2)
DH_GROUPS: dict[int, DhGroup] = {grp.group_id: grp for grp in (MODP_2048, MODP_3072, MODP_4096)}


def group_by_id(group_id: int, min_bits: int = DEFAULT_MIN_BITS) -> DhGroup:
    try:
        grp = DH_GROUPS[group_id]
    except KeyError:
        raise DhError(f"unknown DH group id {group_id}; known: {sorted(DH_GROUPS)}") from None
    _check_bits(grp.bits, min_bits)
    return grp


def group_for_parameters(p: int, g: int, q: int | None = None, min_bits: int = DEFAULT_MIN_BITS) -> DhGroup:
    """The well-known group with these DomainParameters; DhError if too small or not well known.

    Only RFC 3526 groups are accepted: validating arbitrary client-chosen primes costs too much
    for a KDC and gains nothing (RFC 4556 3.2.3.1 lets the KDC reply with its preferred groups).
    """
    _check_bits(p.bit_length(), min_bits)
    for grp in DH_GROUPS.values():
        if grp.p == p:
            if g != grp.g:
                raise DhError(f"generator {g} does not match {grp.name} (expected {grp.g})")
            if q is not None and q != grp.q:
                raise DhError(f"subgroup order q does not match {grp.name} (expected (p-1)/2)")
            return grp
    raise DhError(f"DH prime of {p.bit_length()} bits is not one of the well-known MODP groups")


def _check_bits(bits: int, min_bits: int) -> None:
    if bits < min_bits:
        raise DhError(f"DH group of {bits} bits is below the minimum of {min_bits} bits")


@dataclass(frozen=True)
class DhKeyPair:
    group: DhGroup
    private_key: dh.DHPrivateKey = field(repr=False)

    @cached_property
    def public_value(self) -> int:
        """y = g^x mod p, as carried in the SubjectPublicKeyInfo INTEGER."""
        return self.private_key.public_key().public_numbers().y

    def shared_secret(self, peer_y: int, check_subgroup: bool = True) -> bytes:
        return dh_shared_secret(self, peer_y, check_subgroup)


def dh_shared_secret(key_pair: DhKeyPair, peer_y: int, check_subgroup: bool = True) -> bytes:
    """Z = peer_y^x mod p as exactly len(p) octets, leading zeros kept (RFC 4556 3.2.3.1)."""
    grp = key_pair.group
    grp.validate_public(peer_y, check_subgroup)
    peer = dh.DHPublicNumbers(peer_y, grp._parameter_numbers).public_key()
    z = key_pair.private_key.exchange(peer)
    # cryptography pads to len(p) already; keep the guarantee even if that ever changes.
    return z.rjust(grp.byte_length, b"\x00")


# --- elliptic-curve Diffie-Hellman (RFC 5349) ----------------------------------------------------


@dataclass(frozen=True)
class EcCurve:
    name: str
    oid: str  # namedCurve in the ECParameters of the client's SubjectPublicKeyInfo
    curve_class: type[ec.EllipticCurve]
    coordinate_bytes: int

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.curve_class()

    @property
    def point_bytes(self) -> int:
        return 1 + 2 * self.coordinate_bytes


P256 = EcCurve("P-256", oids.SECP256R1, ec.SECP256R1, 32)
P384 = EcCurve("P-384", oids.SECP384R1, ec.SECP384R1, 48)
P521 = EcCurve("P-521", oids.SECP521R1, ec.SECP521R1, 66)
EC_CURVES: dict[str, EcCurve] = {c.name: c for c in (P256, P384, P521)}
_CURVES_BY_OID: dict[str, EcCurve] = {c.oid: c for c in EC_CURVES.values()}


def curve_by_name(name: str) -> EcCurve:
    try:
        return EC_CURVES[name]
    except KeyError:
        raise DhError(f"unsupported EC curve {name!r}; supported: {sorted(EC_CURVES)}") from None


def curve_by_oid(oid: str) -> EcCurve:
    try:
        return _CURVES_BY_OID[oid]
    except KeyError:
        raise DhError(f"unsupported EC curve OID {oid}") from None


def encode_point(curve: EcCurve, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SEC 1 uncompressed encoding 04 || X || Y (RFC 5480 ECPoint), as PKINIT carries it."""
    nums = public_key.public_numbers()
    return b"\x04" + nums.x.to_bytes(curve.coordinate_bytes, "big") + nums.y.to_bytes(curve.coordinate_bytes, "big")


def decode_point(curve: EcCurve, data: bytes) -> ec.EllipticCurvePublicKey:
    """Parse an uncompressed point; DhError for compressed, mis-sized, off-curve or infinity points."""
    if not data:
        raise DhError(f"empty EC point for {curve.name}")
    if data[0] != 0x04:
        raise DhError(f"EC point for {curve.name} must be uncompressed (04), got prefix {data[0]:#04x}")
    if len(data) != curve.point_bytes:
        raise DhError(f"EC point for {curve.name} must be {curve.point_bytes} bytes, got {len(data)}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve.curve, bytes(data))
    except ValueError:
        raise DhError(f"EC point is not on curve {curve.name}") from None


@dataclass(frozen=True)
class EcdhKeyPair:
    curve: EcCurve
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls, curve: EcCurve) -> EcdhKeyPair:
        return cls(curve, ec.generate_private_key(curve.curve))

    @classmethod
    def from_private(cls, curve: EcCurve, d: int) -> EcdhKeyPair:
        """A key pair with a chosen private scalar (tests and vectors only)."""
        return cls(curve, ec.derive_private_key(d, curve.curve))

    @cached_property
    def public_point(self) -> bytes:
        return encode_point(self.curve, self.private_key.public_key())

    def shared_secret(self, peer_point: bytes) -> bytes:
        """Z = x-coordinate of d * peer, coordinate_bytes long (RFC 5349 / SEC 1 ECDH primitive)."""
        peer = decode_point(self.curve, peer_point)
        z = self.private_key.exchange(ec.ECDH(), peer)
        return z.rjust(self.curve.coordinate_bytes, b"\x00")
