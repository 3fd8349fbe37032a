# metarl_jax: `make run` sets up a virtualenv and runs the main job's small preset on CPU;
# `make test` runs the test suite (the command CI runs); `make bench` runs the benchmark suite
# (quick preset; `python -m benchmarks.run --preset full` for the full one).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Extra pytest options, e.g. `PYTEST_ARGS=--durations=40 make test`.
PYTEST_ARGS ?=
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test test-mjx bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench,dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: install
	$(PY) -m experiments.dr_pendulum --preset quick

test: install
	$(PY) -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

# The MJX experiments end to end (marked mjx_e2e; minutes of compiles each, not in `make test`).
test-mjx: install
	$(PY) -m pytest -n 2 --dist loadfile -q -m mjx_e2e $(PYTEST_ARGS)

bench: install
	$(PY) -m benchmarks.run --preset quick

lint: install
	$(PY) -m ruff check metarl_jax envs experiments benchmarks tests notebooks

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache *.egg-info
