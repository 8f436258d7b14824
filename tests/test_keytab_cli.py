"""`kerbtel keytab create|list`."""

from __future__ import annotations

import io
import stat

import pytest

from common.cli import main
from common.crypto import string_to_key
from common.keytab import Keytab
from common.principal import Principal

ALICE = Principal.parse("alice@EXAMPLE.TEST")


def run(argv, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_create_random_default_enctypes_and_list(tmp_path, capsys):
    path = tmp_path / "sc.keytab"
    code, out, _ = run(
        ["keytab", "create", "--principal", "sc/sc1.example.test@EXAMPLE.TEST", "--kvno", "300", "--random", "--out", str(path)],
        capsys,
    )
    assert code == 0 and "added 2 key(s)" in out
    keytab = Keytab.load(path)
    assert [(e.kvno, e.key.enctype, len(e.key.contents)) for e in keytab] == [(300, 18, 32), (300, 17, 16)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    code, out, _ = run(["keytab", "list", f"FILE:{path}"], capsys)
    assert code == 0
    assert out.splitlines()[0] == f"Keytab name: FILE:{path}"
    assert " 300 sc/sc1.example.test@EXAMPLE.TEST (aes256-cts-hmac-sha1-96)" in out
    assert " 300 sc/sc1.example.test@EXAMPLE.TEST (aes128-cts-hmac-sha1-96)" in out
    for entry in keytab:
        assert entry.key.contents.hex() not in out


def test_list_show_keys_and_timestamps(tmp_path, capsys):
    path = tmp_path / "k"
    run(["keytab", "create", "--principal", "x@R", "--enctype", "20", "--random", "--out", str(path)], capsys)
    key = Keytab.load(path).entries[0].key
    code, out, _ = run(["keytab", "list", "-t", "--show-keys", str(path)], capsys)
    assert code == 0 and f"(0x{key.contents.hex()})" in out and "Timestamp" in out


def test_create_from_password_uses_normal_salt(tmp_path, capsys, monkeypatch):
    path = tmp_path / "alice.keytab"
    code, _, _ = run(
        ["keytab", "create", "--principal", "alice@EXAMPLE.TEST", "--enctype", "aes256-cts", "--enctype", "16",
         "--enctype", "aes128-sha2:normal", "--password-stdin", "--out", str(path)],
        capsys,
        stdin="pässword\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0
    keys = Keytab.load(path).keys_for(ALICE)
    assert keys == [string_to_key(e, "pässword", "EXAMPLE.TESTalice") for e in (18, 16, 19)]


def test_custom_salt_and_append(tmp_path, capsys, monkeypatch):
    path = tmp_path / "k"
    run(["keytab", "create", "--principal", "alice@EXAMPLE.TEST", "--enctype", "17", "--random", "--out", str(path)], capsys)
    code, _, _ = run(
        ["keytab", "create", "--principal", "alice@EXAMPLE.TEST", "--kvno", "2", "--enctype", "17", "--password-stdin",
         "--salt", "SALT", "--append", "--out", str(path)],
        capsys,
        stdin="pw",
        monkeypatch=monkeypatch,
    )
    assert code == 0
    keytab = Keytab.load(path)
    assert [e.kvno for e in keytab] == [1, 2]
    assert keytab.keys_for(ALICE) == [string_to_key(17, "pw", "SALT")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--principal", "bad@", "--random"], "--principal: principal 'bad@' has an empty realm"),
        (["--principal", "nobody", "--random"], "has no realm"),
        (["--principal", "a@R", "--random", "--enctype", "23"], "unsupported enctype 23"),
        (["--principal", "a@R", "--random", "--enctype", "rc4-hmac"], "unknown enctype 'rc4-hmac'"),
        (["--principal", "a@R", "--random", "--kvno", "-1"], "--kvno -1 is outside"),
        (["--principal", "a@R", "--random", "--salt", "x"], "--salt only applies with --password-stdin"),
    ],
)
def test_operator_mistakes(tmp_path, capsys, argv, message):
    code, _, err = run(["keytab", "create", *argv, "--out", str(tmp_path / "k")], capsys)
    assert code == 2
    assert err.startswith("kerbtel keytab: ") and message in err
    assert not (tmp_path / "k").exists()


def test_refuses_to_overwrite_without_flag(tmp_path, capsys):
    path = tmp_path / "k"
    path.write_bytes(b"precious")
    code, _, err = run(["keytab", "create", "--principal", "a@R", "--random", "--out", str(path)], capsys)
    assert code == 2 and "exists; pass --append" in err
    assert path.read_bytes() == b"precious"
    code, _, _ = run(["keytab", "create", "--principal", "a@R", "--random", "--force", "--out", str(path)], capsys)
    assert code == 0 and len(Keytab.load(path)) == 2


def test_append_to_malformed_keytab(tmp_path, capsys):
    path = tmp_path / "k"
    path.write_bytes(b"\x05\x09")
    code, _, err = run(["keytab", "create", "--principal", "a@R", "--random", "--append", "--out", str(path)], capsys)
    assert code == 2 and "unsupported keytab version 0x0509" in err


def test_empty_password(tmp_path, capsys, monkeypatch):
    code, _, err = run(
        ["keytab", "create", "--principal", "a@R", "--password-stdin", "--out", str(tmp_path / "k")],
        capsys,
        stdin="\n",
        monkeypatch=monkeypatch,
    )
    assert code == 2 and "no password on standard input" in err


def test_list_errors(tmp_path, capsys):
    code, _, err = run(["keytab", "list", str(tmp_path / "missing")], capsys)
    assert code == 2 and "no such keytab file" in err
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x05\x02\x00\x00\x00\x10")
    code, _, err = run(["keytab", "list", str(bad)], capsys)
    assert code == 2 and "claims 16 bytes" in err


def test_random_or_password_is_required(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["keytab", "create", "--principal", "a@R", "--out", str(tmp_path / "k")])
    with pytest.raises(SystemExit):
        main(["keytab", "create", "--principal", "a@R", "--random", "--password-stdin", "--out", str(tmp_path / "k")])
