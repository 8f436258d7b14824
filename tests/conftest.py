"""Shared test plumbing.

Interop tests need real peers (MIT krb5, tshark, ...). Locally a missing peer skips the test with
the reason; under CI=true a missing peer fails it, and any skip at all fails the run (see
`pytest_sessionfinish`), so an interop test can never pass by being skipped in CI.
"""

from __future__ import annotations

import importlib
import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_peer(message: str) -> NoReturn:
    """The one way a test gives up for lack of a peer: skip locally, fail under CI=true."""
    if IN_CI:
        pytest.fail(message + " -- CI=true requires every peer; .ci/run installs them", pytrace=False)
    pytest.skip(message)  # reached only outside CI (CI=true failed above)


def require_peer(*programs: str, reason: str = "") -> None:
    """Skip (locally) or fail (in CI) unless every program is on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        missing_peer(f"peer program(s) missing: {', '.join(missing)}" + (f" ({reason})" if reason else ""))


def require_module(name: str):
    """Import a peer library (e.g. pylibsrtp): skip locally, fail under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing_peer(f"peer library {name} missing ({exc})")


def require_libkrb5() -> str:
    """The path of MIT's libkrb5.so.3 (used through ctypes): skip locally, fail under CI=true."""
    from scd.bench_km import find_libkrb5

    path = find_libkrb5()
    if path is None:
        missing_peer("MIT libkrb5 (libkrb5.so.3) is not installed")
    return path


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # An expected failure (xfail) also reports as skipped; it is a deliberate outcome, not a
    # test that did not run.
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"CI=true: {len(_skipped)} test(s) were skipped, which fails the run:", red=True)
            for nodeid in _skipped:
                tr.write_line(f"  {nodeid}", red=True)
