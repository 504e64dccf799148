# Everything runs from the project venv, which `make install` builds from constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install lint format unasync test test-fast demo bench sim localstack localstack-stop test-localstack test-obstore test-deps lock clean

# The bench extra is part of the dev install: mypy checks bench/ against strands and matplotlib.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $@

install: $(STAMP)

# The sync API is generated from the async one; `unasync` rewrites it, `lint` checks it is current.
unasync: install
	$(BIN)/python scripts/unasync.py

lint: install
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The full suite: lint, then every test against the in-memory client, moto server and
# SeaweedFS (both started and stopped by the test session on 127.0.0.1).
test: lint
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -x -q -m 'not slow'

demo: install
	$(BIN)/s3store demo



# The optional obstore (Rust) transport: the async conformance suite in both modes and the
# fault tests, on moto server and SeaweedFS through obstore (the sync suite skips these
# backends: the transport is async only).
test-obstore: install
	S3STORE_TEST_BACKENDS=moto-obstore,seaweedfs-obstore $(BIN)/pytest tests/_async \
		tests/test_faults.py -p no:cacheprovider

# LocalStack on the host (no Docker): its own Python 3.13 venv, S3 only, 127.0.0.1 only.
localstack:
	bash localstack/hostmode.sh start

localstack-stop:
	bash localstack/hostmode.sh stop

# The conformance and concurrency suites (async and sync) against LocalStack. Fails with one
# clear line if LocalStack cannot be installed; always stops what it started.
LOCALSTACK_PORT ?= 4566
test-localstack: install
	bash localstack/hostmode.sh start
	S3STORE_TEST_BACKENDS=localstack LOCALSTACK_ENDPOINT=http://127.0.0.1:$(LOCALSTACK_PORT) \
		$(BIN)/pytest tests/_async tests/_sync tests/test_concurrency.py tests/test_lambda_handler.py \
		tests/test_leases.py tests/test_journal.py tests/test_watch.py -p no:cacheprovider; \
		status=$$?; bash localstack/hostmode.sh stop; exit $$status

# Dependency ranges and the wheel (.ci/test-deps.sh), each in a fresh .venv-deps-* venv, on
# the in-memory client and moto server: newest and lowest versions pyproject.toml allows
# (Python 3.11), the lock on Python 3.12 and 3.13, and the built wheel installed outside the
# source tree. DEPS_JOBS="lowest wheel" runs a subset.
DEPS_JOBS ?=
test-deps:
	bash .ci/test-deps.sh $(DEPS_JOBS)

# The fleet simulator over more seeds than `make test` runs (SEEDS per profile), with the
# stores on SimClient (botocore's retries) and on the real obstore client over a fake of its
# Rust layer (tests/sim/obstore_wire.py).
SEEDS ?= 500
sim: install
	$(BIN)/python -m tests.sim --seeds $(SEEDS) --transport all --keep-going

# Every scenario, both servers, 3 repeats; BENCH_ARGS="--quick" for a smoke run.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e '.[dev,bench]'
	.venv-lock/bin/pip freeze --exclude-editable | sed '1i # Lock for the whole dependency tree (runtime + dev). Regenerate with `make lock`.' > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .venv-deps-* .venv-localstack .localstack .mypy_cache .ruff_cache .pytest_cache .hypothesis
