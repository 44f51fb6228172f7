# One command per workflow: make run, make test, make bench. CI runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two installs: what the app needs to run (`make run`), and on top of it the test and bench extras.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test test-sqlite test-postgres test-django6 bench install browser clean check-python check-python-django6 lint

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

test: $(DEV_STAMP) lint browser test-sqlite test-postgres test-django6

test-sqlite: $(DEV_STAMP)
	$(BIN)/python -m pytest

# The database-facing tests again on PostgreSQL (DATABASE_URL overrides the default).
test-postgres: $(DEV_STAMP)
	DATABASE_URL=$${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test} $(BIN)/python -m pytest -m "not e2e" tests/tasks

# The apps' tests again on Django 6 (Python 3.12+, which Django 6 needs), in a venv of their own
# with the pins of constraints-django6.txt. Python: pyenv's 3.12, else python3.12 on PATH, else
# one in pyenv's folder when pyenv is not on PATH.
PYTHON_DJANGO6 ?= $(shell PYENV_VERSION=3.12 pyenv which python3.12 2>/dev/null || command -v python3.12 \
  || ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1)
VENV_DJANGO6 := .venv-django6
BIN_DJANGO6 := $(VENV_DJANGO6)/bin
DJANGO6_STAMP := $(VENV_DJANGO6)/.installed-test

check-python-django6:
	@py="$(PYTHON_DJANGO6)"; \
	if [ -z "$$py" ] || ! "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	  if [ -z "$$py" ]; then echo "make test-django6 needs Python 3.12 or newer (Django 6 does), and found no python3.12 here." >&2; \
	  else echo "make test-django6 needs Python 3.12 or newer (Django 6 does), but '$$py' is not one (or does not run)." >&2; fi; \
	  echo "Install one (e.g. 'pyenv install 3.12') or name it: 'make test-django6 PYTHON_DJANGO6=/path/to/python3.12'." >&2; exit 1; \
	fi

$(BIN_DJANGO6)/python: | check-python-django6
	"$(PYTHON_DJANGO6)" -m venv $(VENV_DJANGO6)
	$(BIN_DJANGO6)/python -m pip install --quiet --upgrade pip

$(DJANGO6_STAMP): pyproject.toml constraints-django6.txt | $(BIN_DJANGO6)/python
	$(BIN_DJANGO6)/python -m pip install --quiet -c constraints-django6.txt -e '.[site,test]'
	touch $@

test-django6: $(DJANGO6_STAMP)
	@$(BIN_DJANGO6)/python -c 'import django, sys; print("Django", django.get_version(), "on Python", sys.version.split()[0])'
	DJANGO_SECRET_KEY=check-only REDIS_URL=redis://127.0.0.1:1/0 DJANGO_ALLOWED_HOSTS=check \
	  $(BIN_DJANGO6)/python manage.py check
	env -u DATABASE_URL $(BIN_DJANGO6)/python -m pytest -m "not e2e" tests/tasks tests/realtime tests/test_architecture.py

bench: $(DEV_STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(VENV_DJANGO6) var staticfiles

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	DJANGO_SECRET_KEY=lint-only REDIS_URL=redis://127.0.0.1:1/0 DJANGO_ALLOWED_HOSTS=lint \
	  $(BIN)/mypy project tasks realtime
