# The whole set-up on a fresh clone is `make test` or `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[apprise,web,test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check soapd tests bench tools
	$(BIN)/ruff format --check soapd tests bench tools
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck $(STAMP)
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo 'no tests collected' >&2; exit 1; fi; exit $$rc

demo: $(STAMP)
	$(BIN)/python -m soapd.cli.demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
