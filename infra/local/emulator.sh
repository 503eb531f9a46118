#!/usr/bin/env bash
# Runs the local AWS emulator that the tests, `cargo lambda watch` and the chorus CLI talk to.
#
# Usage: eval "$(infra/local/emulator.sh start)"   start it (once) and export its environment
#        infra/local/emulator.sh env                print the export lines for what is running
#        infra/local/emulator.sh stop               stop what `start` started
#
# EMULATOR=localstack (default)  LocalStack in host mode for SQS and S3 + DynamoDB Local (DynamoDB)
# EMULATOR=moto                  moto_server for SQS, S3 and DynamoDB (DynamoDB serialized: moto_server.py)
# EMULATOR_PORT (4566), DYNAMODB_PORT (8000), CHORUS_STATE_DIR (<repo>/.chorus/emulator: pid
# files and logs). With AWS_ENDPOINT_URL already set (say, your own LocalStack), `start` runs
# nothing and prints the environment for that endpoint. stdout carries only `export` lines,
# progress goes to stderr. Tools come from infra/local/tools.sh, run first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=$ROOT/.tools
STATE=${CHORUS_STATE_DIR:-$ROOT/.chorus/emulator}
EMULATOR=${EMULATOR:-localstack}
EMULATOR_PORT=${EMULATOR_PORT:-4566}
DYNAMODB_PORT=${DYNAMODB_PORT:-8000}
# How long a start (or an emulator given in AWS_ENDPOINT_URL) may take to become ready.
START_TIMEOUT=${START_TIMEOUT:-120}
PROCESSES=(localstack dynamodb moto)

log() { printf 'emulator: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# answers URL: something serves HTTP at URL within 2 s (any status). A single probe: readiness
# loops over it (or `healthy`) until a deadline.
answers() { curl -s -o /dev/null --max-time 2 "$1"; }

# healthy URL: URL answers 2xx within 5 s (a cold LocalStack can take seconds per request).
healthy() { curl -sf -o /dev/null --max-time 5 "$1"; }

# endpoint_ready ENDPOINT: LocalStack's health endpoint answers 2xx, or (another emulator:
# moto, DynamoDB Local, ...) the root answers at all.
endpoint_ready() { healthy "$1/_localstack/health" || answers "$1"; }

# wait_endpoint ENDPOINT SECONDS: wait until endpoint_ready or the deadline passes.
wait_endpoint() {
  local deadline=$((SECONDS + $2))
  until endpoint_ready "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# running NAME: the process recorded in NAME.pid is alive and is one of our tools.
running() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$TOOLS/"
}

# launch NAME COMMAND...: run COMMAND detached in its own session, logging to NAME.log.
# 9>&- : the child must not inherit the lock that `start` holds.
launch() {
  local name=$1
  shift
  log "starting $name (log: $STATE/$name.log)"
  (cd "$STATE" && exec setsid nohup "$@" >"$STATE/$name.log" 2>&1 </dev/null 9>&-) &
  echo $! >"$STATE/$name.pid"
}

# wait_healthy NAME URL: wait up to START_TIMEOUT seconds for LocalStack's health endpoint to
# answer 2xx (any answer from the others: DynamoDB Local's root is a 400); on failure show
# NAME's log tail.
wait_healthy() {
  local name=$1 url=$2 deadline=$((SECONDS + START_TIMEOUT)) probe=answers
  [[ $name == localstack ]] && probe=healthy
  until $probe "$url"; do
    if ! running "$name" || ((SECONDS > deadline)); then
      log "$name did not come up at $url; last lines of $STATE/$name.log:"
      tail -n 30 "$STATE/$name.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  log "$name is up at $url ($((SECONDS - started)) s)"
}

stop_all() {
  local name pid
  for name in "${PROCESSES[@]}"; do
    if running "$name"; then
      pid=$(<"$STATE/$name.pid")
      log "stopping $name (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in {1..40}; do running "$name" || break; sleep 0.25; done
      if running "$name"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    fi
    rm -f "$STATE/$name.pid"
  done
  rm -f "$STATE/env"
}

# print_env ENDPOINT [DYNAMODB_ENDPOINT]: the environment the SDKs, the tests and chorus read, as export lines.
print_env() {
  echo "export AWS_ENDPOINT_URL=$1"
  [[ -n ${2:-} ]] && echo "export AWS_ENDPOINT_URL_DYNAMODB=$2"
  echo "export AWS_REGION=${AWS_REGION:-us-east-1}"
  echo "export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"
  echo "export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}"
  echo "export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}"
  echo "export AWS_EC2_METADATA_DISABLED=true"
}

ours_running() { [[ -f $STATE/env ]] && { running localstack || running moto; }; }

start() {
  if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
    # Given, not started here: it may still be starting (a cold LocalStack answers slowly), so
    # wait for it with the same deadline as our own start.
    local endpoint
    for endpoint in "$AWS_ENDPOINT_URL" ${AWS_ENDPOINT_URL_DYNAMODB:+"$AWS_ENDPOINT_URL_DYNAMODB"}; do
      wait_endpoint "$endpoint" "$START_TIMEOUT" ||
        die "the emulator at $endpoint did not become ready within $START_TIMEOUT s (unset AWS_ENDPOINT_URL to start the local emulator)"
    done
    log "using the emulator at AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
    print_env "$AWS_ENDPOINT_URL" "${AWS_ENDPOINT_URL_DYNAMODB:-}"
    return
  fi
  mkdir -p "$STATE"
  exec 9>"$STATE/lock"
  flock 9 # one start at a time: parallel test processes may all call it
  if ours_running; then
    cat "$STATE/env"
    return
  fi
  stop_all # leftovers of a half-started or crashed run
  "$ROOT/infra/local/tools.sh" >&2

  local endpoint=http://127.0.0.1:$EMULATOR_PORT dynamodb="" started=$SECONDS
  answers "$endpoint" && die "port $EMULATOR_PORT is taken: set EMULATOR_PORT, or AWS_ENDPOINT_URL to use what runs there"
  trap stop_all EXIT # a failed start leaves nothing behind
  case $EMULATOR in
    localstack)
      command -v java >/dev/null || die "DynamoDB Local needs java (or use EMULATOR=moto)"
      dynamodb=http://127.0.0.1:$DYNAMODB_PORT
      answers "$dynamodb" && die "port $DYNAMODB_PORT is taken: set DYNAMODB_PORT"
      # DynamoDB Local has no bind-address option: it listens on all interfaces.
      launch dynamodb java "-Djava.library.path=$TOOLS/dynamodb-local/DynamoDBLocal_lib" \
        -jar "$TOOLS/dynamodb-local/DynamoDBLocal.jar" -inMemory -disableTelemetry -port "$DYNAMODB_PORT"
      DISABLE_EVENTS=1 GATEWAY_LISTEN=127.0.0.1:$EMULATOR_PORT SERVICES=sqs,s3 \
        LOCALSTACK_VOLUME_DIR=$STATE/localstack \
        launch localstack "$TOOLS/localstack/bin/python" -m localstack.runtime.main
      wait_healthy localstack "$endpoint/_localstack/health"
      wait_healthy dynamodb "$dynamodb"
      ;;
    moto)
      # moto_server with DynamoDB's requests serialized: see infra/local/moto_server.py.
      launch moto "$TOOLS/moto/bin/python" "$ROOT/infra/local/moto_server.py" -H 127.0.0.1 -p "$EMULATOR_PORT"
      wait_healthy moto "$endpoint"
      ;;
    *) die "EMULATOR must be localstack or moto, not '$EMULATOR'" ;;
  esac
  trap - EXIT
  print_env "$endpoint" "$dynamodb" | tee "$STATE/env"
}

case ${1:-} in
  start) start ;;
  stop)
    mkdir -p "$STATE"
    exec 9>"$STATE/lock"
    flock 9
    stop_all
    ;;
  env)
    if ours_running; then
      cat "$STATE/env"
    elif [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
      print_env "$AWS_ENDPOINT_URL" "${AWS_ENDPOINT_URL_DYNAMODB:-}"
    else
      die "not running: start it with infra/local/emulator.sh start"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
