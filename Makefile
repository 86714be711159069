# Every target sets itself up: a fresh machine needs only python3 (>= 3.11) and make.
VENV   ?= .venv
# The distribution's python3 where it is 3.11 or newer and can make a venv: Debian builds CPython with
# profile-guided and link-time optimisation, and the gateway runs about 12% faster on it than on a
# build without them (benchmarks/bench_simulation.py, README "Benchmarks"). Otherwise the python3 on
# PATH. Override with `make PYTHON=... setup` (after `make clean`).
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
            $$p -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
          done)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DB     ?= data/vbgateway.duckdb
LAB_PORT ?= 8888

.PHONY: setup browser demo lint test bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: setup
	$(VENV)/bin/vbgateway demo --db $(DB)

# ruff (style and likely bugs) and mypy (types) over the whole tree, as part of every test run.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

test: setup browser lint
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_gateway.py
	$(PY) benchmarks/bench_api.py
	$(PY) benchmarks/bench_analytics.py
	$(PY) benchmarks/bench_simulation.py
	$(PY) benchmarks/bench_proxy.py

clean:
	-@[ -x $(VENV)/bin/vbgateway ] && $(VENV)/bin/vbgateway service stop --db $(DB)
	rm -rf $(VENV) data/*.duckdb data/*.duckdb.wal data/*.journal reports/*.html \
	  data/*.duckdb.service.* data/*.duckdb.operator data/*.duckdb.demo-key.json

# JupyterLab on loopback for the notebooks, with this project's settings (jupyter_config/: no news or
# update checks). Jupyter refuses root without --allow-root, so it is given to root only (a container).
# The URL carries a fresh token; LAB_PORT picks the port (no silent move to another one).
# It first starts (or finds) the local gateway service of $(DB), which every notebook kernel then shares;
# the service outlives JupyterLab until idle for an hour or `vbgateway service stop --db $(DB)`.
lab: setup
	@$(VENV)/bin/vbgateway service start --db $(DB)
	@token=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(24))'); \
	as_root=$$([ "$$(id -u)" = 0 ] && echo --allow-root); \
	echo "JupyterLab for VocalBridge Ops: http://127.0.0.1:$(LAB_PORT)/lab?token=$$token  (Ctrl-C stops it)"; \
	JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter_config" JUPYTER_TOKEN=$$token exec $(VENV)/bin/jupyter lab \
	  --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 \
	  --ServerApp.root_dir="$(CURDIR)/notebooks" $$as_root
