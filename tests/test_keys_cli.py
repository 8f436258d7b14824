"""`kerbtel keys wireshark DIR` from key logs, and the key log itself (common/keylog.py)."""

from __future__ import annotations

import json
import os
import shlex
import stat

import pytest

from common.cli import main as kerbtel
from common.esp import SUITE_3DES_SHA1, SUITE_AES_GCM_16
from common.keytab import Keytab
from kdcd.deployment import create_deployment
from common.keylog import KeyLog, read_key_log


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    return create_deployment(tmp_path_factory.mktemp("keys") / "d", key_log=True)


def test_key_log_is_private_and_complete(tmp_path):
    log = KeyLog(tmp_path / "k.jsonl", "scd")
    log.sa_pair(subkey=bytes(range(32)), enctype=18, principal="cta/x@R", suite=SUITE_3DES_SHA1,
                cta_spi=0x1001, sc_spi=0x2002, cta_addr="127.0.0.1", sc_addr="127.0.0.2")
    assert stat.S_IMODE(os.stat(tmp_path / "k.jsonl").st_mode) == 0o600
    records = read_key_log(tmp_path / "k.jsonl")
    assert [r["type"] for r in records] == ["ap_subkey", "esp_sa", "esp_sa"]
    to_sc, to_cta = records[1], records[2]
    assert (to_sc["spi"], to_sc["src"], to_sc["dst"]) == (0x2002, "127.0.0.1", "127.0.0.2")
    assert (to_cta["spi"], to_cta["src"], to_cta["dst"]) == (0x1001, "127.0.0.2", "127.0.0.1")
    assert len(bytes.fromhex(to_sc["enc_key"])) == 24 and len(bytes.fromhex(to_sc["auth_key"])) == 20
    assert not KeyLog(None, "scd").enabled


def test_wireshark_options_one_line(deployment, capsys):
    sc = deployment.scs[0]
    KeyLog(sc.key_log, "scd").sa_pair(subkey=b"k" * 32, enctype=18, principal="cta/x@R", suite=SUITE_AES_GCM_16,
                                      cta_spi=0x1234, sc_spi=0x5678, cta_addr="127.0.0.1", sc_addr="127.0.0.1")
    # the CTA logs the same SAs: each appears once
    KeyLog(deployment.ctas[0].key_log, "ctad").sa_pair(
        subkey=b"k" * 32, enctype=18, principal="cta/x@R", suite=SUITE_AES_GCM_16,
        cta_spi=0x1234, sc_spi=0x5678, cta_addr="127.0.0.1", sc_addr="127.0.0.1")
    assert kerbtel(["keys", "wireshark", str(deployment.directory)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    args = shlex.split(out)
    uat = [a for a in args if a.startswith("uat:esp_sa:")]
    assert len(uat) == 2
    assert uat[0].count('"') == 16 and '"0x00005678"' in uat[0] and '"NULL"' in uat[0]
    for s in deployment.scs:
        assert f"udp.port=={s.km_port},pktc" in args and f"udp.port=={s.esp_port},udpencap" in args
    kdc_port = int(json.loads((deployment.directory / "deployment.json").read_text())["kdc"]["tcp"].rsplit(":", 1)[1])
    assert f"tcp.port=={kdc_port},kerberos" in args and f"udp.port=={kdc_port},kerberos" in args
    keytab_opt = next(a for a in args if a.startswith("kerberos.file:"))
    keytab = keytab_opt.split(":", 1)[1]
    assert stat.S_IMODE(os.stat(keytab).st_mode) == 0o600
    principals = {str(p) for p in Keytab.load(keytab).principals()}
    assert {s.principal for s in deployment.scs} <= principals
    assert "kerberos.decrypt:TRUE" in args and "esp.enable_authentication_check:TRUE" in args


def test_manifest_and_configs(deployment):
    m = json.loads((deployment.directory / "deployment.json").read_text())
    for sc in m["scs"]:
        assert {"config", "km", "esp", "key_log"} <= set(sc)
        assert sc["km"] != sc["esp"]
    assert [c["numbers"] for c in m["ctas"]] == [["+15551230001"], ["+15551230002"], []]
    from ctad.config import load_ctad_config
    from scd.config import load_scd_config

    for sc in m["scs"]:
        cfg = load_scd_config(sc["config"])
        assert str(cfg.key_log.path) == sc["key_log"]
    for cta in m["ctas"]:
        cfg = load_ctad_config(cta["config"])
        assert cfg.cta.numbers == cta["numbers"] and str(cfg.key_log.path) == cta["key_log"]


def test_without_key_log_is_an_error(tmp_path, capsys):
    create_deployment(tmp_path / "plain")
    assert kerbtel(["keys", "wireshark", str(tmp_path / "plain")]) == 2
    assert "--key-log" in capsys.readouterr().err


def _call_keys_event(role: str, subkey: bytes, spi: int, profile: str = "AES_CM_128_HMAC_SHA1_80"):
    from common.callkey import derive_call_esp_keys
    from common.srtp import derive_media_keys
    from ctad.calls import CallKeysReady

    media = derive_media_keys(subkey, profile, spi)
    esp = derive_call_esp_keys(subkey, SUITE_AES_GCM_16, spi)
    tx, rx = media.for_cta(role)
    out, inb = esp.for_cta(role)
    return CallKeysReady(f"sip-{role}", "ab" * 16, role, spi, profile, tx, rx, SUITE_AES_GCM_16, out, inb, None), media, esp


def test_call_keys_logged_by_both_ctas_agree_and_kerbtel_keys_srtp_prints_them(tmp_path, capsys):
    from common.cli.keys import esp_sa_entries
    from common.esp import wireshark_esp_sa

    d = create_deployment(tmp_path / "d", key_log=True)
    subkey, spi = bytes(range(32)), 0x10203040
    event_a, media, esp = _call_keys_event("A", subkey, spi)
    event_b, _, _ = _call_keys_event("B", subkey, spi)
    KeyLog(d.ctas[0].key_log, "ctad").call_keys(event_a)
    KeyLog(d.ctas[1].key_log, "ctad").call_keys(event_b)
    rec_a, rec_b = (read_key_log(c.key_log)[-1] for c in d.ctas[:2])
    assert rec_a["type"] == "call_keys" and rec_a["role"] == "A" and rec_b["role"] == "B"
    for field in ("media", "esp", "spi", "call_ref", "media_profile", "esp_suite"):
        assert rec_a[field] == rec_b[field], field
    assert rec_a["media"] == {"a_to_b": media.a_to_b.libsrtp_key().hex(), "b_to_a": media.b_to_a.libsrtp_key().hex()}
    assert rec_a["esp"]["b_to_a"]["spi"] == spi + 1
    assert repr(event_a).count(subkey.hex()) == 0

    assert kerbtel(["keys", "srtp", str(d.directory), "--json"]) == 0
    (call,) = json.loads(capsys.readouterr().out)
    assert call["call_ref"] == "ab" * 16 and call["spi"] == spi and call["profile"] == "AES_CM_128_HMAC_SHA1_80"
    assert call["media"]["a_to_b"]["key"] == media.a_to_b.libsrtp_key().hex()
    assert call["media"]["b_to_a"]["inline"] == media.b_to_a.sdes_inline()
    assert kerbtel(["keys", "srtp", str(d.directory)]) == 0
    text = capsys.readouterr().out
    assert f"spi={spi}" in text and media.a_to_b.hex() in text
    assert kerbtel(["keys", "srtp", str(d.directory), "--call", "cd" * 16]) == 2
    capsys.readouterr()

    # the CTA-to-CTA SA pair, once, matched on any address
    entries = esp_sa_entries([rec_a, rec_b])
    assert entries == [wireshark_esp_sa(SUITE_AES_GCM_16, esp.a_to_b), wireshark_esp_sa(SUITE_AES_GCM_16, esp.b_to_a)]


def test_direct_channel_ports_are_decoded_as_esp_in_udp(tmp_path, capsys):
    import dataclasses

    d = create_deployment(tmp_path / "d", key_log=True)
    subkey, spi = bytes(range(32)), 0x10203040
    event_a, _, _ = _call_keys_event("A", subkey, spi)
    event_b, _, _ = _call_keys_event("B", subkey, spi)
    KeyLog(d.ctas[0].key_log, "ctad").call_keys(dataclasses.replace(event_a, peer_esp=("127.0.0.1", 41002)),
                                                local="127.0.0.1:41001")
    KeyLog(d.ctas[1].key_log, "ctad").call_keys(dataclasses.replace(event_b, peer_esp=("127.0.0.1", 41001)),
                                                local="127.0.0.1:41002")
    rec_a = read_key_log(d.ctas[0].key_log)[-1]
    assert (rec_a["local"], rec_a["peer"]) == ("127.0.0.1:41001", "127.0.0.1:41002")
    # a call without a direct channel logs no ends
    KeyLog(d.ctas[2].key_log, "ctad").call_keys(event_a, local="127.0.0.1:41003")
    assert "local" not in read_key_log(d.ctas[2].key_log)[-1]
    assert kerbtel(["keys", "wireshark", str(d.directory)]) == 0
    args = shlex.split(capsys.readouterr().out)
    assert "udp.port==41001,udpencap" in args and "udp.port==41002,udpencap" in args
    assert "udp.port==41003,udpencap" not in args
