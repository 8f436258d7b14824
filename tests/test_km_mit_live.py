"""The pktc AP exchange against MIT's library, with tickets from a live kdcd (issue 4, real-peer
item 3). One `kerbtel init` deployment and one kdcd for the module (tests/peers/kdcd.py).

MIT -> kerbtel: MIT `kinit -S sc/sc1...` gets the SC ticket from kdcd (PKINIT, cta1's provisioned
identity, the deployment's krb5.conf); libkrb5 (`krb5_get_credentials` KRB5_GC_CACHED +
`krb5_mk_req_extended`, AP_OPTS_MUTUAL_REQUIRED, ctypes) makes the AP-REQ from that ccache; we
wrap it in a pktc AP Request as `CtaKeyManager` does (HMAC keyed from the ticket session key,
read from MIT's ccache with `common.ccache`) and give it to an `ScKeyManager` built from the
deployment's SC keytab. It answers with an AP Reply; MIT's `krb5_rd_rep`, on the auth context
that made the AP-REQ, accepts the AP-REP inside (ctime/cusec echo, mutual authentication) and
hands back the sub-key, which is the one scd keyed its SAs with (AP Reply HMAC, ESP keys).

kerbtel -> MIT: `kerbtel kinit` gets the SC ticket from kdcd; `CtaKeyManager`'s AP-REQ is
accepted by MIT's `krb5_rd_req` with the deployment's SC keytab as a FILE keytab
(`KRB5RCACHENAME=none:`); MIT sees the right client, ctime/cusec and mutual-required. MIT's
`krb5_mk_rep` on that auth context (with a sub-key MIT generates), wrapped in a pktc AP Reply, is
accepted by `CtaKeyManager`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from common.asn1 import decode
from common.ccache import Ccache
from common.crypto import Key, KeyUsage, decrypt
from common.esp import NEXT_HEADER_UDP, SUITE_AES_CBC_SHA256, SUITE_AES_GCM_16, EspSa, derive_esp_keys, inner_udp
from common.keytab import Keytab
from common.pktc import (
    PURPOSE_AP_REPLY,
    PURPOSE_AP_REQUEST,
    ApReply,
    ApRequest,
    compute_hmac,
    hmac_key,
    parse_km_message,
    verify_hmac,
)
from common.principal import Principal
from ctad import km as ckm
from ctad.km import CtaKeyManager
from scd import km as skm
from scd.km import ScKeyManager
from tests.conftest import require_libkrb5, require_peer
from tests.peers.kdcd import deployment_fixture, kerbtel

pytestmark = pytest.mark.interop

SC1 = "sc/sc1.example.test@EXAMPLE.TEST"
AP_OPTS_MUTUAL_REQUIRED = 0x20000000
KRB5_GC_CACHED = 2

deployment = deployment_fixture(programs=("kinit",))


# --- libkrb5 through ctypes ---------------------------------------------------------------------

_p = ctypes.c_void_p


class _Data(ctypes.Structure):
    _fields_ = [("magic", ctypes.c_int32), ("length", ctypes.c_uint), ("data", _p)]


class _Keyblock(ctypes.Structure):
    _fields_ = [("magic", ctypes.c_int32), ("enctype", ctypes.c_int32), ("length", ctypes.c_uint), ("contents", _p)]


class _Creds(ctypes.Structure):  # krb5_creds
    _fields_ = [
        ("magic", ctypes.c_int32), ("client", _p), ("server", _p), ("keyblock", _Keyblock),
        ("authtime", ctypes.c_int32), ("starttime", ctypes.c_int32), ("endtime", ctypes.c_int32),
        ("renew_till", ctypes.c_int32), ("is_skey", ctypes.c_uint), ("ticket_flags", ctypes.c_int32),
        ("addresses", _p), ("ticket", _Data), ("second_ticket", _Data), ("authdata", _p),
    ]


class _ApRepEncPart(ctypes.Structure):  # krb5_ap_rep_enc_part
    _fields_ = [("magic", ctypes.c_int32), ("ctime", ctypes.c_int32), ("cusec", ctypes.c_int32),
                ("subkey", ctypes.POINTER(_Keyblock)), ("seq_number", ctypes.c_uint32)]


class _Authenticator(ctypes.Structure):  # krb5_authenticator
    _fields_ = [("magic", ctypes.c_int32), ("client", _p), ("checksum", _p), ("cusec", ctypes.c_int32),
                ("ctime", ctypes.c_int32), ("subkey", ctypes.POINTER(_Keyblock)), ("seq_number", ctypes.c_uint32),
                ("authorization_data", _p)]


def _data(buf: bytes) -> tuple[_Data, ctypes.Array]:
    keep = ctypes.create_string_buffer(buf, len(buf))
    return _Data(0, len(buf), ctypes.cast(keep, _p)), keep


class Mit:
    """One krb5_context, created after KRB5_CONFIG / KRB5RCACHENAME are in the environment."""

    def __init__(self, env: dict[str, str]) -> None:
        path = require_libkrb5()
        for key in [k for k in os.environ if k.startswith("KRB5")]:
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if k.startswith("KRB5")})
        self.lib = lib = ctypes.CDLL(path)
        lib.krb5_get_error_message.restype = ctypes.c_char_p
        lib.krb5_get_error_message.argtypes = [_p, ctypes.c_int32]
        sigs = {
            "krb5_init_context": [ctypes.POINTER(_p)],
            "krb5_free_context": [_p],
            "krb5_cc_resolve": [_p, ctypes.c_char_p, ctypes.POINTER(_p)],
            "krb5_cc_close": [_p, _p],
            "krb5_cc_get_principal": [_p, _p, ctypes.POINTER(_p)],
            "krb5_parse_name": [_p, ctypes.c_char_p, ctypes.POINTER(_p)],
            "krb5_unparse_name": [_p, _p, ctypes.POINTER(ctypes.c_char_p)],
            "krb5_free_unparsed_name": [_p, ctypes.c_char_p],
            "krb5_free_principal": [_p, _p],
            "krb5_get_credentials": [_p, ctypes.c_int32, _p, ctypes.POINTER(_Creds), ctypes.POINTER(ctypes.POINTER(_Creds))],
            "krb5_free_creds": [_p, ctypes.POINTER(_Creds)],
            "krb5_mk_req_extended": [_p, ctypes.POINTER(_p), ctypes.c_int32, ctypes.POINTER(_Data),
                                     ctypes.POINTER(_Creds), ctypes.POINTER(_Data)],
            "krb5_rd_rep": [_p, _p, ctypes.POINTER(_Data), ctypes.POINTER(ctypes.POINTER(_ApRepEncPart))],
            "krb5_free_ap_rep_enc_part": [_p, ctypes.POINTER(_ApRepEncPart)],
            "krb5_kt_resolve": [_p, ctypes.c_char_p, ctypes.POINTER(_p)],
            "krb5_kt_close": [_p, _p],
            "krb5_rd_req": [_p, ctypes.POINTER(_p), ctypes.POINTER(_Data), _p, _p, ctypes.POINTER(ctypes.c_int32),
                            ctypes.POINTER(_p)],
            "krb5_free_ticket": [_p, _p],
            "krb5_auth_con_getauthenticator": [_p, _p, ctypes.POINTER(ctypes.POINTER(_Authenticator))],
            "krb5_free_authenticator": [_p, ctypes.POINTER(_Authenticator)],
            "krb5_auth_con_getflags": [_p, _p, ctypes.POINTER(ctypes.c_int32)],
            "krb5_auth_con_setflags": [_p, _p, ctypes.c_int32],
            "krb5_auth_con_getsendsubkey": [_p, _p, ctypes.POINTER(ctypes.POINTER(_Keyblock))],
            "krb5_free_keyblock": [_p, ctypes.POINTER(_Keyblock)],
            "krb5_mk_rep": [_p, _p, ctypes.POINTER(_Data)],
            "krb5_auth_con_free": [_p, _p],
            "krb5_free_data_contents": [_p, ctypes.POINTER(_Data)],
        }
        for name, argtypes in sigs.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = None if name.startswith("krb5_free") and name != "krb5_free_context" else ctypes.c_int32
        lib.krb5_free_context.restype = None
        self.ctx = _p()
        self.check(lib.krb5_init_context(ctypes.byref(self.ctx)), "krb5_init_context")

    def check(self, code: int, what: str) -> None:
        if code:
            message = self.lib.krb5_get_error_message(self.ctx, code) or b""
            raise AssertionError(f"MIT {what} failed: {code} {message.decode(errors='replace')}")

    def close(self) -> None:
        self.lib.krb5_free_context(self.ctx)

    def unparse(self, principal: int) -> str:
        out = ctypes.c_char_p()
        self.check(self.lib.krb5_unparse_name(self.ctx, principal, ctypes.byref(out)), "krb5_unparse_name")
        text = out.value.decode()
        self.lib.krb5_free_unparsed_name(self.ctx, out)
        return text


class MitInitiator:
    """krb5_mk_req_extended from a ccache, then krb5_rd_rep on the same auth context."""

    def __init__(self, mit: Mit, ccache: Path, service: str) -> None:
        self.mit, lib, ctx = mit, mit.lib, mit.ctx
        self.cc, self.auth_context, self.creds = _p(), _p(), ctypes.POINTER(_Creds)()
        mit.check(lib.krb5_cc_resolve(ctx, f"FILE:{ccache}".encode(), ctypes.byref(self.cc)), "krb5_cc_resolve")
        wanted = _Creds()
        client, server = _p(), _p()
        mit.check(lib.krb5_cc_get_principal(ctx, self.cc, ctypes.byref(client)), "krb5_cc_get_principal")
        mit.check(lib.krb5_parse_name(ctx, service.encode(), ctypes.byref(server)), "krb5_parse_name")
        wanted.client, wanted.server = client, server
        try:
            # Only from the cache: `kinit -S` left no TGT to ask a TGS with.
            mit.check(lib.krb5_get_credentials(ctx, KRB5_GC_CACHED, self.cc, ctypes.byref(wanted), ctypes.byref(self.creds)),
                      "krb5_get_credentials")
        finally:
            lib.krb5_free_principal(ctx, client)
            lib.krb5_free_principal(ctx, server)

    def mk_req(self, options: int = AP_OPTS_MUTUAL_REQUIRED) -> bytes:
        out = _Data()
        self.mit.check(self.mit.lib.krb5_mk_req_extended(self.mit.ctx, ctypes.byref(self.auth_context), options, None,
                                                         self.creds, ctypes.byref(out)), "krb5_mk_req_extended")
        ap_req = ctypes.string_at(out.data, out.length)
        self.mit.lib.krb5_free_data_contents(self.mit.ctx, ctypes.byref(out))
        return ap_req

    def rd_rep(self, ap_rep: bytes) -> tuple[int, int, Key | None]:
        """(ctime, cusec, sub-key) of an AP-REP MIT accepted for our authenticator."""
        data, _keep = _data(ap_rep)
        part = ctypes.POINTER(_ApRepEncPart)()
        self.mit.check(self.mit.lib.krb5_rd_rep(self.mit.ctx, self.auth_context, ctypes.byref(data), ctypes.byref(part)),
                       "krb5_rd_rep")
        try:
            p = part.contents
            subkey = None
            if p.subkey:
                kb = p.subkey.contents
                subkey = Key(kb.enctype, ctypes.string_at(kb.contents, kb.length))
            return p.ctime, p.cusec, subkey
        finally:
            self.mit.lib.krb5_free_ap_rep_enc_part(self.mit.ctx, part)

    def close(self) -> None:
        lib, ctx = self.mit.lib, self.mit.ctx
        if self.auth_context:
            lib.krb5_auth_con_free(ctx, self.auth_context)
        if self.creds:
            lib.krb5_free_creds(ctx, self.creds)
        lib.krb5_cc_close(ctx, self.cc)


class MitAcceptor:
    """krb5_rd_req with a FILE keytab (re-read by MIT on every call), then krb5_mk_rep."""

    def __init__(self, mit: Mit, keytab: str) -> None:
        self.mit = mit
        self.keytab, self.auth_context = _p(), _p()
        mit.check(mit.lib.krb5_kt_resolve(mit.ctx, f"FILE:{keytab}".encode(), ctypes.byref(self.keytab)), "krb5_kt_resolve")

    def rd_req(self, ap_req: bytes) -> dict:
        lib, ctx = self.mit.lib, self.mit.ctx
        data, _keep = _data(ap_req)
        options, ticket = ctypes.c_int32(), _p()
        self.mit.check(lib.krb5_rd_req(ctx, ctypes.byref(self.auth_context), ctypes.byref(data), None, self.keytab,
                                       ctypes.byref(options), ctypes.byref(ticket)), "krb5_rd_req")
        lib.krb5_free_ticket(ctx, ticket)
        auth = ctypes.POINTER(_Authenticator)()
        self.mit.check(lib.krb5_auth_con_getauthenticator(ctx, self.auth_context, ctypes.byref(auth)),
                       "krb5_auth_con_getauthenticator")
        try:
            a = auth.contents
            return {"options": options.value & 0xFFFFFFFF, "client": self.mit.unparse(a.client),
                    "ctime": a.ctime, "cusec": a.cusec}
        finally:
            lib.krb5_free_authenticator(ctx, auth)

    def mk_rep(self) -> tuple[bytes, Key]:
        """MIT's AP-REP with a sub-key MIT generates, and that sub-key.

        krb5_mk_rep puts a fresh sub-key in the AP-REP when the auth context has
        KRB5_AUTH_CONTEXT_USE_SUBKEY (0x20, from MIT's auth_con.h), which krb5_rd_req sets after an
        RFC 4537 enctype negotiation. A CTA's authenticator carries no such list (the pktc sub-key
        is the SC's choice), so the flag is set here, as a service that always re-keys would.
        """
        lib, ctx = self.mit.lib, self.mit.ctx
        flags = ctypes.c_int32()
        self.mit.check(lib.krb5_auth_con_getflags(ctx, self.auth_context, ctypes.byref(flags)), "krb5_auth_con_getflags")
        self.mit.check(lib.krb5_auth_con_setflags(ctx, self.auth_context, flags.value | 0x20), "krb5_auth_con_setflags")
        out = _Data()
        self.mit.check(lib.krb5_mk_rep(ctx, self.auth_context, ctypes.byref(out)), "krb5_mk_rep")
        ap_rep = ctypes.string_at(out.data, out.length)
        lib.krb5_free_data_contents(ctx, ctypes.byref(out))
        block = ctypes.POINTER(_Keyblock)()
        self.mit.check(lib.krb5_auth_con_getsendsubkey(ctx, self.auth_context, ctypes.byref(block)),
                       "krb5_auth_con_getsendsubkey")
        assert block, "MIT put no sub-key in its AP-REP"
        kb = block.contents
        subkey = Key(kb.enctype, ctypes.string_at(kb.contents, kb.length))
        lib.krb5_free_keyblock(ctx, block)
        return ap_rep, subkey

    def close(self) -> None:
        if self.auth_context:
            self.mit.lib.krb5_auth_con_free(self.mit.ctx, self.auth_context)
        self.mit.lib.krb5_kt_close(self.mit.ctx, self.keytab)


# --- helpers ------------------------------------------------------------------------------------


def _sc_keytab(dep) -> str:
    return next(s for s in dep.manifest["scs"] if s["name"] == "sc1")["keytab"]


def _mit_kinit(dep, cta: dict, ccache: Path) -> None:
    proc = subprocess.run(
        ["kinit", "-X", f"X509_user_identity=FILE:{cta['cert']},{cta['key']}", "-S", SC1, cta["principal"]],
        env=dep.mit_env(ccache), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"MIT kinit: {proc.stdout}{proc.stderr}{dep.log_tail()}"


def _sign_ap_request(ap_req: bytes, session_key: Key, spi: int, suites) -> bytes:
    """A pktc AP Request around `ap_req`, HMAC'd exactly as CtaKeyManager does."""
    unsigned = bytes(ApRequest(ap_req, 0, spi, suites, False))[:-20]
    return unsigned + compute_hmac(hmac_key(session_key.contents, PURPOSE_AP_REQUEST), unsigned)


# --- MIT's AP-REQ -> scd's engine -> MIT's rd_rep ---------------------------------------------------


def test_mit_ap_req_from_kdcd_ticket_accepted_by_sc_engine_and_ap_rep_by_mit(deployment, tmp_path):
    require_peer("kinit")
    dep = deployment
    cta = dep.manifest["ctas"][0]
    ccache = tmp_path / "cc"
    _mit_kinit(dep, cta, ccache)
    cred = Ccache.load(ccache).find(Principal.parse(SC1))  # MIT's ccache, read by common.ccache
    assert str(cred.client) == cta["principal"]

    mit = Mit(dep.mit_env(ccache))
    initiator = MitInitiator(mit, ccache, SC1)
    try:
        ap_req = initiator.mk_req()
        assert ap_req[0] == 0x6E  # [APPLICATION 14] AP-REQ
        parsed = decode(ap_req)
        assert int(parsed["ap-options"].native) & AP_OPTS_MUTUAL_REQUIRED
        assert parsed["ticket"]["enc-part"]["cipher"].native == decode(cred.ticket)["enc-part"]["cipher"].native

        sc = ScKeyManager(Principal.parse(SC1), Keytab.load(_sc_keytab(dep)),
                          suites_preference=(SUITE_AES_GCM_16, SUITE_AES_CBC_SHA256))
        cta_spi = 0x0001F00D
        request = _sign_ap_request(ap_req, cred.key, cta_spi, ((0, 20), (5, 12)))
        peer = ("127.0.0.1", 40000)
        events = sc.receive(request, peer, now=time.monotonic(), wallclock=datetime.now(timezone.utc))
        refused = [e for e in events if isinstance(e, skm.Refused)]
        assert not refused, refused
        (established,) = [e for e in events if isinstance(e, skm.SaEstablished)]
        assert str(established.client) == cta["principal"]
        assert established.cta_spi == cta_spi and established.suite == SUITE_AES_GCM_16
        (send,) = [e for e in events if isinstance(e, skm.SendTo)]
        assert send.peer == peer
        reply = parse_km_message(send.data)
        assert isinstance(reply, ApReply) and reply.spi == established.sc_spi

        # MIT checks the AP-REP against the authenticator it made (ctime/cusec, session key)
        # and takes the sub-key from it.
        ctime, cusec, subkey = initiator.rd_rep(reply.ap_rep)
    finally:
        initiator.close()
        mit.close()

    # Our codec agrees: the EncAPRepPart echoes MIT's authenticator time.
    authenticator = decode(decrypt(cred.key, KeyUsage.AP_REQ_AUTH, parsed["authenticator"]["cipher"].native), padded=True)
    assert int(authenticator["ctime"].native.timestamp()) == ctime and authenticator["cusec"].native == cusec
    assert abs(datetime.now(timezone.utc) - datetime.fromtimestamp(ctime, timezone.utc)) < timedelta(minutes=1)
    # The sub-key MIT extracted is the one scd keyed with: it verifies the AP Reply HMAC and its
    # ESP keys open what scd's inbound SA expects.
    assert subkey is not None and subkey.enctype == cred.key.enctype
    assert subkey.contents == established.subkey
    assert verify_hmac(hmac_key(subkey.contents, PURPOSE_AP_REPLY), reply.hmac, send.data[:-20])
    keys = derive_esp_keys(subkey.contents, established.suite, cta_spi, established.sc_spi)
    packet = EspSa.from_keys(established.suite, keys.cta_to_sc).protect(inner_udp(5060, 5060, b"OPTIONS"), NEXT_HEADER_UDP)
    assert established.inbound.unprotect(packet) == (NEXT_HEADER_UDP, inner_udp(5060, 5060, b"OPTIONS"))


# --- CtaKeyManager's AP-REQ -> MIT rd_req; MIT's AP-REP -> CtaKeyManager --------------------------------


def test_cta_ap_req_from_kerbtel_kinit_ticket_accepted_by_mit_rd_req(deployment, tmp_path):
    dep = deployment
    cta = dep.manifest["ctas"][1]
    ccache = tmp_path / "cc"
    kerbtel("kinit", "--identity", cta["identity_dir"], "--kdc", dep.address, "--service", SC1, "--ccache", ccache)
    cred = Ccache.load(ccache).find(Principal.parse(SC1))
    engine = CtaKeyManager(Principal.parse(cta["principal"]), Principal.parse(SC1), cred.ticket, cred.key,
                           suites=(SUITE_AES_CBC_SHA256,))
    wallclock = datetime.now(timezone.utc)
    (send,) = engine.start(time.monotonic(), wallclock)
    request = ApRequest.parse(send.data)

    mit = Mit(dep.mit_env(tmp_path / "unused-cc"))
    assert os.environ["KRB5RCACHENAME"] == "none:"
    acceptor = MitAcceptor(mit, _sc_keytab(dep))
    try:
        seen = acceptor.rd_req(request.ap_req)
        assert seen["client"] == cta["principal"]
        assert seen["options"] & AP_OPTS_MUTUAL_REQUIRED
        assert (seen["ctime"], seen["cusec"]) == (int(wallclock.replace(microsecond=0).timestamp()), wallclock.microsecond)
        # MIT answers (mutual authentication) with a sub-key of its own; the pktc AP Reply around
        # it is what scd would send. CtaKeyManager must accept MIT's AP-REP encoding.
        ap_rep, subkey = acceptor.mk_rep()
    finally:
        acceptor.close()
        mit.close()
    assert ap_rep[0] == 0x6F  # [APPLICATION 15] AP-REP
    sc_spi = 0x0002BEEF
    unsigned = bytes(ApReply(ap_rep, sc_spi, (5, 12), 3600, 300, False, True))[:-20]
    reply = unsigned + compute_hmac(hmac_key(subkey.contents, PURPOSE_AP_REPLY), unsigned)
    events = engine.receive(reply, time.monotonic(), datetime.now(timezone.utc))
    established = [e for e in events if isinstance(e, ckm.SaEstablished)]
    assert len(established) == 1, (events, dict(engine.stats))
    established = established[0]
    assert established.subkey == subkey.contents and established.sc_spi == sc_spi
    assert established.cta_spi == request.spi and established.suite == SUITE_AES_CBC_SHA256
    assert engine.state == "established"
