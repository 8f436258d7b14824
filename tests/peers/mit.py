"""A private MIT krb5 realm in a temporary directory, for interop tests and golden vectors.

    realm = MitRealm(tmp_dir, "EXAMPLE.TEST", pkinit=PkinitFiles(...))
    realm.create()                                   # kdc.conf, krb5.conf, kdb5_util create -s
    realm.kadmin("addprinc -pw secret alice", "addprinc -randkey sc/sc1.example.test")
    realm.ktadd(tmp_dir / "sc.keytab", "sc/sc1.example.test", enctypes=["aes256-cts"])
    realm.start()                                    # krb5kdc -n on a free port, waits until it answers
    realm.kinit("alice", password="secret", ccache=cc)
    realm.kvno("sc/sc1.example.test", ccache=cc)
    realm.stop()                                     # always: use `with realm:` or a fixture finalizer

Every command runs with KRB5_CONFIG / KRB5_KDC_PROFILE / KRB5CCNAME pointing into the directory,
so nothing on the machine (/etc/krb5.conf, other KDCs) is read or touched. Ports come from binding
port 0, never fixed numbers. `realm_fixture()` turns this into a module-scoped pytest fixture that
calls `require_peer` first (skip locally, fail under CI=true when MIT is missing).

Tests import it as `peers.mit` (pytest puts tests/ on sys.path, as for `conftest`);
`tests/vectors/regenerate.py` uses it without pytest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.ports import free_port

MIT_SERVER_PROGRAMS = ("krb5kdc", "kdb5_util", "kadmin.local")
MIT_CLIENT_PROGRAMS = ("kinit", "klist", "kvno")
MIT_PROGRAMS = MIT_SERVER_PROGRAMS + MIT_CLIENT_PROGRAMS
MASTER_PASSWORD = "kerbtel-test-master"
# Every enctype MIT 1.20 can still be told to use; des3 (16) needs allow_weak_crypto.
ALL_ENCTYPES = (
    "aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal "
    "aes256-cts-hmac-sha384-192:normal aes128-cts-hmac-sha256-128:normal des3-cbc-sha1:normal"
)
PERMITTED_ENCTYPES = (
    "aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96 aes256-cts-hmac-sha384-192 aes128-cts-hmac-sha256-128 des3-cbc-sha1"
)
ENCTYPE_NAMES = {
    16: "des3-cbc-sha1",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
}


class MitError(RuntimeError):
    """An MIT command failed; the message carries its command line, exit status and output."""


def mit_version() -> str:
    """'1.20.1' from krb5-config, or 'unknown'."""
    try:
        out = subprocess.run(["krb5-config", "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().rsplit(" ", 1)[-1] or "unknown"


def _conf_section(name: str, values: Mapping[str, object]) -> str:
    lines = [f"[{name}]"]
    for key, value in values.items():
        if isinstance(value, Mapping):
            lines.append(f"    {key} = {{")
            for k, v in value.items():
                for item in v if isinstance(v, (list, tuple)) else [v]:
                    lines.append(f"        {k} = {item}")
            lines.append("    }")
        else:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                lines.append(f"    {key} = {item}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PkinitFiles:
    """PEM files for PKINIT: the KDC's certificate and key, the CAs it trusts for clients, and the
    CAs clients trust for the KDC (defaults to the same anchors)."""

    kdc_cert: Path
    kdc_key: Path
    client_ca: Sequence[Path]
    kdc_ca: Sequence[Path] = ()


class MitRealm:
    """One MIT realm (database, KDC configuration, client configuration) in `directory`."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        realm: str = "EXAMPLE.TEST",
        *,
        pkinit: PkinitFiles | None = None,
        kdc_realm_options: Mapping[str, object] | None = None,
        libdefaults: Mapping[str, object] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.dir = Path(directory).absolute()
        self.realm = realm
        self.pkinit = pkinit
        self.host = host
        self.kdc_realm_options = dict(kdc_realm_options or {})
        self.libdefaults = dict(libdefaults or {})
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.krb5_conf = self.dir / "krb5.conf"
        self.kdc_conf = self.dir / "kdc.conf"
        self.database = self.dir / "principal"
        self.stash = self.dir / "stash"
        self.kdc_log = self.dir / "kdc.log"
        self.default_ccache = self.dir / "ccache"
        self.extra: object = None  # whatever a fixture's setup() returned
        self.pki = None  # tests.peers.certs.TestPki when made by realm_fixture(with_pki=True)

    # -- configuration ----------------------------------------------------------------------

    def _kdc_conf_text(self) -> str:
        realm_opts: dict[str, object] = {
            "database_module": "kerbtel_db",
            "key_stash_file": self.stash,
            "acl_file": self.dir / "kadm5.acl",
            "kdc_listen": f"{self.host}:{self.port}",
            "kdc_tcp_listen": f"{self.host}:{self.port}",
            "master_key_type": "aes256-cts-hmac-sha1-96",
            "supported_enctypes": ALL_ENCTYPES,
            "max_life": "10h 0m 0s",
            "max_renewable_life": "7d 0h 0m 0s",
        }
        if self.pkinit is not None:
            realm_opts["pkinit_identity"] = f"FILE:{self.pkinit.kdc_cert},{self.pkinit.kdc_key}"
            realm_opts["pkinit_anchors"] = [f"FILE:{p}" for p in self.pkinit.client_ca]
            realm_opts["pkinit_dh_min_bits"] = 2048
        realm_opts.update(self.kdc_realm_options)
        return (
            _conf_section("realms", {self.realm: realm_opts})
            + _conf_section("dbmodules", {"kerbtel_db": {"db_library": "db2", "database_name": self.database}})
            + _conf_section("logging", {"kdc": f"FILE:{self.kdc_log}", "admin_server": f"FILE:{self.dir / 'kadmin.log'}"})
        )

    def client_config(
        self,
        name: str = "krb5.conf",
        *,
        kdc: str | None = None,
        libdefaults: Mapping[str, object] | None = None,
    ) -> Path:
        """Write a client krb5.conf (the default one, or another variant) and return its path.

        `kdc` overrides the KDC address (e.g. a recording relay); `libdefaults` add to or replace
        the realm's defaults (e.g. pkinit_dh_min_bits)."""
        values: dict[str, object] = {
            "default_realm": self.realm,
            "dns_lookup_kdc": "false",
            "dns_lookup_realm": "false",
            "rdns": "false",
            "dns_canonicalize_hostname": "false",
            "udp_preference_limit": 1,
            "allow_weak_crypto": "true",
            "permitted_enctypes": PERMITTED_ENCTYPES,
            "default_tkt_enctypes": PERMITTED_ENCTYPES,
            "default_tgs_enctypes": PERMITTED_ENCTYPES,
            "ticket_lifetime": "10h",
            "forwardable": "true",
            "noaddresses": "true",
        }
        if self.pkinit is not None:
            values["pkinit_anchors"] = [f"FILE:{p}" for p in (self.pkinit.kdc_ca or self.pkinit.client_ca)]
        values.update(self.libdefaults)
        values.update(libdefaults or {})
        values = {k: v for k, v in values.items() if v is not None}
        text = _conf_section("libdefaults", values) + _conf_section(
            "realms", {self.realm: {"kdc": kdc or f"{self.host}:{self.port}"}}
        ) + _conf_section("domain_realm", {".example.test": self.realm, "example.test": self.realm})
        path = self.dir / name
        path.write_text(text)
        return path

    def env(self, ccache: str | os.PathLike[str] | None = None, config: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """The environment every MIT program of this realm runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
        env["KRB5_CONFIG"] = str(config or self.krb5_conf)
        env["KRB5_KDC_PROFILE"] = str(self.kdc_conf)
        env["KRB5CCNAME"] = f"FILE:{ccache or self.default_ccache}"
        env["KRB5RCACHENAME"] = "none:"
        env["KRB5_KTNAME"] = f"FILE:{self.dir / 'default.keytab'}"
        env["KRB5_CLIENT_KTNAME"] = f"FILE:{self.dir / 'default-client.keytab'}"
        return env

    # -- running commands -------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        ccache: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 30,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = self.env(ccache, config)
        env.update(extra_env or {})
        argv = [str(a) for a in argv]
        proc = subprocess.run(argv, env=env, input=input, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if check and proc.returncode != 0:
            raise MitError(
                f"{' '.join(argv)} exited {proc.returncode}\nstdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
                + self._kdc_log_tail()
            )
        return proc

    def _kdc_log_tail(self) -> str:
        try:
            lines = self.kdc_log.read_text(errors="replace").splitlines()[-8:]
        except OSError:
            return ""
        return "\nkdc.log tail:\n  " + "\n  ".join(lines)

    def create(self) -> MitRealm:
        """Write the configuration files and create the database (KDC not yet started)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        (self.dir / "kadm5.acl").write_text("")
        self.kdc_conf.write_text(self._kdc_conf_text())
        self.client_config()
        self.run(["kdb5_util", "create", "-s", "-r", self.realm, "-P", MASTER_PASSWORD])
        return self

    def kadmin(self, *queries: str) -> str:
        """Run kadmin.local queries (one process each, so a failing query names itself)."""
        out = []
        for query in queries:
            proc = self.run(["kadmin.local", "-r", self.realm, "-q", query])
            # kadmin.local exits 0 even when a query fails; it reports on stderr.
            bad = [
                line
                for line in proc.stderr.splitlines()
                if line.strip() and "Authenticating as principal" not in line and "No policy specified" not in line
                and "Entry for principal" not in line  # ktadd progress goes to stdout; tolerate either
            ]
            if bad:
                raise MitError(f"kadmin.local -q {query!r}: {' / '.join(bad)}")
            out.append(proc.stdout)
        return "".join(out)

    def principal(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self.realm}"

    def add_principal(
        self,
        name: str,
        *,
        password: str | None = None,
        enctypes: Iterable[str] | None = None,
        requires_preauth: bool = False,
        nokey: bool = False,
    ) -> None:
        """addprinc with a password, a random key (default) or no key (PKINIT-only clients)."""
        args = ["addprinc"]
        if requires_preauth:
            args.append("+requires_preauth")
        if enctypes:
            args += ["-e", ",".join(e if ":" in e else f"{e}:normal" for e in enctypes)]
        if nokey:
            args.append("-nokey")
        elif password is not None:
            if '"' in password:
                raise ValueError("kadmin.local cannot take a password containing a double quote")
            args += ["-pw", f'"{password}"']  # kadmin's own tokenizer honours double quotes
        else:
            args.append("-randkey")
        self.kadmin(" ".join(args + [self.principal(name)]))

    def ktadd(
        self,
        keytab: str | os.PathLike[str],
        name: str,
        *,
        enctypes: Iterable[str] | None = None,
        norandkey: bool = False,
    ) -> Path:
        """Extract keys of `name` into `keytab` (new random keys unless norandkey)."""
        args = ["ktadd", "-k", str(keytab)]
        if norandkey:
            args.append("-norandkey")
        if enctypes:
            args += ["-e", ",".join(e if ":" in e else f"{e}:normal" for e in enctypes)]
        self.kadmin(" ".join(args + [self.principal(name)]))
        return Path(keytab)

    # -- the KDC process ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> MitRealm:
        """Start `krb5kdc -n` and wait until it accepts TCP connections."""
        if self.process is not None:
            return self
        log = open(self.dir / "krb5kdc.out", "ab")
        try:
            self.process = subprocess.Popen(
                ["krb5kdc", "-n", "-r", self.realm], env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                out = (self.dir / "krb5kdc.out").read_text(errors="replace")
                raise MitError(f"krb5kdc exited {code} at start: {out.strip()}{self._kdc_log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise MitError(f"krb5kdc did not answer on {self.host}:{self.port} within {timeout} s")
                time.sleep(0.02)

    def reconfigure(self, **kdc_realm_options: object) -> MitRealm:
        """Change kdc.conf realm options (e.g. pkinit_dh_min_bits=4096) and restart the KDC if it runs."""
        running = self.process is not None
        self.stop()
        self.kdc_realm_options.update(kdc_realm_options)
        self.kdc_conf.write_text(self._kdc_conf_text())
        if running:
            self.start()
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> MitRealm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ----------------------------------------------------------------------------

    def kinit(
        self,
        principal: str,
        *,
        password: str | None = None,
        identity: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        rsa: bool = False,
        service: str | None = None,
        keytab: str | os.PathLike[str] | None = None,
        ccache: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        check: bool = True,
        trace: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """kinit with a password (on stdin), a certificate (PKINIT, DH or RSA) or a keytab."""
        argv: list[str] = ["kinit"]
        if identity is not None:
            cert, key = identity
            argv += ["-X", f"X509_user_identity=FILE:{cert},{key}"]
            if rsa:
                argv += ["-X", "flag_RSA_PROTOCOL=yes"]
        if keytab is not None:
            argv += ["-k", "-t", str(keytab)]
        if service is not None:
            argv += ["-S", self.principal(service)]
        argv += list(extra_args)
        argv.append(self.principal(principal))
        extra_env = {"KRB5_TRACE": "/dev/stderr"} if trace else None
        return self.run(
            argv,
            ccache=ccache,
            config=config,
            input=(password + "\n") if password is not None else None,
            check=check,
            extra_env=extra_env,
        )

    def kvno(
        self, *services: str, ccache=None, config=None, check: bool = True, extra_args: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        argv = ["kvno", *extra_args, *(self.principal(s) for s in services)]
        return self.run(argv, ccache=ccache, config=config, check=check)

    def klist(
        self, *args: str | os.PathLike[str], ccache=None, check: bool = True, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(["klist", *args], ccache=ccache, check=check, extra_env=extra_env)


def mit_available() -> bool:
    return all(shutil.which(p) for p in MIT_PROGRAMS)


def realm_fixture(setup=None, *, scope: str = "module", name: str = "mit_realm", with_pki: bool = False, **realm_kwargs):
    """A pytest fixture yielding a started MitRealm (one per module by default).

    With `with_pki=True`, certificates from `common.pki` are made first (tests.peers.certs.make_pki)
    and the KDC is configured for PKINIT with them; they are at `realm.pki`. `setup(realm, tmp_dir)`
    runs after the database exists and before the KDC starts (add principals, extract keytabs...);
    its return value is kept as `realm.extra`. Remaining keyword arguments go to MitRealm.
    """
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _fixture(tmp_path_factory):
        from conftest import require_peer

        require_peer(*MIT_PROGRAMS)
        tmp_dir = tmp_path_factory.mktemp("mit")
        kwargs = dict(realm_kwargs)
        pki = None
        if with_pki:
            from .certs import make_pki

            pki = make_pki(tmp_dir / "pki", kwargs.get("realm", "EXAMPLE.TEST"))
            kwargs["pkinit"] = pki.mit_files()
        realm = MitRealm(tmp_dir / "realm", **kwargs)
        realm.pki = pki
        try:
            realm.create()
            realm.extra = setup(realm, tmp_dir) if setup is not None else None
            realm.start()
            yield realm
        finally:
            realm.stop()

    return _fixture
