#!/usr/bin/env bash
# The whole test suite, as `make test` runs it (after lint and build). First the providers'
# official SDKs against the mock provider server (a test ignored by plain `cargo test`: it needs
# the .tools/sdks venv that tools.sh installs). Then, for each emulator (LocalStack + DynamoDB
# Local, then moto): start it, bring up the local AWS loop with `chorus local up` (the four
# functions under cargo lambda watch, the SQS → Lambda bridge), run the tests including the
# ignored ones (the tests that need the stack are #[ignore]d so that a plain `cargo test` lists
# them instead of failing; run without the stack they fail), then stop it all. Everything runs
# on the first emulator; the AWS suites (conformance, request counts, bridge, end to end, a
# crashed function) run again on moto. The crash test SIGKILLs the worker the other stack tests
# use, so it runs on its own, after them. Between the two emulators, a small chaos soak
# (infra/local/soak.sh, on a LocalStack stack of its own: the worker is SIGKILLed and faults
# injected, so it cannot share a stack with tests running in parallel) checks that every run
# ends, each step's result is committed once and every client is notified exactly once.
# Usage: infra/local/test.sh     (CARGO, CARGO_TARGET_DIR as in the Makefile)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
CHORUS=${CARGO_TARGET_DIR:-$ROOT/target}/debug/chorus
AWS_SUITES='binary(aws_conformance) | binary(aws_cost) | binary(local_bridge) | binary(local_e2e)'
# Everything but the official SDK check, which sdk_check runs once, before the emulators.
ALL_BUT_SDKS='not binary(official_sdks)'
# Kills the worker's runtime: after everything else, alone.
CRASH_SUITE='binary(local_crash)'
SDK_TEST=the_official_sdks_default_calls_are_answered_by_the_mock

infra/local/tools.sh >&2

# run_tests all|aws: every test, or the AWS suites only, the ignored ones included (with the
# stack up, the tests that need it are due), then the crash test. nextest when installed (one
# summary line per run), else cargo test (which runs one test binary at a time, so the crash
# test is alone there too).
run_tests() {
  local filter=$ALL_BUT_SDKS status=0
  if [[ $1 == aws ]]; then filter=$AWS_SUITES; fi
  if "$CARGO" nextest --version >/dev/null 2>&1; then
    "$CARGO" nextest run --workspace --all-features --no-fail-fast --run-ignored all \
      -E "($filter) and not $CRASH_SUITE" || status=$?
    "$CARGO" nextest run --workspace --all-features --run-ignored all -E "$CRASH_SUITE" || status=$?
  elif [[ $1 == all ]]; then
    "$CARGO" test --workspace --all-targets --all-features --no-fail-fast -- --include-ignored --skip "$SDK_TEST" ||
      status=$?
  else
    "$CARGO" test --all-features --no-fail-fast -p chorus-tests --test aws_conformance --test aws_cost \
      --test local_bridge --test local_e2e --test local_crash -- --include-ignored || status=$?
  fi
  return "$status"
}

# The official SDKs against the mock: devtools/mock-providers/tests/official_sdks.rs, which is
# #[ignore]d so that `cargo test` without .tools/sdks does not fail; here the venv exists.
sdk_check() {
  echo "── the official provider SDKs against the mock ──" >&2
  if "$CARGO" nextest --version >/dev/null 2>&1; then
    "$CARGO" nextest run --all-features -p chorus-mock-providers --test official_sdks --run-ignored only
  else
    "$CARGO" test --all-features -p chorus-mock-providers --test official_sdks -- --ignored
  fi
}

stop_all() {
  "$CHORUS" local down >/dev/null 2>&1 || true
  infra/local/emulator.sh stop 2>/dev/null || true
}

# with_emulator NAME all|aws: every test, or the AWS suites, on NAME.
# A stack that does not come up stops the whole script at once: tests against a half-made
# stack fail for reasons that have nothing to do with the code. (Called from `if`/`||`, a
# function runs with `set -e` off, so every step that must stop it checks explicitly.)
with_emulator() {
  local name=$1 suites=$2 status=0 env
  echo "── tests on $name ──" >&2
  unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB
  trap stop_all EXIT
  env=$(EMULATOR=$name infra/local/emulator.sh start) || fail "the $name emulator did not start (see above)"
  eval "$env"
  # A short visibility timeout lets a poison message reach the dead-letter queue in seconds.
  "$CHORUS" local up --visibility-timeout 2 >/dev/null ||
    fail "\`chorus local up\` failed on $name (see above; logs in .chorus/); no tests were run on it"
  run_tests "$suites" || status=$?
  stop_all
  trap - EXIT
  return "$status"
}

# fail MESSAGE: stop everything and exit non-zero, whatever called us.
fail() {
  echo "test.sh: $*" >&2
  stop_all
  exit 1
}

# Build the test binaries first: cargo lambda watch rebuilds the functions when sources
# change, and must not wait on cargo's lock while tests run.
if "$CARGO" nextest --version >/dev/null 2>&1; then
  "$CARGO" nextest run --workspace --all-features --no-run >/dev/null
else
  "$CARGO" test --workspace --all-targets --all-features --no-run >/dev/null
fi

# soak_check: the chaos soak, small enough for CI (about 3 to 4 minutes with the stack's start).
# Each run is a diamond and a three-item map (two rounds of items): its longest chain is five
# steps deep, and a step whose worker is killed waits out its lease (150 s) before the
# reconciler sends it again, so the last run ends after about 3 minutes; the deadline leaves room.
soak_check() {
  echo "── chaos soak (30 runs) on localstack ──" >&2
  SOAK_EMULATOR=localstack infra/local/soak.sh --runs 30 --submit-rate 3 --kill-every 10s \
    --burst-every 15s --burst-for 5s --deadline 420s --notify-grace 30s
}

failed=0
sdk_check || failed=1
with_emulator localstack all || failed=1
soak_check || failed=1
with_emulator moto aws || failed=1
exit "$failed"
