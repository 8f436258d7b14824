"""`kerbtel db|principal|customer` end to end through common.cli.main, in tmp_path."""

from __future__ import annotations

import io
import stat

import pytest

from common.cli import CliError, main
from common.cli.db import format_duration, parse_duration
from common.crypto import string_to_key
from common.keytab import Keytab
from common.pki import phone_id
from common.principal import Principal
from kdcd.db import CustomerStatus, SQLiteDatabase, load_master_key

REALM = "EXAMPLE.TEST"
SC = Principal.parse("sc/sc1.example.test@EXAMPLE.TEST")
GW = Principal.parse("gw/gw1.example.test@EXAMPLE.TEST")


@pytest.fixture
def run(capsys, monkeypatch):
    def _run(*argv: str, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def dbfile(tmp_path, run):
    path = str(tmp_path / "kdc.db")
    code, out, err = run("db", "init", "--db", path, "--realm", REALM)
    assert code == 0, err
    return path


def open_db(path: str) -> SQLiteDatabase:
    return SQLiteDatabase.open(path, master_key=load_master_key(path + ".mkey"))


def all_key_hex(path: str) -> list[str]:
    with open_db(path) as db:
        return [k.key.contents.hex() for e in db.list_principals(with_keys=True) for k in e.keys]


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("7d", 604800), ("12h", 43200), ("30m", 1800), ("45s", 45), ("2w", 1209600), ("1d12h", 129600),
     ("1d12h30m15s", 131415), ("3600", 3600), ("0", 0), (" 10M ", 600)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7x", "1h1d", "1d1d", "-5m", "1.5h", "7 d", "h7"])
def test_parse_duration_rejects(text):
    with pytest.raises(CliError):
        parse_duration(text)


def test_format_duration_roundtrip():
    for seconds in (0, 1, 59, 60, 3600, 86400, 129600, 131415, 604800):
        assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(604800) == "7d" and format_duration(129600) == "1d12h"


# --- db --------------------------------------------------------------------------------------


def test_db_init_creates_private_files(dbfile, run, tmp_path):
    for name in ("kdc.db", "kdc.db.mkey"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    with open_db(dbfile) as db:
        assert db.realm == REALM
        assert db.get_principal(Principal.krbtgt(REALM)).kvno == 1
    code, _, err = run("db", "init", "--db", dbfile, "--realm", REALM)
    assert code == 2 and "already exists" in err
    code, out, _ = run("db", "info", "--db", dbfile)
    assert code == 0 and "realm: EXAMPLE.TEST" in out and "principals: 1 (5 keys)" in out


def test_db_init_reuses_an_existing_stash_and_cleans_up_on_error(run, tmp_path):
    stash = str(tmp_path / "shared.mkey")
    code, _, _ = run("db", "init", "--db", str(tmp_path / "a.db"), "--realm", REALM, "--master-key", stash)
    assert code == 0
    code, out, _ = run("db", "init", "--db", str(tmp_path / "b.db"), "--realm", REALM, "--master-key", stash)
    assert code == 0 and "using the existing master key" in out
    code, _, err = run("db", "init", "--db", str(tmp_path / "c.db"), "--realm", "BAD/REALM")
    assert code == 2 and "invalid realm" in err
    assert not (tmp_path / "c.db").exists() and not (tmp_path / "c.db.mkey").exists()


def test_missing_database_and_stash(run, tmp_path, dbfile):
    code, _, err = run("principal", "list", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "kerbtel db init" in err
    code, _, err = run("principal", "add", "--db", dbfile, "x", "--master-key", str(tmp_path / "none.mkey"))
    assert code == 2 and "stash" in err


# --- principal -------------------------------------------------------------------------------


def test_principal_add_list_show_keytab(dbfile, run, tmp_path):
    code, out, err = run("principal", "add", "--db", dbfile, "sc/sc1.example.test", "--service", "--max-life", "2d")
    assert code == 0, err
    assert "added sc/sc1.example.test@EXAMPLE.TEST kvno 1 with 5 random key(s)" in out
    code, out, _ = run("principal", "list", "--db", dbfile)
    assert code == 0
    line = next(l for l in out.splitlines() if l.endswith("sc/sc1.example.test@EXAMPLE.TEST"))
    assert "2d" in line and "28d" in line and "service" in line and "18,17,20,19,16" in line
    code, out, _ = run("principal", "show", "--db", dbfile, "sc/sc1.example.test@EXAMPLE.TEST")
    assert code == 0 and "kvno: 1" in out and "(name type 3)" in out
    keytab_path = tmp_path / "sc.keytab"
    code, out, _ = run("principal", "keytab", "--db", dbfile, "sc/sc1.example.test", "--out", str(keytab_path))
    assert code == 0 and "wrote 5 key(s)" in out
    assert stat.S_IMODE(keytab_path.stat().st_mode) == 0o600
    with open_db(dbfile) as db:
        expected = [(1, k.key) for k in db.get_principal(SC).keys]
    assert [(e.kvno, e.key) for e in Keytab.load(keytab_path)] == expected
    assert all(e.principal.same_name(SC) for e in Keytab.load(keytab_path))
    code, _, err = run("principal", "keytab", "--db", dbfile, "sc/sc1.example.test", "--out", str(keytab_path))
    assert code == 2 and "--force" in err


def test_principal_password_stdin_matches_string_to_key(dbfile, run):
    code, out, _ = run(
        "principal", "add", "--db", dbfile, "gw/gw1.example.test", "--password-stdin", "--enctype", "aes256-cts",
        "--enctype", "20", stdin="hunter2 correct horse\n",
    )
    assert code == 0 and "2 password-derived key(s)" in out
    with open_db(dbfile) as db:
        keys = db.get_principal(GW).keys
    assert [k.key for k in keys] == [
        string_to_key(18, "hunter2 correct horse", "EXAMPLE.TESTgwgw1.example.test"),
        string_to_key(20, "hunter2 correct horse", "EXAMPLE.TESTgwgw1.example.test"),
    ]
    code, _, err = run("principal", "add", "--db", dbfile, "gw/gw2.example.test", "--password-stdin", stdin="")
    assert code == 2 and "no password" in err


def test_principal_rotate_modify_delete(dbfile, run, tmp_path):
    run("principal", "add", "--db", dbfile, "sc/sc1.example.test", "--service")
    code, out, _ = run("principal", "rotate", "--db", dbfile, "sc/sc1.example.test", "--grace", "1d")
    assert code == 0 and "to kvno 2" in out and "kvno 1 stays usable until" in out
    with open_db(dbfile) as db:
        entry = db.get_principal(SC)
        assert entry.kvno == 2 and {k.kvno for k in entry.keys} == {1, 2}
        gap = {k.expires - k.created for k in entry.keys if k.kvno == 1}
        assert {round(g.total_seconds() / 3600) for g in gap} == {24}
    path = tmp_path / "all.keytab"
    code, out, _ = run("principal", "keytab", "--db", dbfile, "sc/sc1.example.test", "--out", str(path), "--all-kvnos")
    assert code == 0 and "wrote 10 key(s)" in out and "kvno 2, 1" in out
    code, out, _ = run("principal", "modify", "--db", dbfile, "sc/sc1.example.test", "--disable", "--max-life", "1h")
    assert code == 0 and "DISABLED" in out and "max life 1h" in out
    code, out, _ = run("principal", "modify", "--db", dbfile, "sc/sc1.example.test", "--enable")
    assert code == 0 and "DISABLED" not in out
    code, out, _ = run("principal", "delete", "--db", dbfile, "sc/sc1.example.test")
    assert code == 0
    code, _, err = run("principal", "delete", "--db", dbfile, "sc/sc1.example.test")
    assert code == 2 and "no principal" in err
    code, _, err = run("principal", "delete", "--db", dbfile, "krbtgt/EXAMPLE.TEST")
    assert code == 2 and "cannot be deleted" in err


def test_principal_errors(dbfile, run):
    run("principal", "add", "--db", dbfile, "gw/gw1.example.test")
    code, _, err = run("principal", "add", "--db", dbfile, "gw/gw1.example.test")
    assert code == 2 and "already exists" in err
    code, _, err = run("principal", "add", "--db", dbfile, "gw/x@OTHER.TEST")
    assert code == 2 and "not in realm" in err
    code, _, err = run("principal", "add", "--db", dbfile, "gw//x")
    assert code == 2 and "empty name component" in err
    code, _, err = run("principal", "add", "--db", dbfile, "gw/y", "--enctype", "23")
    assert code == 2 and "unsupported enctype" in err
    with pytest.raises(SystemExit):
        run("principal", "add", "--db", dbfile, "gw/z", "--max-life", "forever")


def test_no_command_prints_key_bytes(dbfile, run, tmp_path):
    outputs = []
    for argv in (
        ("principal", "add", "--db", dbfile, "sc/sc1.example.test", "--service"),
        ("principal", "rotate", "--db", dbfile, "sc/sc1.example.test"),
        ("principal", "list", "--db", dbfile),
        ("principal", "show", "--db", dbfile, "sc/sc1.example.test"),
        ("principal", "keytab", "--db", dbfile, "sc/sc1.example.test", "--out", str(tmp_path / "k")),
        ("db", "info", "--db", dbfile),
    ):
        code, out, err = run(*argv)
        assert code == 0, err
        outputs.append(out + err)
    text = "\n".join(outputs)
    for hexkey in all_key_hex(dbfile):
        assert hexkey not in text


# --- customer --------------------------------------------------------------------------------


def test_customer_lifecycle(dbfile, run):
    code, out, err = run(
        "customer", "add", "--db", dbfile, "--phone", "+1 (555) 123-0001", "--phone", "+15551230002",
        "--label", "acct 7", "--option", "caller_id=true", "--option", "international=false", "--option", "plan=gold",
    )
    assert code == 0, err
    assert "added customer 1 (active) with 2 phone ID(s)" in out
    assert phone_id("+15551230001").hex() in out
    assert "5551230001" not in out  # the number itself is never printed
    with open_db(dbfile) as db:
        c = db.lookup_phone(phone_id("+15551230002"))
        assert dict(c.options) == {"caller_id": True, "international": False, "plan": "gold"}
        assert c.label == "acct 7" and c.generation == 1

    code, out, _ = run("customer", "set-status", "--db", dbfile, "--phone", "+15551230002", "suspended")
    assert code == 0 and "active -> suspended (generation 2)" in out
    code, out, _ = run("customer", "set-status", "--db", dbfile, "--id", "1", "suspended")
    assert code == 0 and "already suspended" in out
    code, out, _ = run("customer", "set-options", "--db", dbfile, "--id", "1", "--option", "plan=null", "--option", "lines=2")
    assert code == 0 and '{"caller_id":true,"international":false,"lines":2}' in out
    code, out, _ = run("customer", "add-phone", "--db", dbfile, "--id", "1", "--phone", "+15551230003")
    assert code == 0 and "generation 4" in out
    code, out, _ = run("customer", "remove-phone", "--db", dbfile, "--id", "1", "--phone", "+15551230001")
    assert code == 0 and "generation 5" in out
    code, out, _ = run("customer", "label", "--db", dbfile, "--id", "1", "account 7")
    assert code == 0
    code, out, _ = run("customer", "show", "--db", dbfile, "--phone", "+15551230003")
    assert code == 0 and "status: suspended" in out and "generation: 6" in out and "label: account 7" in out
    assert phone_id("+15551230001").hex() not in out

    run("customer", "add", "--db", dbfile, "--phone", "+15559990000")
    code, out, _ = run("customer", "list", "--db", dbfile)
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = run("customer", "list", "--db", dbfile, "--status", "active")
    assert code == 0 and len(out.splitlines()) == 2 and out.splitlines()[1].split()[0] == "2"

    code, out, _ = run("customer", "set-status", "--db", dbfile, "--id", "1", "terminated")
    assert code == 0
    code, _, err = run("customer", "set-status", "--db", dbfile, "--id", "1", "active")
    assert code == 2 and "never reactivated" in err
    with open_db(dbfile) as db:
        assert db.get_customer(1).status is CustomerStatus.TERMINATED


def test_customer_errors(dbfile, run):
    run("customer", "add", "--db", dbfile, "--phone", "+15551230001")
    code, _, err = run("customer", "add", "--db", dbfile, "--phone", "+15551230001")
    assert code == 2 and "already belongs to customer 1" in err
    code, _, err = run("customer", "add", "--db", dbfile, "--phone", "5551230001")
    assert code == 2 and "E.164" in err and "5551230001" not in err
    code, _, err = run("customer", "set-status", "--db", dbfile, "--phone", "+15550000000", "active")
    assert code == 2 and "no customer holds phone ID" in err and "5550000000" not in err
    code, _, err = run("customer", "set-status", "--db", dbfile, "--id", "9", "active")
    assert code == 2 and "no customer 9" in err
    code, _, err = run("customer", "add", "--db", dbfile, "--phone", "+15551230002", "--option", "Bad=1")
    assert code == 2 and "must match" in err
    code, _, err = run("customer", "add", "--db", dbfile, "--phone", "+15551230002", "--option", "novalue")
    assert code == 2 and "NAME=VALUE" in err
    code, _, err = run("customer", "set-options", "--db", dbfile, "--id", "1")
    assert code == 2 and "--option" in err
    with pytest.raises(SystemExit):
        run("customer", "set-status", "--db", dbfile, "--id", "1", "closed")
    with pytest.raises(SystemExit):
        run("customer", "set-status", "--db", dbfile, "--id", "0", "active")
    with open_db(dbfile) as db:
        assert [c.id for c in db.list_customers()] == [1]


def test_customer_commands_need_no_master_key(dbfile, run, tmp_path):
    (tmp_path / "kdc.db.mkey").unlink()
    code, out, err = run("customer", "add", "--db", dbfile, "--phone", "+15551230001")
    assert code == 0, err
    code, out, _ = run("principal", "list", "--db", dbfile)
    assert code == 0 and "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST" in out
    code, _, err = run("principal", "rotate", "--db", dbfile, "krbtgt/EXAMPLE.TEST")
    assert code == 2 and "stash" in err
