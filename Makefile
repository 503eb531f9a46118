# Developer and CI entry points. Everything builds into one target dir, so `make test`
# after `make dev` (or the other way round) reuses what is already compiled.
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: test lint fmt build dev local-up local-down soak fuzz

## test: lint, build, then every test on a local AWS emulator (infra/local/test.sh installs the
# emulators, SAM and cargo-lambda into .tools/ on first use and starts and stops everything),
# a small chaos soak included (30 runs)
test: lint build
	CARGO=$(CARGO) infra/local/test.sh

## fuzz: the property tests of the definition parser, validation, templates and the API's edge
# (shared/src/domain/properties/, shared/src/http/tests/properties.rs) with FUZZ_CASES cases
# each instead of `make test`'s few hundred; a failure is shrunk, printed and its seed saved
# in shared/proptest-regressions/ (commit it). FUZZ_CASES=50000 make fuzz for a longer run.
FUZZ_CASES ?= 10000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --workspace --all-features --lib -- ::properties::

## lint: formatting and clippy (warnings are errors), cfn-lint and sam validate on the template
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	infra/lint.sh

## fmt: format the whole workspace
fmt:
	$(CARGO) fmt --all

## build: the `chorus` binary with `chorus local` (the `aws` feature; infra/local/test.sh runs
# target/debug/chorus local up) and the four Lambda functions (served by `cargo lambda watch`
# in the local AWS loop). --all-features everywhere keeps one build of each crate.
build:
	$(CARGO) build --workspace --all-features

## dev: the whole service in one process on http://127.0.0.1:3000, no AWS, no keys (built
# without the AWS SDK: the README's first command)
dev:
	$(CARGO) run --release -p chorus-cli -- dev

## local-up: the full-fidelity local loop (emulator, functions under cargo lambda watch, bridge)
local-up: build
	$(CARGO_TARGET_DIR)/debug/chorus local up

## local-down: stop what local-up started
local-down:
	$(CARGO_TARGET_DIR)/debug/chorus local down

## soak: the chaos soak on the local AWS stack (infra/local/soak.sh: the stack and the mock
# providers, then chorus-soak): 200 diamond runs while providers fail (20%), step messages are
# duplicated, the worker is SIGKILLed every 5 s and DynamoDB/SQS errors come in bursts; fails
# unless every run ends, each step's result is committed once and every run is notified
# exactly once, and prints a summary table. Settings by environment (SOAK_RUNS=50,
# SOAK_KILL_EVERY=10s, ...; chorus-soak --help lists them) or SOAK_ARGS="--runs 50".
soak: build
	CARGO=$(CARGO) infra/local/soak.sh $(SOAK_ARGS)
