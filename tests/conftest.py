"""Shared test plumbing.

Interop tests need real peers (MIT krb5, tshark, ...). Locally a missing peer skips the test with
the reason; under CI=true a missing peer fails it, and any skip at all fails the run (see
`pytest_sessionfinish`), so an interop test can never pass by being skipped in CI.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_peer(*programs: str, reason: str = "") -> None:
    """Skip (locally) or fail (in CI) unless every program is on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"peer program(s) missing: {', '.join(missing)}" + (f" ({reason})" if reason else "")
        if IN_CI:
            pytest.fail(message + " -- CI=true requires every peer; .ci/run installs them", pytrace=False)
        pytest.skip(message)


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
