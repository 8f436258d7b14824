"""common.crypto.legendre: the C subgroup check answers exactly as common.crypto.dh's Python one."""

from __future__ import annotations

import ctypes
import ctypes.util
import secrets

import pytest

from common.crypto.dh import DH_GROUPS, MODP_2048, DhError, jacobi_symbol
from common.crypto import legendre


def _backends():
    found = []
    for name, library, make in (("gmp", "gmp", legendre._gmp), ("openssl", "crypto", legendre._openssl)):
        path = ctypes.util.find_library(library)
        if path:
            found.append(pytest.param(make(ctypes.CDLL(path)), id=name))
    return found


def test_a_c_backend_loads_here():
    # Debian's coreutils depend on libgmp; Python's ssl module on libcrypto.
    assert legendre.BACKEND in ("gmp", "openssl")


@pytest.mark.parametrize("symbol", _backends())
@pytest.mark.parametrize("group_id", sorted(DH_GROUPS))
def test_backends_agree_with_the_python_jacobi_symbol(symbol, group_id):
    p = DH_GROUPS[group_id].p
    values = [0, 1, 2, 3, 4, p - 1, p - 2, DH_GROUPS[group_id].generate_key_pair().public_value]
    values += [secrets.randbelow(p) for _ in range(40)]
    for y in values:
        assert symbol(y, p) == jacobi_symbol(y, p), hex(y)


@pytest.mark.parametrize("symbol", _backends())
def test_backends_on_small_moduli(symbol):
    for n in (3, 5, 7, 15, 21, 9907):
        for a in range(n):
            assert symbol(a, n) == jacobi_symbol(a, n), (a, n)


def test_check_public_value_refuses_like_validate_public():
    member = MODP_2048.generate_key_pair().public_value
    legendre.check_public_value(MODP_2048, member)
    legendre.check_public_value(MODP_2048, 4)
    for outside in (MODP_2048.p - 2, 0, 1, MODP_2048.p - 1, MODP_2048.p):
        with pytest.raises(DhError) as ours:
            legendre.check_public_value(MODP_2048, outside)
        with pytest.raises(DhError) as reference:
            MODP_2048.validate_public(outside)
        assert str(ours.value) == str(reference.value)


def test_without_a_library_the_python_check_runs(monkeypatch):
    monkeypatch.setattr(legendre, "_SYMBOL", None)
    assert legendre.legendre_symbol(4, MODP_2048.p) is None
    legendre.check_public_value(MODP_2048, 4)
    with pytest.raises(DhError, match="not in the prime-order subgroup"):
        legendre.check_public_value(MODP_2048, MODP_2048.p - 2)


def test_out_of_domain_arguments_are_not_sent_to_c():
    assert legendre.legendre_symbol(5, 10) is None  # even modulus
    assert legendre.legendre_symbol(-1, 7) is None
    assert legendre.legendre_symbol(7, 7) is None
