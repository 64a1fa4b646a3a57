# plumb: `make demo` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# tch finds libtorch through the torch package in .venv, unless LIBTORCH names one.
ifeq ($(strip $(LIBTORCH)),)
export LIBTORCH_USE_PYTORCH := 1
endif
export PATH := $(CURDIR)/.venv/bin:$(PATH)
# The Python that tests and benchmarks run their peers (transformers, tiktoken) with.
export PLUMB_PYTHON ?= $(CURDIR)/.venv/bin/python
CARGO ?= cargo

# The throwaway Postgres cluster that the integration tests share (tests/integration/db.rs
# reads PLUMB_TEST_PG). As root its server runs as `postgres`, which may not reach a
# checkout under /root: then it lives in /tmp, named by the checkout's path.
ifeq ($(shell id -u),0)
export PLUMB_TEST_PG ?= /tmp/plumb-test-pg-$(shell printf %s '$(CURDIR)' | sha256sum | cut -c1-26)
else
export PLUMB_TEST_PG ?= $(CURDIR)/target/plumb-test-pg
endif

# The shell's exit trap of `make test`: stops the test cluster and keeps the suite's status.
# Its `plumb` is the one the suite ran (built by `cargo build --tests`; `cargo run` would
# build another, in the dev profile).
stop_test_pg = status=$$?; \
  if [[ -z $${DATABASE_URL:-} ]]; then \
    "$${CARGO_TARGET_DIR:-target}/debug/plumb" db stop --cluster "$$PLUMB_TEST_PG" \
      || echo "make test: the test cluster in $$PLUMB_TEST_PG did not stop" >&2; \
  fi; \
  exit $$status

.PHONY: all bootstrap peers postgres build release test demo bench fmt clean

all: build

bootstrap:
	scripts/bootstrap torch

peers:
	scripts/bootstrap peers

postgres:
	scripts/bootstrap postgres

build: bootstrap
	$(CARGO) build

release: bootstrap
	$(CARGO) build --release

# The whole test suite: unit tests, and the integration tests that compare plumb with
# transformers and tiktoken. Each test runs in its own process (nextest), because
# libtorch's random generator is global: seeded tests must not share it. Without
# nextest, the tests run one at a time. With one process per core, each test uses one
# thread: OpenMP threads of several processes spinning on the same cores slow all of
# them down many times over. The tests' throwaway cluster is stopped after the suite,
# pass or fail. First, a `plumb` without the trainer must still build and serve.
test: bootstrap peers postgres
	scripts/check-no-trainer
	$(CARGO) build --tests --workspace
	trap '$(stop_test_pg)' EXIT; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  OMP_NUM_THREADS=1 $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast -- --test-threads=1; \
	fi

demo: release postgres
	scripts/demo

bench: release peers
	$(PLUMB_PYTHON) bench/run.py

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
