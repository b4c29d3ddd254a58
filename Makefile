# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ACCOUNTS ?= 100
WEEKS ?= 26
SEED ?= 7
DEMO_CONFIG ?= config/demo.json

.PHONY: demo test lint fmt install clean synth layer bench

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs with uv when it can be had (fast), else plain pip; re-runs when a requirement changes.
$(STAMP): $(PY) requirements.txt requirements-dev.txt requirements-infra.txt shared/pyproject.toml
	@if $(PY) -m pip install -q uv==0.13.8 && $(VENV)/bin/uv --version >/dev/null 2>&1; then \
		$(VENV)/bin/uv pip install -q --python $(PY) -r requirements-dev.txt -e shared; \
	else \
		$(PY) -m pip install -q -r requirements-dev.txt -e shared; \
	fi
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/alluse demo --accounts $(ACCOUNTS) --weeks $(WEEKS) --seed $(SEED) --config $(DEMO_CONFIG)

test: $(STAMP)
	$(PY) -m pytest -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check shared functions tests bench infra app.py
	$(VENV)/bin/ruff format --check shared functions tests bench infra app.py
	$(VENV)/bin/mypy shared/alluse functions infra app.py

fmt: $(STAMP)
	$(VENV)/bin/ruff format shared functions tests bench infra app.py
	$(VENV)/bin/ruff check --fix shared functions tests bench infra app.py

# Throughput figures (not timed tests): pricing, chains, paper broker, a simulated week, the protocol fleet run.
bench: $(STAMP)
	$(PY) -m bench.market_bench
	$(PY) -m bench.protocol_bench

# CloudFormation template into cdk.out/, offline; cdk-nag findings fail it.
synth: $(STAMP)
	CDK_OUTDIR=cdk.out $(PY) app.py

# The Lambda layer (alluse + runtime libraries) into layers/build/python.
layer: $(STAMP)
	layers/build.sh

clean:
	rm -rf $(VENV) .alluse .pytest_cache .mypy_cache .ruff_cache cdk.out layers/build
