# The two commands a newcomer needs (see README.md):
#   make run    install threadpilot and the pinned Copilot CLI, then run the bot
#   make test   install threadpilot with its test tools, then lint, type-check and test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLI := .copilot-cli/node_modules/@github/copilot/package.json

.PHONY: run test lint install install-dev

run: install $(CLI)
	$(BIN)/threadpilot

test: install-dev $(CLI) lint
	@# pytest exits 5 when it collects no tests: report that plainly rather than fail.
	$(BIN)/pytest || { code=$$?; if [ $$code -eq 5 ]; then echo "pytest: no tests collected"; else exit $$code; fi; }

lint: install-dev
	$(BIN)/ruff check bot adapters tests bench
	$(BIN)/ruff format --check bot adapters tests bench
	$(BIN)/mypy --strict bot adapters

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'

$(CLI):
	$(BIN)/threadpilot runtime install
