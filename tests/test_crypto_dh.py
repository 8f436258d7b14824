"""MODP groups (RFC 3526), ECDH (RFC 5349) and the fixed-length shared secret PKINIT hashes."""

import pytest

from common.asn1 import oids
from common.crypto import CryptoError
from common.crypto.dh import (
    DH_GROUPS,
    MODP_2048,
    P256,
    P384,
    P521,
    DhError,
    EcdhKeyPair,
    curve_by_name,
    curve_by_oid,
    decode_point,
    dh_shared_secret,
    group_by_id,
    group_for_parameters,
)

pytestmark = pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")


def _pi_times_2_to(bits: int) -> int:
    """floor(pi * 2^bits), by Machin's formula in integer arithmetic (64 guard bits)."""
    one = 1 << (bits + 64)

    def arctan_inv(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            n, sign = n + 1, -sign
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> 64


# RFC 3526 sections 3-5: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k), g = 2.
@pytest.mark.parametrize(("group_id", "bits", "k"), [(14, 2048, 124476), (15, 3072, 1690314), (16, 4096, 240904)])
def test_modp_primes_follow_the_rfc3526_formula(group_id: int, bits: int, k: int) -> None:
    grp = DH_GROUPS[group_id]
    expected = 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (_pi_times_2_to(bits - 130) + k)
    assert (grp.p, grp.g, grp.q, grp.bits) == (expected, 2, (expected - 1) // 2, bits)


def test_rfc3526_2048_prime_prefix_and_suffix() -> None:
    text = format(MODP_2048.p, "X")
    assert text.startswith("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1")
    assert text.endswith("15728E5A8AACAA68FFFFFFFFFFFFFFFF")


@pytest.mark.parametrize("group_id", [14, 15, 16])
def test_exchange_agrees_and_is_len_p(group_id: int) -> None:
    grp = group_by_id(group_id)
    a, b = grp.generate_key_pair(), grp.generate_key_pair()
    z = a.shared_secret(b.public_value)
    assert z == b.shared_secret(a.public_value) == dh_shared_secret(a, b.public_value)
    assert len(z) == grp.byte_length


# Regression: private values chosen so that Z's first octet is zero. A secret stripped of
# leading zeros (minikerberos' bug) would be 255 bytes and give the wrong reply key.
DH_X_A = int("ad77e8d869358c4500404bad51aa774e3d42982d5bd9db97d61b9914bec94baa", 16)
DH_X_B = int("394534738558919864cbc9ff271a7b447d2f4c4cf9cb2231c93ea8ce90a1363e", 16)


def test_shared_secret_keeps_leading_zero() -> None:
    a = MODP_2048.key_pair_from_private(DH_X_A)
    b = MODP_2048.key_pair_from_private(DH_X_B)
    z = a.shared_secret(b.public_value)
    assert len(z) == 256 and z[0] == 0
    assert z == pow(MODP_2048.g, DH_X_A * DH_X_B, MODP_2048.p).to_bytes(256, "big")
    assert b.shared_secret(a.public_value) == z


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (0, "out of range"),
        (1, "out of range"),
        (MODP_2048.p - 1, "out of range"),
        (MODP_2048.p, "out of range"),
        (MODP_2048.p + 5, "out of range"),
    ],
)
def test_invalid_public_values_are_rejected(y: int, message: str) -> None:
    pair = MODP_2048.generate_key_pair()
    with pytest.raises(DhError, match=message):
        pair.shared_secret(y)


def test_public_value_outside_subgroup_is_rejected() -> None:
    # 2 generates the order-q subgroup of a safe prime, so -2 mod p (a non-residue) lies outside it.
    outside = MODP_2048.p - 2
    pair = MODP_2048.generate_key_pair()
    with pytest.raises(DhError, match="not in the prime-order subgroup of MODP-2048"):
        pair.shared_secret(outside)
    MODP_2048.validate_public(outside, check_subgroup=False)  # range check alone passes


def test_group_lookup_by_parameters() -> None:
    assert group_for_parameters(MODP_2048.p, 2) is MODP_2048
    assert group_for_parameters(MODP_2048.p, 2, MODP_2048.q) is MODP_2048
    with pytest.raises(DhError, match="generator 5 does not match MODP-2048"):
        group_for_parameters(MODP_2048.p, 5)
    with pytest.raises(DhError, match="subgroup order q does not match MODP-2048"):
        group_for_parameters(MODP_2048.p, 2, 12345)
    with pytest.raises(DhError, match="DH prime of 2048 bits is not one of the well-known MODP groups"):
        group_for_parameters(MODP_2048.p - 2, 2)


def test_min_bits_policy() -> None:
    small_p = (1 << 1023) + 1155  # any 1024-bit number: refused on size before anything else
    with pytest.raises(DhError, match="DH group of 1024 bits is below the minimum of 2048 bits"):
        group_for_parameters(small_p, 2)
    with pytest.raises(DhError, match="DH group of 2048 bits is below the minimum of 3072 bits"):
        group_by_id(14, min_bits=3072)
    assert group_by_id(15, min_bits=3072).bits == 3072
    with pytest.raises(DhError, match="unknown DH group id 2"):
        group_by_id(2)
    assert issubclass(DhError, CryptoError)


def test_private_value_bounds() -> None:
    with pytest.raises(DhError, match="1 < x < q"):
        MODP_2048.key_pair_from_private(1)


# --- ECDH ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", [P256, P384, P521])
def test_ecdh_agrees_with_fixed_length_secret(curve) -> None:
    a, b = EcdhKeyPair.generate(curve), EcdhKeyPair.generate(curve)
    z = a.shared_secret(b.public_point)
    assert z == b.shared_secret(a.public_point) and len(z) == curve.coordinate_bytes
    assert len(a.public_point) == curve.point_bytes and a.public_point[0] == 0x04


EC_D_A = int("034f142510b5b3f468e9e0971ef75b86843e19a02e72e021a1ee15d6b995bb4b", 16)
EC_D_B = int("f5c6bd79e1cb2947daab4bd683e650a0e5c182a2dc5d3f6e542abe57f4da1d00", 16)


def test_ecdh_secret_keeps_leading_zero() -> None:
    a, b = EcdhKeyPair.from_private(P256, EC_D_A), EcdhKeyPair.from_private(P256, EC_D_B)
    z = a.shared_secret(b.public_point)
    assert len(z) == 32 and z[0] == 0 and z == b.shared_secret(a.public_point)


def test_point_decoding_errors() -> None:
    good = EcdhKeyPair.generate(P256).public_point
    with pytest.raises(DhError, match="empty EC point for P-256"):
        decode_point(P256, b"")
    with pytest.raises(DhError, match=r"must be uncompressed \(04\), got prefix 0x02"):
        decode_point(P256, b"\x02" + good[1:33])
    with pytest.raises(DhError, match="must be 65 bytes, got 64"):
        decode_point(P256, good[:-1])
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(DhError, match="EC point is not on curve P-256"):
        decode_point(P256, off_curve)
    with pytest.raises(DhError, match="not on curve"):
        decode_point(P256, b"\x04" + bytes(64))  # (0, 0) is not on P-256
    with pytest.raises(DhError, match="must be 97 bytes"):
        EcdhKeyPair.generate(P384).shared_secret(good)  # a P-256 point offered on P-384


def test_curve_registry() -> None:
    assert curve_by_oid(oids.SECP256R1) is P256 and curve_by_oid(oids.SECP521R1) is P521
    assert curve_by_name("P-384") is P384
    with pytest.raises(DhError, match="unsupported EC curve OID 1.3.132.0.10"):
        curve_by_oid("1.3.132.0.10")
    with pytest.raises(DhError, match="unsupported EC curve 'P-192'"):
        curve_by_name("P-192")
