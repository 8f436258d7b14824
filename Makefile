# kerbtel: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test peers venv clean

venv: $(STAMP)

# Re-install when the project metadata changes; an editable install picks up code changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Independent implementations the interop tests run against (installed only when missing).
peers:
	scripts/install-peers

test: venv peers
	$(PY) -m pytest

# One secure call through kdcd, two scd and two ctad on loopback, with a report (common/demo.py).
# The peers (baresip, tshark) are installed when we are root; without them the built-in
# softphone is used and nothing is captured.
demo: venv peers
	$(VENV)/bin/kerbtel demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
