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
# transformers and tiktoken.
test: bootstrap peers
	$(CARGO) build --tests --workspace
	$(CARGO) test --workspace --no-fail-fast

demo: release
	scripts/demo

bench: release peers
	$(PLUMB_PYTHON) bench/run.py

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
