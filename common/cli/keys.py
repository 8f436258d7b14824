"""`kerbtel keys wireshark DIR`: the tshark options that decrypt a capture of DIR's daemons.

    tshark -r cap.pcap $(kerbtel keys wireshark /tmp/kt) -T fields -e frame.protocols ...

Reads DIR/deployment.json (`kerbtel init`), the key logs its daemons wrote (`kerbtel init
--key-log`; one JSON line per ESP SA direction and AP-REP sub-key, common/keylog.py) and prints, on
one line, shell-quoted:

- `-o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE` and one
  `-o uat:esp_sa:"IPv4","SRC","DST","0xSPI","ENC","0xKEY","AUTH","0xKEY"` per SA (the 8 fields
  tshark 4.0 takes; `common.esp.wireshark_esp_sa`);
  CTA-SC SAs and SC-SC SAs alike: scd logs the SA pair of a peer-SC link on both ends (the
  initiator's and the responder's records of one pair are the same SAs, listed once);
- `-d udp.port==N,pktc` for every SC key-management port and `-d udp.port==N,udpencap` for every
  ESP port other than 4500 and every CTA port of a call's direct CTA-to-CTA channel (from the
  `call_keys` records; tshark tries the lower port first, so a CTA port must lie above the SCs'
  km ports, as ephemeral ports do);
- `-d tcp.port==N,kerberos -d udp.port==N,kerberos` for the KDC when it is not on port 88;
- `-o kerberos.decrypt:TRUE -o kerberos.file:DIR/wireshark.keytab`, a keytab (0600) it writes
  with every SC's keys, so tshark decrypts tickets, authenticators and the AP-REP sub-keys.

`kerbtel keys srtp DIR [--call REF] [--json]`: the per-call keys the CTAs logged (ctad writes a
`call_keys` record when a call's keys arrive): per call reference the media profile, the SPI and
per direction ("A to B" = the caller's CTA sending) the SRTP master key || salt in hex (libsrtp's
Policy key; `MediaKeys.libsrtp_key()`) and as SDES `inline:`, plus the CTA-to-CTA ESP SA pair.
`kerbtel keys wireshark` also lists those CTA-to-CTA SAs (matched on any address).

The output holds secrets (they are the point); it is meant for throw-away deployments.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from common.cli import CliError

KEYTAB_NAME = "wireshark.keytab"


def esp_sa_entries(records) -> list[str]:
    """`uat:esp_sa` entries for the esp_sa records of key logs (each SA once)."""
    from common.esp import DirectionKeys, suite_for, wireshark_esp_sa

    seen: set[tuple] = set()
    entries = []
    for rec in records:
        if rec.get("type") != "esp_sa":
            continue
        ident = (rec["spi"], rec["src"], rec["dst"])
        if ident in seen:
            continue
        seen.add(ident)
        suite = suite_for(int(rec["auth_id"]), int(rec["enc_id"]))
        keys = DirectionKeys(int(rec["spi"]), bytes.fromhex(rec["enc_key"]), bytes.fromhex(rec.get("salt", "")),
                             bytes.fromhex(rec.get("auth_key", "")))
        entries.append(wireshark_esp_sa(suite, keys, rec["src"], rec["dst"]))
    for rec in records:  # CTA-to-CTA SA pairs of calls (both CTAs log the same pair)
        if rec.get("type") != "call_keys":
            continue
        suite = suite_for(int(rec["auth_id"]), int(rec["enc_id"]))
        for sa in rec["esp"].values():
            ident = (sa["spi"], "*", "*")
            if ident in seen:
                continue
            seen.add(ident)
            keys = DirectionKeys(int(sa["spi"]), bytes.fromhex(sa["enc_key"]), bytes.fromhex(sa.get("salt", "")),
                                 bytes.fromhex(sa.get("auth_key", "")))
            entries.append(wireshark_esp_sa(suite, keys, "*", "*"))
    return entries


def call_keys(records, call_ref: str | None = None) -> list[dict]:
    """One entry per call (the first `call_keys` record of each call reference), in log order."""
    import base64

    calls: dict[str, dict] = {}
    for rec in records:
        if rec.get("type") != "call_keys" or rec["call_ref"] in calls:
            continue
        if call_ref is not None and rec["call_ref"] != call_ref:
            continue
        media = {}
        for direction, label in (("a_to_b", "A to B"), ("b_to_a", "B to A")):
            key = bytes.fromhex(rec["media"][direction])
            media[direction] = {"direction": label, "key": key.hex(),
                                "inline": "inline:" + base64.b64encode(key).decode("ascii")}
        calls[rec["call_ref"]] = {"call_ref": rec["call_ref"], "profile": rec["media_profile"], "spi": rec["spi"],
                                  "media": media, "esp_suite": rec["esp_suite"], "esp": rec["esp"]}
    return list(calls.values())


def load_key_records(directory: Path) -> tuple[dict, list[dict]]:
    from common.keylog import read_key_log

    try:
        manifest = json.loads((directory / "deployment.json").read_text())
    except FileNotFoundError:
        raise CliError(f"{directory} has no deployment.json (made by `kerbtel init`)") from None
    except ValueError as exc:
        raise CliError(f"{directory}/deployment.json: {exc}") from None
    echo = [manifest["echo"]] if manifest.get("echo") else []  # the echo test service is a ctad too
    logs = [m.get("key_log") for m in [*manifest.get("scs", []), *manifest.get("ctas", []), *echo]]
    logs = [Path(p) for p in logs if p]
    if not logs:
        raise CliError(f"the deployment in {directory} has no key logs; create it with `kerbtel init --key-log`")
    records = []
    for path in logs:
        records += read_key_log(path)
    return manifest, records


def wireshark_options(directory: Path, *, keytab: Path | None = None) -> list[str]:
    from common.esp import tshark_esp_options
    from common.keytab import Keytab

    manifest, records = load_key_records(directory)
    km_ports, esp_ports = [], []
    merged = Keytab([])
    for sc in manifest.get("scs", []):
        for key, out in (("km", km_ports), ("esp", esp_ports)):
            if sc.get(key):
                out.append(int(str(sc[key]).rsplit(":", 1)[1]))
        try:
            merged.extend(Keytab.load(sc["keytab"]))
        except (OSError, ValueError) as exc:
            raise CliError(f"{sc['keytab']}: {exc}") from None
    keytab = keytab or directory / KEYTAB_NAME
    merged.save(keytab)
    keytab.chmod(0o600)
    # ESP-in-UDP between CTAs (each call's direct channel) is on the CTAs' own ports
    cta_ports = sorted({int(rec[end].rsplit(":", 1)[1]) for rec in records if rec.get("type") == "call_keys"
                        for end in ("local", "peer") if rec.get(end)})
    args = tshark_esp_options(esp_sa_entries(records), udp_ports=[*esp_ports, *cta_ports])
    for port in km_ports:
        args += ["-d", f"udp.port=={port},pktc"]
    kdc_ports = sorted({int(str(manifest["kdc"][t]).rsplit(":", 1)[1]) for t in ("tcp", "udp")
                        if manifest.get("kdc", {}).get(t)} - {88})
    for port in kdc_ports:
        args += ["-d", f"tcp.port=={port},kerberos", "-d", f"udp.port=={port},kerberos"]
    args += ["-o", "kerberos.decrypt:TRUE", "-o", f"kerberos.file:{keytab.absolute()}"]
    return args


def _cmd_wireshark(args: argparse.Namespace) -> int:
    print(shlex.join(wireshark_options(Path(args.directory).absolute(),
                                       keytab=Path(args.keytab).absolute() if args.keytab else None)))
    return 0


def _cmd_srtp(args: argparse.Namespace) -> int:
    _, records = load_key_records(Path(args.directory).absolute())
    calls = call_keys(records, args.call)
    if args.call and not calls:
        raise CliError(f"no keys logged for call {args.call}")
    if args.json:
        print(json.dumps(calls, indent=2))
        return 0
    for call in calls:
        print(f"call {call['call_ref']} {call['profile']} spi={call['spi']} esp={call['esp_suite']}")
        for m in call["media"].values():
            print(f"  {m['direction']}: {m['key']}  {m['inline']}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("keys", help="keys for Wireshark from a deployment's key logs",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    ws = sub.add_parser("wireshark", help="print tshark options (one line) decrypting DIR's pktc, Kerberos and ESP",
                        description=__doc__.split("\n\n")[0])
    ws.add_argument("directory", metavar="DIR", help="a deployment made by `kerbtel init --key-log`")
    ws.add_argument("--keytab", metavar="FILE", help=f"where to write the SC keytab (default DIR/{KEYTAB_NAME})")
    ws.set_defaults(func=_cmd_wireshark)
    srtp = sub.add_parser("srtp", help="print the per-call SRTP master keys (and CTA-to-CTA ESP SAs) the CTAs logged",
                          description="Per call: profile, SPI, and per direction the SRTP master key || salt (hex, "
                                      "libsrtp's Policy key; and SDES inline:) from the CTAs' key logs.")
    srtp.add_argument("directory", metavar="DIR", help="a deployment made by `kerbtel init --key-log`")
    srtp.add_argument("--call", metavar="REF", help="only this call reference (32 hex)")
    srtp.add_argument("--json", action="store_true", help="a JSON list, one object per call")
    srtp.set_defaults(func=_cmd_srtp)
