"""The CI guarantee: under CI=true a skipped test, or a missing peer, fails the run."""

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (__import__("pathlib").Path(__file__).parent / "conftest.py").read_text()


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, body: str):
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(body)
    # The conftest reads CI at import time, so run in a subprocess with the variable set.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_skip_fails_the_run_in_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "true", "import pytest\ndef test_a():\n    pytest.skip('no peer')\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*CI=true: 1 test(s) were skipped*"])


def test_skip_is_a_skip_outside_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "", "import pytest\ndef test_a():\n    pytest.skip('no peer')\n")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=1)


def test_missing_peer_fails_in_ci(pytester, monkeypatch):
    body = "from conftest import require_peer\ndef test_a():\n    require_peer('no-such-peer-program-xyz')\n"
    result = _run(pytester, monkeypatch, "true", body)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no-such-peer-program-xyz*CI=true requires every peer*"])


def test_xfail_is_not_a_skip_in_ci(pytester, monkeypatch):
    body = "import pytest\n@pytest.mark.xfail(strict=True)\ndef test_a():\n    assert False\n"
    result = _run(pytester, monkeypatch, "true", body)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(xfailed=1)
