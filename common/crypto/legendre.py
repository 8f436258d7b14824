"""The DH public value's subgroup check in C: GMP's mpz_jacobi (or OpenSSL's BN_kronecker)
through ctypes, with common.crypto.dh's Python check as the fallback.

For the RFC 3526 safe primes p = 2q + 1 the order-q subgroup is the quadratic residues, so y is
in it exactly when the Legendre symbol (y/p) is 1 (Euler's criterion). common.crypto.dh computes
the symbol with a Jacobi-symbol loop in Python: ~0.3 ms for a 2048-bit value, as much as the
KDC's DH key generation. GMP (libgmp, which Debian's coreutils depend on) computes the same
symbol in ~8 us including the ctypes calls; OpenSSL's libcrypto (which Python's ssl module
loads) in ~0.1 ms (the Kronecker symbol is the Jacobi symbol for an odd positive modulus).

`legendre_symbol(a, p)` gives the C answer, or None when neither library loads; then
`check_public_value` uses the Python check. Nothing is kept between calls (thread-safe).
tests/test_kdc_legendre.py checks every backend against common.crypto.dh.jacobi_symbol.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

from common.crypto.dh import DhError, DhGroup

__all__ = ["BACKEND", "check_public_value", "legendre_symbol"]


def _octets(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


class _Mpz(ctypes.Structure):
    _fields_ = [("alloc", ctypes.c_int), ("size", ctypes.c_int), ("limbs", ctypes.c_void_p)]


def _gmp(lib: ctypes.CDLL) -> Callable[[int, int], int]:
    mpz = ctypes.POINTER(_Mpz)
    init = lib.__gmpz_init
    init.argtypes, init.restype = (mpz,), None
    clear = lib.__gmpz_clear
    clear.argtypes, clear.restype = (mpz,), None
    # mpz_import(rop, count, order, size, endian, nails, op): big-endian bytes
    load = lib.__gmpz_import
    load.argtypes = (mpz, ctypes.c_size_t, ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p)
    load.restype = None
    jacobi = lib.__gmpz_jacobi
    jacobi.argtypes, jacobi.restype = (mpz, mpz), ctypes.c_int

    def symbol(a: int, n: int) -> int:
        x, m = _Mpz(), _Mpz()
        px, pm = ctypes.byref(x), ctypes.byref(m)
        init(px)
        init(pm)
        try:
            da, dn = _octets(a), _octets(n)
            load(px, len(da), 1, 1, 1, 0, da)
            load(pm, len(dn), 1, 1, 1, 0, dn)
            return jacobi(px, pm)
        finally:
            clear(px)
            clear(pm)

    return symbol


def _openssl(lib: ctypes.CDLL) -> Callable[[int, int], int]:
    bin2bn = lib.BN_bin2bn
    bin2bn.argtypes, bin2bn.restype = (ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p), ctypes.c_void_p
    free = lib.BN_free
    free.argtypes, free.restype = (ctypes.c_void_p,), None
    ctx_new = lib.BN_CTX_new
    ctx_new.argtypes, ctx_new.restype = (), ctypes.c_void_p
    ctx_free = lib.BN_CTX_free
    ctx_free.argtypes, ctx_free.restype = (ctypes.c_void_p,), None
    kronecker = lib.BN_kronecker
    kronecker.argtypes, kronecker.restype = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p), ctypes.c_int

    def symbol(a: int, n: int) -> int:
        da, dn = _octets(a), _octets(n)
        ctx, x, m = ctx_new(), bin2bn(da, len(da), None), bin2bn(dn, len(dn), None)
        try:
            if not (ctx and x and m):
                raise MemoryError("OpenSSL BIGNUM allocation failed")
            result = kronecker(x, m, ctx)
        finally:
            for bn in (x, m):
                if bn:
                    free(bn)
            if ctx:
                ctx_free(ctx)
        if result not in (-1, 0, 1):
            raise OSError("BN_kronecker failed")
        return result

    return symbol


def _load() -> tuple[str | None, Callable[[int, int], int] | None]:
    candidates = (("gmp", ("libgmp.so.10", ctypes.util.find_library("gmp")), _gmp),
                  ("openssl", ("libcrypto.so.3", ctypes.util.find_library("crypto")), _openssl))
    for name, libraries, make in candidates:
        for library in libraries:
            if not library:
                continue
            try:
                symbol = make(ctypes.CDLL(library))
                if symbol(2, 7) == 1 and symbol(3, 7) == -1 and symbol(7, 21) == 0:  # a smoke test
                    return name, symbol
            except (OSError, AttributeError, MemoryError):
                continue
    return None, None


BACKEND, _SYMBOL = _load()  # "gmp", "openssl" or None (the Python check)


def legendre_symbol(a: int, p: int) -> int | None:
    """(a/p) for an odd prime p and 0 <= a < p, computed in C; None when no library loaded."""
    if _SYMBOL is None or not (p > 2 and p & 1 and 0 <= a < p):
        return None
    try:
        return _SYMBOL(a, p)
    except (OSError, MemoryError):
        return None


def check_public_value(group: DhGroup, y: int) -> None:
    """`group.validate_public(y)`: the range check, then the subgroup check (in C when it can be)."""
    group.validate_public(y, check_subgroup=False)
    symbol = legendre_symbol(y, group.p)
    if symbol is None:
        group.validate_public(y)  # the Python Jacobi symbol
    elif symbol != 1:
        raise DhError(f"DH public value is not in the prime-order subgroup of {group.name}")
