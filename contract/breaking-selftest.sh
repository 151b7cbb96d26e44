#!/usr/bin/env bash
# Proves that contract/breaking-check.sh catches breaking changes and lets compatible ones pass:
# each contract/fixtures/breaking/<case>/ holds base.json, head.json and `expect` (first line
# `pass` or `fail`, then why), and optionally accepted-breaks.json (the exceptions for that case;
# without one, none: the repository's own list never applies to fixtures). Fails if any outcome
# differs from its expectation.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

passed=0
failed=0
for dir in "$CONTRACT_DIR"/fixtures/breaking/*/; do
  case_name=$(basename "$dir")
  expect=$(head -n 1 "$dir/expect")
  if CONTRACT_ACCEPTED_BREAKS="$dir/accepted-breaks.json" \
    "$CONTRACT_DIR/breaking-check.sh" "$dir/base.json" "$dir/head.json" >"$WORK_DIR/breaking-$case_name.log" 2>&1; then
    got=pass
  else
    got=fail
  fi
  if [ "$got" = "$expect" ]; then
    passed=$((passed + 1))
    note "ok   $case_name: $got as expected"
  else
    failed=$((failed + 1))
    note "FAIL $case_name: expected $expect, got $got (log: contract/.work/breaking-$case_name.log)"
  fi
done
echo "breaking-check self-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
