#!/usr/bin/env bash
# The chaos soak, as `make soak` runs it (after build), and a small one inside `make test`
# (infra/local/test.sh). It brings up a stack of its own, like test.sh does: the mock
# providers first (`chorus mock-providers`, whose base URLs and keys `chorus local up` hands
# to the functions), then `chorus local up` (the emulator, the functions under cargo lambda
# watch, the SQS → Lambda bridge) with CHORUS_AWS_CHAOS_FILE set, so the functions' DynamoDB
# and SQS clients read their error rate from a file the soak switches during bursts. Then it
# runs `chorus-soak` against it (runs, faults, checks, report) and stops everything.
#
# Usage: infra/local/soak.sh [chorus-soak flags]     e.g. --runs 30 --kill-every 10s
#   Every flag also reads an environment variable (SOAK_RUNS, SOAK_KILL_EVERY, ...): see
#   target/debug/chorus-soak --help. The report is also written to .chorus/soak/report.md;
#   the functions' logs are in .chorus/local/ (lambda.log, and <function>.log for runtimes the
#   stack replaced after a kill), the mock's is .chorus/soak/mock.log.
# Environment: SOAK_MOCK_ADDR (127.0.0.1:8090), SOAK_EMULATOR (localstack or moto;
#   localstack), SOAK_VISIBILITY_TIMEOUT (seconds before a message a killed worker held is
#   delivered again; 10), CARGO_TARGET_DIR.
# Exit status: chorus-soak's (0 every promise held, 1 a violation, 2 it could not run), or 2
# when the stack did not come up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
DIR=$ROOT/.chorus/soak
# Copies of the binaries this checkout built: a target directory shared with other checkouts
# may get another build of `chorus` while the stack runs, and `chorus local up` re-runs its own
# executable to start the bridge.
CHORUS=$DIR/bin/chorus
SOAK=$DIR/bin/chorus-soak
MOCK_ADDR=${SOAK_MOCK_ADDR:-127.0.0.1:8090}
EMULATOR=${SOAK_EMULATOR:-localstack}
VISIBILITY=${SOAK_VISIBILITY_TIMEOUT:-10}

mock_pid=
stop_all() {
  "$CHORUS" local down >/dev/null 2>&1 || true
  if [[ -n $mock_pid ]]; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
}

fail() {
  echo "soak.sh: $*" >&2
  stop_all
  exit 2
}

# listening PORT: something answers on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The stack's ports are fixed: a stack that is already up (another checkout's, or `make
# test`'s) would be used by half of this one.
for port in 4566 8000 9000 "${MOCK_ADDR##*:}"; do
  if listening "$port"; then
    echo "soak.sh: something already listens on 127.0.0.1:$port (another local stack? \`chorus local down\` stops it)" >&2
    exit 2
  fi
done
# Up to date already after `make build` (make soak and make test run it first).
"$CARGO" build --workspace --all-features --quiet || fail "the build failed"
mkdir -p "$DIR/bin"
cp "$BIN/chorus" "$BIN/chorus-soak" "$DIR/bin/"
infra/local/tools.sh >&2
trap stop_all EXIT

echo "── chaos soak: the mock providers on $MOCK_ADDR ──" >&2
"$CHORUS" mock-providers --addr "$MOCK_ADDR" >"$DIR/mock.env" 2>"$DIR/mock.log" &
mock_pid=$!
for _ in $(seq 100); do
  grep -q '^export ' "$DIR/mock.env" && listening "${MOCK_ADDR##*:}" && break
  kill -0 "$mock_pid" 2>/dev/null || fail "chorus mock-providers exited: $(cat "$DIR/mock.log")"
  sleep 0.1
done
listening "${MOCK_ADDR##*:}" || fail "the mock providers do not answer on $MOCK_ADDR"
eval "$(grep '^export ' "$DIR/mock.env")"
export CHORUS_MOCK_URL=http://$MOCK_ADDR

# The functions inherit it through `chorus local up` and cargo lambda watch.
export CHORUS_AWS_CHAOS_FILE=$DIR/aws-error-rate
echo 0 >"$CHORUS_AWS_CHAOS_FILE"

echo "── chaos soak: the local stack on $EMULATOR ──" >&2
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB
"$CHORUS" local up --emulator "$EMULATOR" --visibility-timeout "$VISIBILITY" >"$DIR/up.out" ||
  fail "\`chorus local up\` failed (see above; logs in .chorus/local/)"
eval "$(grep '^export ' "$DIR/up.out")"

export SOAK_REPO=$ROOT
export SOAK_REPORT=${SOAK_REPORT:-$DIR/report.md}
export SOAK_EVIDENCE_DIR=${SOAK_EVIDENCE_DIR:-$DIR/evidence}
export SOAK_FUNCTION_LOGS=${SOAK_FUNCTION_LOGS:-$ROOT/.chorus/local}
echo "── chaos soak: chorus-soak $* ──" >&2
status=0
"$SOAK" "$@" || status=$?
stop_all
trap - EXIT
exit "$status"
