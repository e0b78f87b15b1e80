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

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache
