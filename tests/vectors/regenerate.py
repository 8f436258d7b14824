#!/usr/bin/env python3
"""Record golden Kerberos messages from MIT krb5 into tests/vectors/mit/.

    .venv/bin/python tests/vectors/regenerate.py [--out DIR]

A throw-away MIT realm (tests/peers/mit.py) runs krb5kdc on a free port; MIT's kinit/kvno talk
to it through a small TCP relay (RFC 4120 7.2.2: 4-byte big-endian length, then the message)
that records every request and reply. libkrb5's krb5_mk_req (via ctypes) makes an AP-REQ.
The .bin files hold single DER messages; manifest.json says what each is, plus the MIT version,
realm, principals and the key material needed to decrypt (a keytab, a ccache, the test password
and the throw-away CTA key). Every run makes new keys, nonces and times, so the files change;
tests/test_vectors_mit.py checks structure, decryption and byte-exact re-encoding only.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT, ROOT / "tests"):  # `common` (if not installed) and the tests' `peers` package
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from peers.certs import make_pki  # noqa: E402
from peers.mit import MitRealm, mit_version  # noqa: E402

REALM = "EXAMPLE.TEST"
PASSWORD = "kerbtel-vector-password"
CTA_MAC = "0011223344aa"
CTA = f"cta/{CTA_MAC}@{REALM}"
ALICE = f"alice@{REALM}"
SC = f"sc/sc1.example.test@{REALM}"
MAX_FRAME = 1 << 20


# --- the recording relay -----------------------------------------------------------------------


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> bytes | None:
    """One RFC 4120 7.2.2 TCP record, or None at a clean end of stream."""
    header = _read_exact(sock, 4)
    if header is None:
        return None
    length = int.from_bytes(header, "big")
    if length & 0x80000000 or length > MAX_FRAME:
        raise ValueError(f"unexpected TCP record length {length:#x}")
    body = _read_exact(sock, length)
    if body is None:
        raise ValueError("stream ended inside a record")
    return body


def write_frame(sock: socket.socket, message: bytes) -> None:
    sock.sendall(len(message).to_bytes(4, "big") + message)


class KdcRelay:
    """Forwards TCP Kerberos records to the KDC and records (request, reply) pairs in order."""

    def __init__(self, kdc: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.kdc = kdc
        self.listener = socket.create_server((host, 0))
        self.address = self.listener.getsockname()
        self.exchanges: list[tuple[bytes, bytes]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.kdc, timeout=30) as upstream:
            while True:
                request = read_frame(conn)
                if request is None:
                    return
                write_frame(upstream, request)
                reply = read_frame(upstream)
                if reply is None:
                    return
                with self._lock:
                    self.exchanges.append((request, reply))
                write_frame(conn, reply)

    def take(self) -> list[tuple[bytes, bytes]]:
        with self._lock:
            taken, self.exchanges = self.exchanges, []
        return taken

    def close(self) -> None:
        self.listener.close()


# --- an AP-REQ from MIT's library ----------------------------------------------------------------


class _KrbData(ctypes.Structure):
    _fields_ = [("magic", ctypes.c_int32), ("length", ctypes.c_uint), ("data", ctypes.c_void_p)]


def mit_mk_req(env: dict[str, str], ccache: Path, service: str, hostname: str) -> bytes:
    """krb5_mk_req(service, hostname) with the credentials in `ccache` (libkrb5.so.3 via ctypes).

    libkrb5 reads KRB5_CONFIG when the context is created, so the environment is set first.
    """
    for key in [k for k in os.environ if k.startswith("KRB5")]:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith("KRB5")})
    lib = ctypes.CDLL(ctypes.util.find_library("krb5") or "libkrb5.so.3")
    ctx = ctypes.c_void_p()
    cc = ctypes.c_void_p()
    auth_context = ctypes.c_void_p()
    out = _KrbData()

    def check(code: int, what: str) -> None:
        if code:
            lib.krb5_get_error_message.restype = ctypes.c_char_p
            message = lib.krb5_get_error_message(ctx, ctypes.c_int32(code))
            raise RuntimeError(f"{what} failed: {code} {message!r}")

    check(lib.krb5_init_context(ctypes.byref(ctx)), "krb5_init_context")
    try:
        check(lib.krb5_cc_resolve(ctx, f"FILE:{ccache}".encode(), ctypes.byref(cc)), "krb5_cc_resolve")
        try:
            check(
                lib.krb5_mk_req(
                    ctx,
                    ctypes.byref(auth_context),
                    ctypes.c_int32(0),
                    service.encode(),
                    hostname.encode(),
                    None,
                    cc,
                    ctypes.byref(out),
                ),
                "krb5_mk_req",
            )
            message = ctypes.string_at(out.data, out.length)
            lib.krb5_free_data_contents(ctx, ctypes.byref(out))
            return message
        finally:
            if auth_context:
                lib.krb5_auth_con_free(ctx, auth_context)
            lib.krb5_cc_close(ctx, cc)
    finally:
        lib.krb5_free_context(ctx)


# --- the recording session ---------------------------------------------------------------------


def _tag(message: bytes) -> int:
    return message[0] & 0x1F


def _expect(exchanges: list[tuple[bytes, bytes]], tags: list[tuple[int, int]], what: str) -> None:
    got = [(_tag(q), _tag(r)) for q, r in exchanges]
    if got != tags:
        raise RuntimeError(f"{what}: expected exchanges {tags}, recorded {got}")


def record(out: Path, work: Path) -> dict:
    vectors: dict[str, dict] = {}

    def save(name: str, data: bytes, description: str, **fields) -> None:
        (out / f"{name}.bin").write_bytes(data)
        vectors[name] = {"file": f"{name}.bin", "description": description, **fields}

    pki = make_pki(work / "pki", REALM, mac=bytes.fromhex(CTA_MAC))
    realm = MitRealm(work / "realm", REALM, pkinit=pki.mit_files())
    realm.create()
    realm.add_principal(CTA, requires_preauth=True, nokey=True)
    realm.add_principal(ALICE, password=PASSWORD, requires_preauth=True, enctypes=["aes256-cts-hmac-sha1-96"])
    realm.add_principal(SC, enctypes=["aes256-cts-hmac-sha384-192", "aes256-cts-hmac-sha1-96"])
    keytab = work / "vectors.keytab"
    realm.ktadd(keytab, SC, norandkey=True)
    realm.ktadd(keytab, f"krbtgt/{REALM}", norandkey=True)
    realm.start()
    relay = KdcRelay((realm.host, realm.port))
    try:
        conf = realm.client_config("relay.conf", kdc=f"{relay.address[0]}:{relay.address[1]}")
        identity = pki.cta_operator_identity

        # PKINIT, DH (group 14): first AS-REQ -> PREAUTH_REQUIRED, then the PA-PK-AS-REQ exchange.
        realm.kinit(CTA, identity=identity, config=conf, ccache=work / "cc-dh")
        ex = relay.take()
        _expect(ex, [(10, 30), (10, 11)], "PKINIT DH")
        save("as-req-initial", ex[0][0], "first AS-REQ of a PKINIT kinit (PA-AS-FRESHNESS, PA-REQ-ENC-PA-REP)", client=CTA, server=f"krbtgt/{REALM}@{REALM}")
        save("krb-error-preauth-required", ex[0][1], "KRB-ERROR 25 answering as-req-initial; e-data METHOD-DATA lists 16", client=CTA)
        save("as-req-pkinit-dh", ex[1][0], "AS-REQ with PA-PK-AS-REQ, DH group 14 (signedAuthPack with clientPublicValue)", client=CTA)
        save("as-rep-pkinit-dh", ex[1][1], "AS-REP with PA-PK-AS-REP dhInfo (ticket for krbtgt, reply key from DH)", client=CTA)

        # PKINIT, RSA key transport.
        realm.kinit(CTA, identity=identity, rsa=True, config=conf, ccache=work / "cc-rsa")
        ex = relay.take()
        _expect(ex, [(10, 30), (10, 11)], "PKINIT RSA")
        save("as-req-pkinit-rsa", ex[1][0], "AS-REQ with PA-PK-AS-REQ in RSA mode (no clientPublicValue)", client=CTA)
        save("as-rep-pkinit-rsa", ex[1][1], "AS-REP with PA-PK-AS-REP encKeyPack (EnvelopedData to the CTA key)", client=CTA)

        # Password (encrypted timestamp), then a TGS exchange with that TGT, then an AP-REQ.
        cc = work / "cc-alice"
        realm.kinit(ALICE, password=PASSWORD, config=conf, ccache=cc)
        ex = relay.take()
        _expect(ex, [(10, 30), (10, 11)], "password AS")
        save("krb-error-preauth-required-password", ex[0][1], "KRB-ERROR 25 for a password principal (ETYPE-INFO2 in METHOD-DATA)", client=ALICE)
        save("as-req-password", ex[1][0], "AS-REQ with PA-ENC-TIMESTAMP", client=ALICE)
        save("as-rep-password", ex[1][1], "AS-REP whose enc-part decrypts with string_to_key(password)", client=ALICE)
        # MIT 1.20 armors every TGS-REQ with FAST (RFC 6113 implicit TGT armor, PA-FX-FAST 136)
        # when the KDC supports it: the reply key is strengthened inside the PA-FX-FAST reply.
        realm.kvno(SC, config=conf, ccache=cc)
        ex = relay.take()
        _expect(ex, [(12, 13)], "TGS")
        save("tgs-req", ex[0][0], "TGS-REQ from kvno: PA-TGS-REQ (TGT, authenticator subkey) and PA-FX-FAST", client=ALICE, server=SC)
        save("tgs-rep", ex[0][1], "TGS-REP; PA-FX-FAST reply (armor key from subkey+TGT session key) with the strengthen key; enc-part under KRB-FX-CF2(strengthen key, subkey)", client=ALICE, server=SC)
        ap_req = mit_mk_req(realm.env(ccache=cc, config=conf), cc, "sc", "sc1.example.test")
        save("ap-req", ap_req, "AP-REQ from libkrb5 krb5_mk_req for sc/sc1.example.test (authenticator under the service session key)", client=ALICE, server=SC)
        relay.take()

        # TD-DH-PARAMETERS: the KDC wants >= 4096-bit groups, the client offers 2048 first.
        realm.reconfigure(pkinit_dh_min_bits=4096)
        realm.kinit(CTA, identity=identity, config=conf, ccache=work / "cc-dh4096")
        ex = relay.take()
        _expect(ex, [(10, 30), (10, 30), (10, 11)], "DH parameters refused")
        save("as-req-pkinit-dh-2048-refused", ex[1][0], "PKINIT AS-REQ offering DH group 14 to a KDC with pkinit_dh_min_bits 4096", client=CTA)
        save("krb-error-dh-parameters", ex[1][1], "KRB-ERROR KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED with TD-DH-PARAMETERS", client=CTA)
        save("as-req-pkinit-dh-4096", ex[2][0], "the client's retry with a 4096-bit group", client=CTA)
    finally:
        relay.close()
        realm.stop()

    shutil.copyfile(keytab, out / "keytab.bin")
    shutil.copyfile(cc, out / "ccache.bin")
    for name in ("operator_ca", "kdc_cert", "cta_operator_cert", "cta_key"):
        source = getattr(pki, name)
        shutil.copyfile(source, out / source.name)
    return {
        "generator": "tests/vectors/regenerate.py",
        "mit_krb5_version": mit_version(),
        "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "realm": REALM,
        "principals": {"cta": CTA, "password_client": ALICE, "service": SC, "tgs": f"krbtgt/{REALM}@{REALM}"},
        "password": {ALICE: PASSWORD},
        "keytab": {"file": "keytab.bin", "principals": [SC, f"krbtgt/{REALM}@{REALM}"]},
        "ccache": {"file": "ccache.bin", "what": f"{ALICE}'s cache after kinit and kvno {SC} (TGT and service session keys)"},
        "certificates": {
            "operator_ca": pki.operator_ca.name,
            "kdc": pki.kdc_cert.name,
            "cta": pki.cta_operator_cert.name,
            "cta_key": pki.cta_key.name,
        },
        "note": "throw-away test realm: the keys, password and CTA key protect nothing",
        "vectors": vectors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "mit")
    args = parser.parse_args(argv)
    missing = [p for p in ("krb5kdc", "kdb5_util", "kadmin.local", "kinit", "kvno") if shutil.which(p) is None]
    if missing:
        print(f"regenerate.py needs MIT krb5: missing {', '.join(missing)}", file=sys.stderr)
        return 1
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.bin"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="kerbtel-vectors-") as tmp:
        manifest = record(out, Path(tmp))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    print(f"wrote {len(manifest['vectors'])} vectors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
