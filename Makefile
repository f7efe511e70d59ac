# The targets are exactly what CI runs (.ci/run); `make run` and `make test` are the README's.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/warden
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

# pytest exits 5 when it collected no tests: that is a failure, said out loud.
PYTEST = $(BIN)/pytest --create-db || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

.PHONY: install run demo-reset test test-postgres test-sqlite lint check fuzz-api ci

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Warden needs Python 3.11 or newer: make PYTHON=python3.11 …")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Unless a signing key is configured, the demo makes one in data/ so exports and checkpoints work;
# auditors verify with data/audit-verify.pub.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_seed
	@if [ -z "$$AUDIT_SIGNING_KEY$$AUDIT_SIGNING_KEY_FILE" ]; then \
		[ -f data/audit-signing.key ] || $(BIN)/python manage.py audit_keygen --out data; \
		export AUDIT_SIGNING_KEY_FILE=data/audit-signing.key; \
	fi; \
	$(BIN)/python manage.py serve 127.0.0.1:8000

# The demo's database and the witness copies of its checkpoints go together: a new database with
# the old witness is, rightly, a ledger that lost its history, and no export is signed over it.
demo-reset:
	rm -rf data/warden.sqlite3 data/warden.sqlite3-wal data/warden.sqlite3-shm data/witness

test: install
	$(PYTEST)

test-postgres: install
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PYTEST)

test-sqlite: install
	DATABASE_URL= REDIS_URL= $(PYTEST)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

check: install
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run
	DEBUG=false SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
		ALLOWED_HOSTS=warden.example.com $(BIN)/python manage.py check --deploy --fail-level WARNING

fuzz-api: install
	bash .ci/fuzz-api

ci:
	bash .ci/run
