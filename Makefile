# A new user needs two commands (README.md): `make run` and `make test`.
# Both work on a machine that has only Python 3.11: they create .venv and install into it.
# With DATABASE_URL and REDIS_URL exported, the same commands use PostgreSQL and Redis.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/bench_ingest

.DEFAULT_GOAL := help
.PHONY: help run test lint format messages bench-ingest

help:
	@echo "make run           set up (venv, .env, migrate, demo data, superuser) and start web + worker + beat"
	@echo "make test          run the whole test suite (PYTEST_ARGS=\"-k name\" to narrow it)"
	@echo "make lint          ruff check"
	@echo "make format        ruff format"
	@echo "make messages      compile translations (needs gettext's msgfmt)"
	@echo "make bench-ingest  event ingest benchmark on PostgreSQL (BENCH_DATABASE_URL)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Install again only when a requirements file is newer than the stamp left by the last install.
$(VENV)/.installed-runtime: requirements.txt | $(PY)
	$(PIP) install -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-runtime

# Settings read .env; the secret key is made here, once per checkout, and never committed.
.env:
	@umask 077; $(PYTHON) -c 'import secrets; print("# Written by make run (see .env.example).\nDJANGO_SECRET_KEY=" + secrets.token_urlsafe(50))' > $@
	@echo "Wrote .env with a new random DJANGO_SECRET_KEY."

# Django's own catalogues ship compiled; ours are compiled here when gettext is installed,
# otherwise the committed .mo files are used as they are. The test settings need no secret key
# (a fresh clone has no .env yet) and locate the catalogues like every other settings module.
define compile_messages
	@if [ -z "$$(find . -path ./$(VENV) -prune -o -name '*.po' -print -quit)" ]; then \
		true; \
	elif command -v msgfmt >/dev/null; then \
		$(PY) manage.py compilemessages --settings=crm.settings.test --ignore=$(VENV) --ignore=node_modules \
			--verbosity=0; \
	else \
		echo "msgfmt (gettext) not found: using the translations as committed."; \
	fi
endef

messages: $(VENV)/.installed-runtime
	$(compile_messages)

run: $(VENV)/.installed-runtime .env
	$(compile_messages)
	$(PY) manage.py migrate --noinput
	@echo "Seeding demo data if the database has no members (under a minute the first time)..."
	$(PY) manage.py seed_demo --if-empty
	$(PY) manage.py health_backfill --days 180
	$(PY) bin/ensure_admin.py
	@echo "Starting web (http://127.0.0.1:8000/admin/), Celery worker and Celery beat; Ctrl-C stops all three."
	exec $(PY) bin/run_procfile.py Procfile

test: $(VENV)/.installed-dev
	$(compile_messages)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .

bench-ingest: $(VENV)/.installed-runtime
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) bench/bench_ingest.py
