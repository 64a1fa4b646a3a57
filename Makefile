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

.PHONY: all bootstrap peers build release test demo bench fmt clean

all: build

bootstrap:
	scripts/bootstrap torch

peers:
	scripts/bootstrap peers

build: bootstrap
	$(CARGO) build

release: bootstrap
	$(CARGO) build --release

# The whole test suite: unit tests, and the integration tests that compare plumb with
# transformers and tiktoken. Each test runs in its own process (nextest), because
# libtorch's random generator is global: seeded tests must not share it. Without
# nextest, the tests run one at a time. With one process per core, each test uses one
# thread: OpenMP threads of several processes spinning on the same cores slow all of
# them down many times over.
test: bootstrap peers
	$(CARGO) build --tests --workspace
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  OMP_NUM_THREADS=1 $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast -- --test-threads=1; \
	fi

demo: release
	scripts/demo

bench: release peers
	$(PLUMB_PYTHON) bench/run.py

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
