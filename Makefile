# make demo  - run the seed examples end to end against a throwaway gearmand
# make test  - the whole test suite (slow soak tests included) against real gearmands
# make test-docker - the suite against the docker-compose.yml gearmand (sets Docker up; root or sudo)
#              (GEARMAN_SERVER=host:port: against that one; gearmand is then not installed)
# make tox   - the suite under every CPython 3.9-3.13 and PyPy 3 found (pyenv's too)
# make bench - pygear against libgearman driven from C, in the same run
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python

.PHONY: demo test test-fast test-docker bench tox wheel system-deps venv clean

# With GEARMAN_SERVER set the suite uses that server and starts no gearmand
# of its own, so the gearmand package is not needed for test and tox.
test test-fast tox: DEPS_ARGS = $(if $(GEARMAN_SERVER),--no-server)

system-deps:
	@scripts/ensure-system-deps.sh $(DEPS_ARGS)

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
	$(VPY) scripts/tox-report.py $(TOX_ARGS)   # offers tox pyenv's interpreters too

wheel: venv
	$(VPY) -m pip install -q build
	CC=false $(VPY) -m build -q --wheel

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .tox bench/.build
