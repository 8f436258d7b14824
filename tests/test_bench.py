"""`kerbtel bench kdc`: the plumbing only (deployment, kdcd subprocess, in-process clients, CPU
accounting, the table). Timings are never asserted; the numbers here are too small to mean anything.
"""

from __future__ import annotations

import os

import pytest

from common.cli import main
from conftest import require_peer
from kdcd.bench import (
    MIT_PROGRAMS,
    BenchOptions,
    BenchReport,
    ModeResult,
    crypto_ceiling,
    format_report,
    process_tree_cpu,
    run_kdc_bench,
)


def test_process_tree_cpu_counts_this_process() -> None:
    before = process_tree_cpu(os.getpid())
    sum(i * i for i in range(300_000))
    assert process_tree_cpu(os.getpid()) >= before >= 0


def test_crypto_ceiling_has_every_part() -> None:
    ceilings = crypto_ceiling(("dh", "ecdh", "rsa"))
    assert set(ceilings["dh"].parts) == {"RSA-2048 sign", "RSA-2048 verify", "DH-2048 keygen", "DH-2048 exchange",
                                         "DH-2048 subgroup check"}
    assert ceilings["dh"].skippable == ("DH-2048 keygen",) and ceilings["dh"].reuse_seconds < ceilings["dh"].seconds
    assert set(ceilings["ecdh"].parts) == {"RSA-2048 sign", "RSA-2048 verify", "P-256 keygen", "P-256 ECDH"}
    assert "RSA-2048 encrypt" in ceilings["rsa"].parts
    assert all(c.rate > 0 for c in ceilings.values())


def test_bench_kdc_cli_ecdh(capsys) -> None:
    assert main(["bench", "kdc", "--requests", "20", "--clients", "2", "--mode", "ecdh", "-q"]) == 0
    out = capsys.readouterr().out
    assert "workers=1, clients=2, 20 exchanges per mode" in out
    row = next(line for line in out.splitlines() if line.startswith("ecdh  kerbtel"))
    assert row.split()[2:5] == ["20", "0", "3"]  # ok, errors, verified in full (#0, #1: one per client; #16)
    assert "crypto ceiling" in out and "KDC cores" in out and "built before timing" in out


def test_bench_report_counts_every_exchange_with_two_workers_and_full_verification() -> None:
    opts = BenchOptions(modes=("dh", "rsa"), clients=3, requests=9, workers=2, verify_every=1, warmup=1)
    report = run_kdc_bench(opts)
    for mode in ("dh", "rsa"):
        result = report.result("kerbtel", mode)
        assert (result.ok, result.errors, result.first_error, result.verified) == (9, 0, None, 9)
        assert len(result.latencies) == 9 and result.kdc_cpu >= 0 and result.gen_cpu > 0 and result.prep_cpu > 0
    assert "rsa   kerbtel" in format_report(report)


def test_prepared_requests_are_distinct_and_the_sample_is_kept(tmp_path) -> None:
    from kdcd.bench import _client_config, prepare_requests
    from kdcd.deployment import create_deployment

    deployment = create_deployment(tmp_path / "deployment", force=True)
    configs = [_client_config(deployment, "rsa", i) for i in range(2)]
    prepared = prepare_requests(configs, 7, verify_every=3)
    assert len(set(prepared.framed)) == 7
    assert all(int.from_bytes(f[:4], "big") == len(f) - 4 for f in prepared.framed)
    assert sorted(prepared.sample) == [0, 1, 3, 6]  # the first per client, then every 3rd


def test_a_failed_verification_after_timing_is_an_error() -> None:
    from kdcd.bench import PreparedRequests, _verify_sample

    class Refuses:
        def receive(self, reply, *, wallclock):
            raise ValueError("bad reply")

    result = ModeResult(server="kerbtel", mode="dh", ok=2, errors=0, wall=1.0, kdc_cpu=0.0, gen_cpu=0.0)
    _verify_sample(PreparedRequests([b"", b""], {0: Refuses()}), [b"\x6b\x00", b"\x6b\x00"], result)
    assert (result.ok, result.errors, result.verified) == (1, 1, 0)
    assert result.first_error == "verification: ValueError: bad reply"


def test_bench_rejects_bad_arguments(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "kdc", "--clients", "0"])
    assert main(["bench", "kdc", "--mode", "dh", "--requests", "1", "--warmup", "0", "--seconds", "0.2", "-q"]) == 0


@pytest.mark.interop
def test_bench_kdc_vs_mit(capsys) -> None:
    require_peer(*MIT_PROGRAMS)
    assert main(["bench", "kdc", "--vs-mit", "--requests", "8", "--clients", "2", "--mode", "dh", "--mode", "rsa", "-q"]) == 0
    out = capsys.readouterr().out
    for mode in ("dh", "rsa"):
        for server in ("kerbtel", "MIT"):
            row = next(line for line in out.splitlines() if line.startswith(f"{mode:<5} {server}"))
            assert row.split()[2:4] == ["8", "0"], row
        assert f"  {mode:<5} throughput x" in out


def test_ratio_line_even_when_a_short_run_measures_no_kdc_cpu() -> None:
    opts = BenchOptions(modes=("dh",), clients=1, requests=2, vs_mit=True)
    ours = ModeResult(server="kerbtel", mode="dh", ok=2, errors=0, wall=0.5, kdc_cpu=0.0, gen_cpu=0.0)
    theirs = ModeResult(server="MIT", mode="dh", ok=2, errors=0, wall=1.0, kdc_cpu=0.02, gen_cpu=0.0)
    text = format_report(BenchReport(opts, 2, [ours, theirs], {}))
    assert "  dh    throughput x2.00; KDC CPU too small to measure in this run" in text
