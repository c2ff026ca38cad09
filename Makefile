# The two commands: `make run` and `make test` (see README.md); `make test-postgresql`
# runs the same suite with every test server's records in PostgreSQL.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
APT_PACKAGES := chromium prometheus coturn jq openssl nftables iproute2 redis-server postgresql

.PHONY: run test test-postgresql lint bench system-packages

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -q -e '.[test]'
	touch $@

$(VENV)/.bench: $(VENV)/.base
	$(PIP) install -q -e '.[bench]'
	touch $@

run: $(VENV)/.base
	$(VENV)/bin/visitbridge serve --demo

# Debian packages the tests drive for real (Chromium for browser tests, Prometheus and
# promtool for the monitoring files, coturn for TURN, jq and openssl for the export's
# hand check, openssl also as the tests' RFC 3161 time-stamp authority, redis-server for
# placement across nodes, iproute2 and nftables for the network harness, PostgreSQL's
# server binaries for the records tests, which start a throwaway cluster), without
# recommends.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .

# Tests marked solo (real-time media, time bounds) run one at a time; the rest first, on
# two workers, since most of them wait on real time. Both halves run, whatever the first did.
SUITE = $(PY) -m pytest -n 2 --dist loadfile -m "not solo"; first=$$?; \
	$(PY) -m pytest -m solo; second=$$?; [ $$first -eq 0 ] && [ $$second -eq 0 ]

test: $(VENV)/.test system-packages lint
	$(SUITE)

test-postgresql: export VISITBRIDGE_TEST_DATABASE = postgresql
test-postgresql: $(VENV)/.test system-packages lint
	$(SUITE)

bench: $(VENV)/.bench
	$(PY) -m benchmarks.forwarding --visits 10 --seconds 30
