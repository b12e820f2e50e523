# thanos-rs: the two commands a user types are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: run test test-deps build lint bench fuzz fmt clean

## run: build the binaries (cargo profile `local`: optimised, quick to build) and start the local stack on a filesystem bucket
run:
	@scripts/run-local.sh

## test: install what the tests need, check formatting and clippy, build everything, run every test and a short run of every fuzz target
test: test-deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
	FUZZ_DEV=1 FUZZ_SECONDS=10 scripts/fuzz.sh

## test-deps: install the real programs the tests start (prometheus, moto, azurite, ...)
test-deps:
	@scripts/install-test-deps.sh

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: run the benchmarks and print their figures
bench: test-deps
	$(CARGO) bench --workspace

## fuzz: run every fuzz target (the parsers of outside bytes: block files, PromQL, StoreAPI requests, HTTP parameters, config YAML; sources in crates/*/fuzz/fuzz_targets, built together as the crates/fuzz package) for a bounded time (FUZZ_SECONDS each, default 60)
fuzz:
	@scripts/fuzz.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
