#!/usr/bin/env bash
# Fails when openapi/v1.json breaks clients of the last released contract.
#
#   contract/breaking-check.sh             openapi/v1.json (working tree) against the baseline
#   contract/breaking-check.sh BASE HEAD   two files (used by contract/breaking-selftest.sh)
#
# The baseline is, in order:
#   1. $CONTRACT_BASE_REF, when set (any git revision, e.g. the commit a CI run starts from);
#   2. the newest `v1.*` git tag (the last released contract);
#   3. the merge base with main (or origin/main), when HEAD is on another branch;
#   4. HEAD~1, so the working tree is checked against the contract before the last commit
#      (which covers the last commit and any uncommitted change).
# When the baseline has no openapi/v1.json (or there is no previous commit) it passes, saying so.
#
# The diff is optic's `breaking-changes` ruleset (removed operations, responses or response
# properties, new required request properties or parameters, narrowed types, ...), minus the
# reviewed exceptions of contract/accepted-breaks.json (changes optic misjudges; each applies to
# one transition only, see contract/accepted_breaks.py; $CONTRACT_ACCEPTED_BREAKS overrides the
# file). optic skips
# those rules when info.version's major number went up, so this script also refuses any change
# of the major version here: a v2 contract belongs in its own file, next to v1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ensure_node_tools

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

major_version() {
  python3 -c 'import json, sys; print(str(json.load(open(sys.argv[1]))["info"]["version"]).split(".")[0])' "$1"
}

# Reviewed exceptions (contract/accepted-breaks.json; the self-test passes its own).
ACCEPTED_BREAKS="${CONTRACT_ACCEPTED_BREAKS:-$CONTRACT_DIR/accepted-breaks.json}"

compare() {
  local base="$1" head="$2" label="$3" base_major head_major
  base_major=$(major_version "$base")
  head_major=$(major_version "$head")
  # Copies, with the exceptions that apply to this pair (each one is printed).
  cp "$base" "$tmp/checked-base.json"
  cp "$head" "$tmp/checked-head.json"
  python3 "$CONTRACT_DIR/accepted_breaks.py" "$ACCEPTED_BREAKS" "$tmp/checked-base.json" "$tmp/checked-head.json"
  base="$tmp/checked-base.json"
  head="$tmp/checked-head.json"
  if [ "$base_major" != "$head_major" ]; then
    echo "BREAKING: info.version major changed ($base_major -> $head_major) against $label;" \
      "a new major version is a new contract file, not an edit of this one" >&2
    return 1
  fi
  local status=0
  (cd "$tmp" && "$NODE_BIN/optic" diff "$base" "$head" --check) >"$tmp/optic.out" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    grep -E '^(✔|x) +Checks:' "$tmp/optic.out" || true
    echo "no breaking changes against $label"
  else
    cat "$tmp/optic.out" >&2
    echo "BREAKING changes (or an unreadable spec) against $label (optic exit $status)" >&2
    return 1
  fi
}

if [ $# -eq 2 ]; then
  compare "$(realpath "$1")" "$(realpath "$2")" "$1"
  exit
elif [ $# -ne 0 ]; then
  echo "usage: $0 [BASE HEAD]" >&2
  exit 64
fi

SPEC_PATH=openapi/v1.json
base_ref=""
label=""
if [ -n "${CONTRACT_BASE_REF:-}" ]; then
  base_ref="$CONTRACT_BASE_REF"
  label="CONTRACT_BASE_REF=$CONTRACT_BASE_REF"
elif tag=$(git tag --list 'v1.*' --sort=-version:refname | head -n 1) && [ -n "$tag" ]; then
  base_ref="$tag"
  label="release tag $tag"
else
  branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo HEAD)
  for main_ref in main origin/main; do
    if [ "$branch" != main ] && git rev-parse -q --verify "$main_ref^{commit}" >/dev/null; then
      mb=$(git merge-base HEAD "$main_ref" 2>/dev/null || true)
      if [ -n "$mb" ] && [ "$mb" != "$(git rev-parse HEAD)" ]; then
        base_ref="$mb"
        label="merge base with $main_ref ($(git rev-parse --short "$mb"))"
        break
      fi
    fi
  done
  if [ -z "$base_ref" ]; then
    if git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
      base_ref="HEAD~1"
      label="HEAD~1 ($(git rev-parse --short HEAD~1), no v1.* tag yet)"
    else
      echo "no previous commit to compare with: nothing can break yet (pass)"
      exit 0
    fi
  fi
fi

if ! git cat-file -e "$base_ref:$SPEC_PATH" 2>/dev/null; then
  echo "$SPEC_PATH does not exist at $label: no previous contract to break (pass)"
  exit 0
fi
git show "$base_ref:$SPEC_PATH" >"$tmp/base.json"
cp "$SPEC_PATH" "$tmp/head.json"
compare "$tmp/base.json" "$tmp/head.json" "$label"
