"""Fuzzing KdcEngine.handle_request: random bytes and mutated golden requests (MIT's and our own)
never raise; every answer is None (not Kerberos) or a decodable KRB-ERROR / KDC reply."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.asn1 import decode
from common.asn1.krb5 import AS_REP, KRB_ERROR, TGS_REP
from test_kdc_engine_support import pkinit_request
from test_pki_factories import NOW, world

VECTORS = Path(__file__).parent / "vectors" / "mit"
GOLDEN = [(VECTORS / f).read_bytes() for f in ("as-req-initial.bin", "as-req-pkinit-dh.bin", "as-req-pkinit-rsa.bin", "as-req-password.bin", "tgs-req.bin")]

_ENGINE = {}


def engine():
    if "realm" not in _ENGINE:
        import tempfile

        from test_kdc_engine_support import make_realm

        _ENGINE["realm"] = make_realm(Path(tempfile.mkdtemp()))
        w = world()
        GOLDEN.append(pkinit_request(w.provisioned, w.device_key).data)
    return _ENGINE["realm"].engine


def check(data: bytes) -> None:
    reply = engine().handle_request(data, wallclock=NOW, now=1.0, peer="fuzz")
    if reply is not None:
        assert isinstance(decode(reply), (KRB_ERROR, AS_REP, TGS_REP))
    # A caught bug still answers KRB_ERR_GENERIC; the fuzzer must not find any.
    assert engine().counters["kdc_internal_error"] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_golden_requests_never_raise(data):
    engine()
    original = data.draw(st.sampled_from(GOLDEN))
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        position = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if kind == "flip" and mutated:
            mutated[position] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del mutated[position:]
        elif kind == "insert":
            mutated[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif mutated:
            del mutated[position]
    check(bytes(mutated))


def test_prefix_truncations_of_a_pkinit_request_never_raise():
    engine()
    request = GOLDEN[-1]
    for cut in range(0, len(request), 37):
        check(request[:cut])
