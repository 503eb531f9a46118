# Developer and CI entry points. Everything builds into one target dir, so `make test`
# after `make dev` (or the other way round) reuses what is already compiled.
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: test lint fmt build dev

## test: lint, build the `chorus` binary the end-to-end test starts, run every test
# nextest runs each test in its own process and ends on one summary line; plain cargo test
# is the fallback where it is not installed.
test: lint build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --all-targets; \
	fi

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fmt: format the whole workspace
fmt:
	$(CARGO) fmt --all

## build: the `chorus` binary (tests/tests/dev_binary.rs runs target/debug/chorus)
build:
	$(CARGO) build -p chorus-cli

## dev: the whole service in one process on http://127.0.0.1:3000, no AWS, no keys
dev:
	$(CARGO) run --release -p chorus-cli -- dev
