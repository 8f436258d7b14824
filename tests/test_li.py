"""common/li.py and `kerbtel li`: the lawful-intercept store is write-only for the SC.

Round trip (API and CLI), nothing identifying in clear on disk, a wrong private key and a
tampered record each give one clean error, file modes, a torn line from a crash, and two
processes appending at once without corrupting a line.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.li import (
    InterceptStore,
    LiKeyError,
    LiRecordError,
    generate_key_pair,
    key_id,
    load_private_key,
    load_public_key,
    read_records,
    store_files,
)

ROOT = Path(__file__).resolve().parent.parent
START = dt.datetime(2030, 6, 1, 12, 0, 5, tzinfo=dt.timezone.utc)
END = START + dt.timedelta(minutes=3, seconds=2)
SUBKEY = bytes(range(0x40, 0x60))
PARTIES = {"from": "+15551230001", "to": "+15551230002"}


@pytest.fixture
def keys(tmp_path):
    private, public = generate_key_pair(tmp_path / "keys")
    return load_private_key(private), load_public_key(public), private, public


def kerbtel(*args):
    return subprocess.run([sys.executable, "-m", "common.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_round_trip(tmp_path, keys):
    private, public, _, _ = keys
    store = InterceptStore(tmp_path / "li", public, sc="sc1")
    path = store.record("call-1@sc1", PARTIES, START, END, {"subkey": SUBKEY})
    store.record("call-2@sc1", {"from": "+15551230002", "to": "611"}, START, None, {"subkey": b"\x01" * 32})
    assert path.name == "li-2030-06-01.jsonl"
    (rec,) = list(read_records(tmp_path / "li", private, call_id="call-1@sc1"))
    assert rec.call_id == "call-1@sc1" and rec.parties == PARTIES and rec.sc == "sc1"
    assert rec.start == "2030-06-01T12:00:05Z" and rec.end == "2030-06-01T12:03:07Z"
    assert rec.keys == {"subkey": SUBKEY} and rec.line == 1
    assert len(list(read_records(path, private))) == 2
    assert "contents" not in repr(rec) and SUBKEY.hex() not in repr(rec)


def test_record_from_a_call_engine_object(tmp_path, keys):
    """The call engine passes its own CallRecord (scd/calls.py's shape); the sink reads its fields."""

    @dataclass(frozen=True)
    class CallRecord:
        call_id: str
        role: str
        caller: str
        callee: str
        caller_principal: str
        callee_principal: str
        setup: float
        start: float | None
        end: float
        outcome: str
        spi: int
        esp_suite: str
        media_profile: str
        subkey: bytes

    private, public, _, _ = keys
    store = InterceptStore(tmp_path / "li", public)
    t = START.timestamp()
    store.record(CallRecord("c3", "source", "+15551230001", "+15551230002", "cta/02aa@EXAMPLE.TEST", "sc:sc2",
                            t - 2, t, t + 182, "completed", 0x1234, "aes-gcm-16", "aes_cm_128_hmac_sha1_80", SUBKEY))
    (rec,) = list(read_records(tmp_path / "li", private))
    assert rec.keys == {"subkey": SUBKEY}
    assert rec.start == "2030-06-01T12:00:05Z" and rec.end == "2030-06-01T12:03:07Z"
    assert rec.parties["caller"] == "+15551230001" and rec.parties["callee"] == "+15551230002"
    assert rec.parties["spi"] == 0x1234 and rec.parties["setup"] == "2030-06-01T12:00:03Z"
    assert rec.parties["outcome"] == "completed"

    @dataclass
    class Generic:
        call_id: str
        parties: dict
        start: dt.datetime
        end: dt.datetime | None
        keys: dict

    store.record(Generic("c4", PARTIES, START, None, {"a": b"1", "b": b"2"}))
    (rec,) = list(read_records(tmp_path / "li", private, call_id="c4"))
    assert rec.keys == {"a": b"1", "b": b"2"} and rec.parties == PARTIES and rec.end is None
    with pytest.raises(TypeError):
        store.record(object())
    with pytest.raises(ValueError):
        store.record("c4", PARTIES, START, END, {"subkey": "not bytes"})
    with pytest.raises(ValueError):
        store.record("c5", PARTIES, START.replace(tzinfo=None), END, {})


def test_store_is_an_intercept_sink_for_the_call_engine(tmp_path, keys):
    """scd.calls.CallRecord, whatever its exact fields: every bytes field comes back as a key."""
    import dataclasses

    from scd import calls

    private, public, _, _ = keys
    sink: calls.InterceptSink = InterceptStore(tmp_path / "li", public)
    t = START.timestamp()
    sample = {"bytes": SUBKEY, "float": t, "int": 4660, "str": "x"}
    values = {f.name: next((v for k, v in sample.items() if k in str(f.type)), "x")
              for f in dataclasses.fields(calls.CallRecord)}
    values["call_id"] = "real-1"
    sink.record(calls.CallRecord(**values))
    (rec,) = list(read_records(tmp_path / "li", private))
    assert rec.call_id == "real-1" and SUBKEY in rec.keys.values()


def test_nothing_identifying_in_clear(tmp_path, keys):
    private, public, _, _ = keys
    store = InterceptStore(tmp_path / "li", public, sc="sc1")
    path = store.record("call-secret-id", PARTIES, START, END, {"subkey": SUBKEY})
    data = path.read_bytes()
    for needle in (SUBKEY, SUBKEY.hex().encode(), b"15551230001", b"15551230002", b"call-secret-id", b"sc1"):
        assert needle not in data
    import base64

    for value in json.loads(data).values():  # nor inside the base64 fields
        if isinstance(value, str):
            try:
                decoded = base64.b64decode(value)
            except ValueError:
                continue
            assert SUBKEY not in decoded and b"1555123" not in decoded
    assert set(json.loads(data)) == {"v", "alg", "kid", "epk", "wk", "ct"}
    assert json.loads(data)["kid"] == key_id(public)


def test_two_records_of_the_same_call_share_no_ciphertext(tmp_path, keys):
    _, public, _, _ = keys
    store = InterceptStore(tmp_path / "li", public)
    path = store.record("c", PARTIES, START, END, {"subkey": SUBKEY})
    store.record("c", PARTIES, START, END, {"subkey": SUBKEY})
    a, b = [json.loads(line) for line in path.read_text().splitlines()]
    assert a["epk"] != b["epk"] and a["wk"] != b["wk"] and a["ct"] != b["ct"]


def test_wrong_private_key_is_a_clean_error(tmp_path, keys):
    _, public, _, _ = keys
    InterceptStore(tmp_path / "li", public).record("c", PARTIES, START, END, {"subkey": SUBKEY})
    other, _ = generate_key_pair(tmp_path / "other")
    with pytest.raises(LiKeyError, match="not to this private key"):
        list(read_records(tmp_path / "li", load_private_key(other)))
    proc = kerbtel("li", "export", "--store", tmp_path / "li", "--call-id", "c", "--key", other)
    assert proc.returncode == 2 and "not to this private key" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("field", ["ct", "wk", "epk", "kid-swap"])
def test_tampered_record_is_a_clean_error(tmp_path, keys, field):
    private, public, private_path, _ = keys
    path = InterceptStore(tmp_path / "li", public).record("c", PARTIES, START, END, {"subkey": SUBKEY})
    obj = json.loads(path.read_text())
    if field == "kid-swap":  # the header is associated data: a changed version/alg/kid/epk fails
        obj["epk"] = json.loads(InterceptStore(tmp_path / "li2", public).record("d", {}, START, END, {})
                                .read_text())["epk"]
    else:
        import base64

        raw = bytearray(base64.b64decode(obj[field]))
        raw[-1 if field != "epk" else 0] ^= 0x01
        obj[field] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(obj) + "\n")
    with pytest.raises(LiRecordError, match=r"li-2030-06-01.jsonl:1: does not authenticate"):
        list(read_records(tmp_path / "li", private))
    proc = kerbtel("li", "export", "--store", tmp_path / "li", "--call-id", "c", "--key", private_path)
    assert proc.returncode == 2 and "does not authenticate" in proc.stderr and "Traceback" not in proc.stderr


def test_file_modes(tmp_path, keys):
    _, public, private_path, public_path = keys
    assert stat.S_IMODE(os.stat(private_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(public_path).st_mode) == 0o644
    old = os.umask(0)
    try:
        path = InterceptStore(tmp_path / "li", public).record("c", PARTIES, START, END, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "li").st_mode) == 0o700
    os.chmod(path, 0o644)  # widened by someone: the next append narrows it again
    InterceptStore(tmp_path / "li", public).record("c2", PARTIES, START, END, {})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(LiKeyError, match="refusing to overwrite"):
        generate_key_pair(private_path.parent)


def test_torn_line_after_a_crash(tmp_path, keys):
    private, public, _, _ = keys
    store = InterceptStore(tmp_path / "li", public)
    path = store.record("a", PARTIES, START, END, {})
    with open(path, "ab") as fh:
        fh.write(b'{"v":1,"alg":"X25519-HK')  # a crash in the middle of an append
    store.record("b", PARTIES, START, END, {})
    errors: list = []
    got = [r.call_id for r in read_records(path, private, skip_bad=True, errors=errors)]
    assert got == ["a", "b"] and len(errors) == 1 and ":2: not a JSON line" in str(errors[0])


def _writer(directory: str, public_pem: str, who: str, count: int) -> None:
    store = InterceptStore(directory, load_public_key(public_pem))
    for i in range(count):
        store.record(f"{who}-{i}", {"from": who, "to": "x" * (i % 50)}, START, END, {"subkey": os.urandom(32)})


def test_concurrent_appends_from_two_processes(tmp_path, keys):
    private, _, _, public_path = keys
    ctx = multiprocessing.get_context("spawn")
    count = 150
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "li"), str(public_path), who, count)) for who in "AB"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    (path,) = store_files(tmp_path / "li")
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2 * count + 1
    ids = sorted(r.call_id for r in read_records(tmp_path / "li", private))
    assert ids == sorted(f"{w}-{i}" for w in "AB" for i in range(count))


def test_cli_keygen_and_export(tmp_path):
    proc = kerbtel("li", "keygen", "--out", tmp_path / "agency")
    assert proc.returncode == 0, proc.stderr
    public = load_public_key(tmp_path / "agency" / "intercept.pub")
    InterceptStore(tmp_path / "li", public, sc="sc1").record("call-7", PARTIES, START, END, {"subkey": SUBKEY})
    key = tmp_path / "agency" / "intercept.key"
    proc = kerbtel("li", "export", "--store", tmp_path / "li", "--call-id", "call-7", "--key", key)
    assert proc.returncode == 0, proc.stderr
    assert f"key subkey: {SUBKEY.hex()}" in proc.stdout and "+15551230002" in proc.stdout
    proc = kerbtel("li", "export", "--store", tmp_path / "li", "--call-id", "call-7", "--key", key, "--json")
    (doc,) = json.loads(proc.stdout)
    assert doc == {"call_id": "call-7", "parties": PARTIES, "start": "2030-06-01T12:00:05Z",
                   "end": "2030-06-01T12:03:07Z", "keys": {"subkey": SUBKEY.hex()}, "sc": "sc1"}
    proc = kerbtel("li", "export", "--store", tmp_path / "li", "--call-id", "nope", "--key", key)
    assert proc.returncode == 2 and "no record of call 'nope'" in proc.stderr
    proc = kerbtel("li", "export", "--store", tmp_path / "missing", "--call-id", "x", "--key", key)
    assert proc.returncode == 2 and "no intercept store" in proc.stderr
    proc = kerbtel("li", "keygen", "--out", tmp_path / "agency")
    assert proc.returncode == 2 and "refusing to overwrite" in proc.stderr
    proc = kerbtel("li", "export", "--store", tmp_path / "li", "--call-id", "x", "--key", tmp_path / "agency" / "intercept.pub")
    assert proc.returncode == 2 and "not an unencrypted PEM private key" in proc.stderr
