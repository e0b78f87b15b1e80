# Every target creates .venv idempotently: a fresh clone needs nothing but `make demo` / `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ns3]'
	@touch $(STAMP)

demo: venv
	$(BIN)/splitimpera simulate scenarios/demo.yaml -o results
	@echo
	$(BIN)/splitimpera simulate scenarios/demo_mcu.yaml -o results
	@echo
	$(BIN)/splitimpera simulate scenarios/demo_exit.yaml -o results

# The suite at 2 torch threads, then the tests of trained values again at 1: a trained
# network's bits change with the thread count (and the CPU), so those tests must hold at both.
test: venv
	SPLITIMPERA_TEST_THREADS=2 $(BIN)/python -m pytest -q
	SPLITIMPERA_TEST_THREADS=1 $(BIN)/python -m pytest -q -m trained

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache
