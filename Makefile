# davpack — two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=
# Arguments of the bench suite, e.g. BENCH_ARGS='--quick --only W1,W6' (see bench/README.md).
BENCH_ARGS ?=

.PHONY: run test test-sqlite test-postgres lint init system-deps bench clean

$(BIN)/davpack: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# The SWORD v2 test client pins lxml<5 and httplib2<0.19, which it does not need: install it
	# beside the project's own (its deps, httplib2, come from the test extra).
	$(BIN)/pip install --quiet --no-deps 'sword2==0.3.*'
	touch $@

init: $(BIN)/davpack
	$(BIN)/davpack db upgrade

run: init
	$(BIN)/davpack serve

system-deps:
	bash .ci/system-deps

test: init system-deps lint test-sqlite test-postgres

lint: $(BIN)/davpack
	$(BIN)/ruff check server packagers tests bench
	$(BIN)/mypy

test-sqlite: $(BIN)/davpack
	$(BIN)/pytest $(PYTEST_ARGS)

# The same suite on PostgreSQL, in a fresh database made (and dropped) for this run.
test-postgres: $(BIN)/davpack
	@if $(BIN)/python .ci/pgdb.py ping "$(PG_ADMIN_URL)"; then \
	  db=davpack_test_$$$$; \
	  $(BIN)/python .ci/pgdb.py create "$(PG_ADMIN_URL)" $$db && \
	  DAVPACK_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/$$db" \
	    $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	  $(BIN)/python .ci/pgdb.py drop "$(PG_ADMIN_URL)" $$db; exit $$rc; \
	else echo "PostgreSQL does not answer on $(PG_ADMIN_URL): PostgreSQL leg not run"; \
	  test -z "$$CI" || exit 1; fi

# The benchmark suite: one table of figures against baselines, JSON in var/bench/<time>/.
bench: init
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
