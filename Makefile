# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
# Each creates .venv and installs what it needs.

ifndef PYTHON
PYTHON := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; \
	done)
endif
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test check bench screenshots clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "piigate needs Python 3.11 or newer" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/piigate demo

test: $(STAMP)
	@scripts/check

# The README's pictures of the console: the browser tests (Debian's Chromium at
# /usr/bin/chromium), saving their screenshots to docs/screenshots/ rather than a temporary
# directory; a test that cannot run fails rather than leaving an old picture behind.
screenshots: $(STAMP)
	PIIGATE_SCREENSHOT_DIR=docs/screenshots PIIGATE_REQUIRE_SERVICES=1 \
		$(VENV)/bin/python -m pytest -q -m "browser and not postgres"

bench: $(STAMP)
	$(VENV)/bin/python bench/decide.py
	$(VENV)/bin/python bench/api.py
	$(VENV)/bin/python bench/factors.py
	$(VENV)/bin/python bench/recovery_codes.py
	$(VENV)/bin/python bench/gateway_masking.py
	$(VENV)/bin/python bench/upstream_clients.py
	$(VENV)/bin/python bench/gateway_http.py
	$(VENV)/bin/python bench/risk.py
	$(VENV)/bin/python bench/pg_protocol.py
	$(VENV)/bin/python bench/gateway_pg.py
	$(VENV)/bin/python bench/console.py
	$(VENV)/bin/python bench/alerts.py
	$(VENV)/bin/python bench/catchup.py

clean:
	rm -rf $(VENV) .piigate .piigate-demo .mypy_cache .ruff_cache .pytest_cache
