# Chuchuang: `make dev` runs the whole stack, `make test` the suite, `make bench` the benchmarks.
# Both bootstrap .venv (Python 3.11+) and reinstall only when pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: dev test bench profile fuzz venv clean distclean

venv: $(STAMP)

$(PY):
	@test -n "$(PYTHON)" || { echo "need python3.11 (or python3 >= 3.11) on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

dev: $(STAMP)
	$(VENV)/bin/chuchuang dev

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the suite's schemathesis run (tests/test_api_fuzz.py), longer: more examples per operation and role
FUZZ_EXAMPLES ?= 10
FUZZ_BUDGET_SECONDS ?= 900
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_BUDGET_SECONDS=$(FUZZ_BUDGET_SECONDS) \
		$(PY) -m pytest -q -s -o timeout=1800 tests/test_api_fuzz.py $(PYTEST_ARGS)

bench: $(STAMP)
	@set -e; for f in bench/*.py; do case "$$f" in *bare_workflow.py|*bare_stack.py|*profile_top.py) continue;; esac; \
		[ -e "$$f" ] || continue; \
		echo "== $$f"; $(PY) "$$f"; \
	done

# py-spy over the order pipeline benchmark, then its top entries (bench/profile_top.py); --gil
# samples only the thread holding the GIL: the one process's CPU, not threads waiting on I/O
profile: $(STAMP)
	$(PY) -m pip install --quiet py-spy
	$(VENV)/bin/py-spy record --gil -r 100 -f raw -o .profile-order-pipeline.txt -- $(PY) bench/order_pipeline.py
	$(PY) bench/profile_top.py .profile-order-pipeline.txt

# build artefacts and caches; keeps .venv and the dev data in .data/
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# also the virtualenv (the dev data in .data/ is never removed by make: `rm -rf .data` to reset)
distclean: clean
	rm -rf $(VENV)
