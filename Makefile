# One command per workflow: make run, make test, make bench. CI runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two installs: what the app needs to run (`make run`), and on top of it the test and bench extras.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test test-sqlite test-postgres bench install browser clean check-python lint

# Python 3.11+ first, with a message rather than a pip error: the venv's own python if it
# exists, else $(PYTHON), which makes the venv.
check-python:
	@py=$(BIN)/python; [ -x "$$py" ] || py="$(PYTHON)"; \
	if ! command -v "$$py" >/dev/null 2>&1; then \
	  echo "Tasklight needs Python 3.11 or newer, and there is no '$$py' here. Install one and run e.g. 'make run PYTHON=python3.12'." >&2; exit 1; \
	elif ! "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	  v=$$("$$py" -c 'import platform; print(platform.python_version())' 2>/dev/null) || v="(it does not run)"; \
	  echo "Tasklight needs Python 3.11 or newer, but '$$py' is Python $$v." >&2; \
	  echo "Install a newer one and run e.g. 'make run PYTHON=python3.12' (after 'make clean' if .venv was made with the old one)." >&2; exit 1; \
	fi

$(BIN)/python: | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Exact versions from constraints.txt; pyproject.toml only declares the ranges the apps accept.
$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[site]'
	touch $@

$(DEV_STAMP): pyproject.toml constraints.txt $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[site,test,bench]'
	touch $@

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	@$(BIN)/python scripts/run_stack.py

# The browser comes from Debian's packages (Playwright drives /usr/bin/chromium).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; fi; }

test: $(DEV_STAMP) lint browser test-sqlite test-postgres

test-sqlite: $(DEV_STAMP)
	$(BIN)/python -m pytest

# The database-facing tests again on PostgreSQL (DATABASE_URL overrides the default).
test-postgres: $(DEV_STAMP)
	DATABASE_URL=$${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test} $(BIN)/python -m pytest -m "not e2e" tests/tasks

bench: $(DEV_STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var staticfiles

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	DJANGO_SECRET_KEY=lint-only REDIS_URL=redis://127.0.0.1:1/0 DJANGO_ALLOWED_HOSTS=lint \
	  $(BIN)/mypy project tasks realtime
