"""`kerbtel bench media`: the plumbing only (relay process, both directions, the baseline, the
table). Timings are never asserted; a few hundred packets mean nothing."""

from __future__ import annotations

import pytest

from common.cli import main
from common.cli.bench_media import BenchResult, format_table, parse_suite, run_media_bench


def test_parse_suite() -> None:
    assert parse_suite("baseline") == ("baseline", None)
    assert parse_suite("AEAD_AES_128_GCM") == ("AEAD_AES_128_GCM", None)
    assert parse_suite("AES_CM_128_HMAC_SHA1_80:python") == ("AES_CM_128_HMAC_SHA1_80", "python")
    assert parse_suite("3DES_CBC_SEED:python") == ("3DES_CBC_SEED", "python")
    for bad in ("AES_256", "AEAD_AES_128_GCM:openssl", "3DES_CBC_SEED:libsrtp"):
        with pytest.raises(ValueError):
            parse_suite(bad)


def test_table_ratios_are_against_the_baseline_of_the_same_loop_and_direction() -> None:
    rows = [BenchResult("uvloop", "baseline", "encrypt", 1000, 0, 0.01, 0.004),
            BenchResult("uvloop", "AEAD_AES_128_GCM:python", "encrypt", 1000, 0, 0.02, 0.008)]
    table = format_table(rows)
    line = next(x for x in table.splitlines() if "GCM" in x)
    assert "50,000" in line and line.split()[-5:-1] == ["50,000", "0.50", "8.0", "2.00"]
    assert "plain UDP relay (baseline)" in table


def test_run_carries_every_packet_both_ways_through_the_relay_process() -> None:
    results = run_media_bench(packets=150, warmup=10, loops=("asyncio",),
                              suites=("baseline", "AES_CM_128_HMAC_SHA1_80:python", "3DES_CBC_SEED:python"))
    assert [(r.suite, r.direction) for r in results] == [
        (s, d) for s in ("baseline", "AES_CM_128_HMAC_SHA1_80:python", "3DES_CBC_SEED:python") for d in ("encrypt", "decrypt")]
    assert all(r.loop == "asyncio" and r.packets == 150 and r.lost == 0 and r.relay_cpu >= 0 for r in results)


def test_bench_media_cli(capsys) -> None:
    assert main(["bench", "media", "--packets", "100", "--warmup", "10", "--suite", "AEAD_AES_128_GCM:python", "-q"]) == 0
    out = capsys.readouterr().out
    assert "kerbtel bench media: 100 packets per row" in out
    rows = [line for line in out.splitlines() if line.startswith(("uvloop", "asyncio"))]
    loops = {line.split()[0] for line in rows}
    assert "asyncio" in loops and len(rows) == 4 * len(loops)   # baseline + GCM, two directions, per loop
    assert all(line.split()[-1] == "0" for line in rows)         # nothing lost


def test_bench_media_rejects_an_unknown_suite(capsys) -> None:
    assert main(["bench", "media", "--suite", "ROT13", "-q"]) == 2
    assert "unknown suite" in capsys.readouterr().err
