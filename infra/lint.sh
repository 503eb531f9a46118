#!/usr/bin/env bash
# Lints infra/template.yaml offline with the pinned tools in .tools/sam (installed on first use):
# cfn-lint, `sam validate --lint` and plain `sam validate` (SAM's own transform) each catch
# mistakes the others miss. Any error or warning fails.
# Usage: infra/lint.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
infra/local/tools.sh >&2
export PATH=$ROOT/.tools/sam/bin:$PATH SAM_CLI_TELEMETRY=0

cfn-lint infra/template.yaml
sam validate --lint -t infra/template.yaml
AWS_DEFAULT_REGION=us-east-1 sam validate -t infra/template.yaml
