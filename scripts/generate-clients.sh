#!/usr/bin/env bash
# Regenerates the API clients in clients/ from the committed contract (openapi/v1.json).
#
#   scripts/generate-clients.sh          regenerate clients/kotlin
#   scripts/generate-clients.sh --check  fail if clients/kotlin differs from what it would generate
#
# The generator (openapi-generator-cli) is pinned in contract/requirements.txt and installed into
# contract/.venv on first use; its options are in contract/openapi-generator/. The output holds
# no timestamps, so the same spec and generator give byte-identical files. Hand-written files
# that the generator must leave alone are listed in contract/openapi-generator/kotlin-client.ignore
# (today only clients/kotlin/README.md).
set -euo pipefail
source "$(dirname "$0")/../contract/lib.sh"
cd "$REPO_ROOT"

mode=write
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 64
    ;;
esac

ensure_java
ensure_python_tools

GEN_CONFIG="$CONTRACT_DIR/openapi-generator"
KOTLIN_OUT="$REPO_ROOT/clients/kotlin"
HAND_WRITTEN=(README.md)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

generate_kotlin() {
  local out="$1" version
  # The artifact's version follows the contract's info.version.
  version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["info"]["version"])' "$SPEC")
  mkdir -p "$out"
  # The generator reads .openapi-generator-ignore from the output directory.
  cp "$GEN_CONFIG/kotlin-client.ignore" "$out/.openapi-generator-ignore"
  if ! "$VENV/bin/openapi-generator-cli" generate \
    --generator-name kotlin \
    --input-spec "$SPEC" \
    --output "$out" \
    --config "$GEN_CONFIG/kotlin-client.yaml" \
    --additional-properties "artifactVersion=$version" \
    --global-property apiTests=false,modelTests=false \
    >"$tmp/generator.log" 2>&1; then
    cat "$tmp/generator.log" >&2
    echo "openapi-generator failed" >&2
    exit 1
  fi
  # Only "3.1 support is beta" is expected; show anything else it warns about.
  grep -E '\bWARN\b|\bERROR\b' "$tmp/generator.log" | grep -v 'OpenAPI 3.1 support is still in beta' >&2 || true
}

generate_kotlin "$tmp/kotlin"
for file in "${HAND_WRITTEN[@]}"; do
  if [ -e "$KOTLIN_OUT/$file" ]; then cp "$KOTLIN_OUT/$file" "$tmp/kotlin/$file"; fi
done

if [ "$mode" = check ]; then
  if diff -r "$KOTLIN_OUT" "$tmp/kotlin" >"$tmp/diff" 2>&1; then
    echo "clients/kotlin is up to date with openapi/v1.json"
  else
    head -n 60 "$tmp/diff" >&2
    echo "clients/kotlin is stale: run scripts/generate-clients.sh and commit the result" >&2
    exit 1
  fi
else
  rm -rf "$KOTLIN_OUT"
  mkdir -p "$(dirname "$KOTLIN_OUT")"
  cp -a "$tmp/kotlin" "$KOTLIN_OUT"
  echo "clients/kotlin regenerated from openapi/v1.json"
fi
