#!/usr/bin/env bash
# Lints openapi/v1.json with Spectral: the built-in `spectral:oas` rules plus the project's
# (contract/.spectral.yaml): every operation has an operationId, a tag, a description or summary,
# and documents at least one 4XX response. Errors fail; warnings are shown only.
#
# First it proves the project rules fire: contract/fixtures/lint/violations.json breaks each of
# them once and must be reported with exactly contract/fixtures/lint/expected-violations.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ensure_node_tools
RULESET="$CONTRACT_DIR/.spectral.yaml"
FIXTURE="$CONTRACT_DIR/fixtures/lint/violations.json"

got=$("$NODE_BIN/spectral" lint --ruleset "$RULESET" --format json --quiet --fail-severity error "$FIXTURE" |
  python3 -c 'import json, sys; print("\n".join(sorted({r["code"] for r in json.load(sys.stdin) if r["severity"] == 0})))' || true)
want=$(grep -v '^#' "$CONTRACT_DIR/fixtures/lint/expected-violations.txt" | sort)
if [ "$got" != "$want" ]; then
  echo "lint self-test failed: the project rules reported" >&2
  printf '%s\n' "${got:-(nothing)}" | sed 's/^/    /' >&2
  echo "  on contract/fixtures/lint/violations.json instead of" >&2
  printf '%s\n' "$want" | sed 's/^/    /' >&2
  exit 1
fi
note "self-test: the project rules catch all $(printf '%s\n' "$want" | wc -l) seeded violations"

"$NODE_BIN/spectral" lint --ruleset "$RULESET" --fail-severity error "$SPEC"
