# make demo  - run the seed examples end to end against a throwaway gearmand
# make test  - the whole test suite (slow soak tests included) against real gearmands
# make test-docker - the suite against the docker-compose.yml gearmand (sets Docker up; root or sudo)
# make bench - pygear against libgearman driven from C, in the same run
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python

.PHONY: demo test test-fast test-docker bench tox wheel system-deps venv clean

system-deps:
	@scripts/ensure-system-deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e ".[test]"
	@touch $@

venv: system-deps $(VENV)/.installed

demo: venv
	$(VPY) examples/demo.py

test: venv
	$(VPY) -m pytest -ra

test-fast: venv
	$(VPY) -m pytest -ra -m "not slow"

test-docker: venv
	VPY=$(VPY) scripts/test-docker.sh $(PYTEST_ARGS)

bench: venv
	-$(VPY) -m pip install -q gear
	$(VPY) -m bench $(BENCH_ARGS)

tox: venv
	$(VPY) -m pip install -q tox
	$(VPY) -m tox

wheel: venv
	$(VPY) -m pip install -q build
	CC=false $(VPY) -m build --wheel

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .tox bench/.build
