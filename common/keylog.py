"""The opt-in key log: the SAs a daemon creates and the AP-REP sub-keys, as JSON lines (0600).

Read by `kerbtel keys wireshark DIR` (common/cli/keys.py) to build tshark's `uat:esp_sa` entries.
Off unless a daemon's `[key_log] path` is set (`kerbtel init --key-log` sets it for every daemon
of a throw-away deployment). Never enable it in production: it holds every signaling key.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from common.esp import derive_esp_keys

__all__ = ["KeyLog", "read_key_log"]


class KeyLog:
    """Opt-in JSON-lines key log for Wireshark (`kerbtel keys wireshark`); file mode 0600.

    Lines: {"type": "esp_sa", "daemon", "spi", "suite", "enc_id", "auth_id", "enc_key", "salt",
    "auth_key", "src", "dst", "direction"} per SA direction and {"type": "ap_subkey", "daemon",
    "principal", "enctype", "key", "sc_spi", "cta_spi"} per AP-REP sub-key; ctad adds one
    {"type": "call_keys", "call_ref", "call_id", "role", "spi", "media_profile", "media": {"a_to_b",
    "b_to_a"}, "esp_suite", "enc_id", "auth_id", "esp": {"a_to_b", "b_to_a"}} per call when its
    keys arrive (`call_keys`; printed by `kerbtel keys srtp`). Hex strings.
    """

    def __init__(self, path: Path | None, daemon: str) -> None:
        self.path = path
        self.daemon = daemon

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "daemon": self.daemon, **record}
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)

    def sa_pair(self, *, subkey: bytes, enctype: int | None, principal: str, suite, cta_spi: int, sc_spi: int,
                cta_addr: str, sc_addr: str) -> None:
        """Both directions of a pair (keys derived again from the sub-key, as both ends do)."""
        if self.path is None:
            return
        keys = derive_esp_keys(subkey, suite, cta_spi, sc_spi)
        self.write({"type": "ap_subkey", "principal": principal, "enctype": enctype, "key": subkey.hex(),
                    "sc_spi": sc_spi, "cta_spi": cta_spi})
        for direction, dk, src, dst in (("cta_to_sc", keys.cta_to_sc, cta_addr, sc_addr),
                                        ("sc_to_cta", keys.sc_to_cta, sc_addr, cta_addr)):
            self.write({"type": "esp_sa", "direction": direction, "spi": dk.spi, "suite": suite.name,
                        "enc_id": suite.enc_id, "auth_id": suite.auth_id, "enc_key": dk.enc_key.hex(),
                        "salt": dk.salt.hex(), "auth_key": dk.auth_key.hex(), "src": src, "dst": dst,
                        "principal": principal})


    def call_keys(self, event, local: str | None = None) -> None:
        """One call's CTA-to-CTA keys from a `ctad.calls.CallKeysReady` (duck-typed).

        Media: SSRC-independent master key || salt per direction (`MediaKeys.libsrtp_key()`, what
        libsrtp's Policy takes); ESP: the CTA-to-CTA SA pair (A -> B uses `spi`, B -> A `spi` + 1).
        Stored by direction, not by this CTA's tx/rx, so the records of both CTAs agree.
        """
        if self.path is None:
            return
        a_side = event.role == "A"
        media = {"a_to_b": (event.media_tx if a_side else event.media_rx).libsrtp_key().hex(),
                 "b_to_a": (event.media_rx if a_side else event.media_tx).libsrtp_key().hex()}
        esp = {}
        for direction, dk in (("a_to_b", event.esp_out if a_side else event.esp_in),
                              ("b_to_a", event.esp_in if a_side else event.esp_out)):
            esp[direction] = {"spi": dk.spi, "enc_key": dk.enc_key.hex(), "salt": dk.salt.hex(),
                              "auth_key": dk.auth_key.hex()}
        suite = event.esp_suite
        record = {"type": "call_keys", "call_ref": event.call_ref, "call_id": event.call_id, "role": event.role,
                  "spi": event.spi, "media_profile": event.media_profile, "media": media,
                  "esp_suite": suite.name, "enc_id": suite.enc_id, "auth_id": suite.auth_id, "esp": esp}
        peer = getattr(event, "peer_esp", None)
        if peer is not None and local is not None:  # the direct channel's ends (ESP-in-UDP ports)
            record["local"] = local
            record["peer"] = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        self.write(record)


def read_key_log(path: str | os.PathLike[str]) -> list[dict]:
    """Every JSON record of a key log (a torn last line from a killed daemon is skipped)."""
    records = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
