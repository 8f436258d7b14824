"""`kerbtel bench calls`: the plumbing only (deployment, kdcd + sc1 + sc2 subprocesses, the two
simulated CTAs, calls through the SCs, CPU accounting, the table). Timings are never asserted."""

from __future__ import annotations

from common.cli import main
from scd.bench_calls import format_calls_report, run_calls_bench


def _row(out: str) -> list[str]:
    lines = out.splitlines()
    return lines[lines.index(next(line for line in lines if line.lstrip().startswith("calls "))) + 1].split()


def test_bench_calls_cli_cross_sc(capsys) -> None:
    assert main(["bench", "calls", "--calls", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "cross-SC (cta1 -> sc1 -> sc2 -> cta2), 3 calls, concurrency 1" in out
    assert _row(out)[:3] == ["3", "3", "0"]  # calls, ok, failed


def test_bench_calls_same_sc_concurrent_report() -> None:
    report = run_calls_bench(calls=3, concurrency=2, cross_sc=False, warmup=0)
    assert report.completed == 3 and report.failures == []
    assert len(report.latencies) == 3 and all(t > 0 for t in report.latencies)
    assert report.sc_cpu["sc1"] >= 0 and report.seconds > 0
    out = format_calls_report(report)
    assert "same SC (cta1 -> sc1 -> cta2)" in out and _row(out)[:3] == ["3", "3", "0"]
