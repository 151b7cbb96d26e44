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
# (README.md and the Gradle build); they are kept as they are, except that the `version = "..."`
# line of build.gradle.kts follows the spec's info.version.
set -euo pipefail
source "$(dirname "$0")/../contract/lib.sh"
cd "$REPO_ROOT"

# The phone client holds the operations of these tags, and the schemas they reach: what a phone
# app calls. Not admin, operations (metrics) or health. Add a new phone-facing tag here; a tag
# the spec does not use yet is simply matched by nothing.
PHONE_TAGS=(devices locations keys privacy history groups live)

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
TEMPLATES="$GEN_CONFIG/templates"
GENERATOR_JAR=$(echo "$VENV"/lib/python3*/site-packages/openapi_generator_cli/openapi-generator.jar)
KOTLIN_OUT="$REPO_ROOT/clients/kotlin"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Our template overrides are copies of the generator's templates with a small change. Each one
# is recorded in templates/UPSTREAM.sha256 with the hash of the template it was copied from; when
# a generator upgrade changes that template, stop here instead of silently dropping upstream
# fixes: port the change onto the new template and record the new hash.
check_template_overrides() {
  python3 - "$GENERATOR_JAR" "$TEMPLATES" <<'PY'
import hashlib, os, sys, zipfile
jar, templates = sys.argv[1], sys.argv[2]
recorded = {}
with open(os.path.join(templates, "UPSTREAM.sha256")) as f:
    for line in f:
        if line.strip() and not line.startswith("#"):
            digest, path = line.split()
            recorded[path] = digest
problems = []
overrides = sorted(
    os.path.relpath(os.path.join(d, n), templates)
    for d, _, names in os.walk(templates) for n in names if n.endswith(".mustache")
)
with zipfile.ZipFile(jar) as z:
    for path in overrides:
        if path not in recorded:
            problems.append(f"{path}: not recorded in templates/UPSTREAM.sha256")
            continue
        try:
            upstream = z.read("kotlin-client/" + path)
        except KeyError:
            problems.append(f"{path}: the generator has no such template any more")
            continue
        if hashlib.sha256(upstream).hexdigest() != recorded[path]:
            problems.append(f"{path}: the generator's own template changed; port our change onto it")
for path in sorted(set(recorded) - set(overrides)):
    problems.append(f"{path}: recorded in UPSTREAM.sha256 but no override exists")
for p in problems:
    print("template override " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

# The schemas (components/schemas) that the operations with one of the given tags reach through
# $ref, transitively: the models of the phone client, as the generator's `models` list (A:B:C).
models_of_tags() {
  python3 - "$SPEC" "$@" <<'PY'
import json, sys
spec, tags = json.load(open(sys.argv[1])), set(sys.argv[2:])
ops = [
    op for item in spec["paths"].values() for method, op in item.items()
    if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    and tags & set(op.get("tags", []))
]
if not ops:
    sys.exit("no operation has any of the tags " + " ".join(sorted(tags)))
schemas, seen = set(), set()
def walk(node):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/") and ref not in seen:
            seen.add(ref)
            _, _, kind, name = ref.split("/", 3)
            if kind == "schemas":
                schemas.add(name)
            walk(spec["components"][kind][name])
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
for op in ops:
    walk(op)
print(":".join(sorted(schemas)))
PY
}

generate_kotlin() {
  local out="$1" version tag_filter models
  # The artifact's version follows the contract's info.version.
  version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["info"]["version"])' "$SPEC")
  tag_filter="tag:$(IFS='|'; echo "${PHONE_TAGS[*]}")"
  models=$(models_of_tags "${PHONE_TAGS[@]}")
  mkdir -p "$out"
  # The generator's input: the spec with the extensible enums as enums (which our options make
  # open in Kotlin) and without the event-stream operation (an SSE client reads it);
  # contract/openapi-generator/kotlin_input.py says why.
  python3 "$GEN_CONFIG/kotlin_input.py" "$SPEC" "$tmp/kotlin-input.json"
  # The generator reads .openapi-generator-ignore from the output directory.
  cp "$GEN_CONFIG/kotlin-client.ignore" "$out/.openapi-generator-ignore"
  # FILTER marks every operation without one of the tags x-internal, which the generator skips;
  # it keeps all schemas, hence the explicit `models` list (which, once given, needs `apis` and
  # `supportingFiles` named too).
  if ! "$VENV/bin/openapi-generator-cli" generate \
    --generator-name kotlin \
    --input-spec "$tmp/kotlin-input.json" \
    --output "$out" \
    --config "$GEN_CONFIG/kotlin-client.yaml" \
    --template-dir "$TEMPLATES" \
    --openapi-normalizer "FILTER=$tag_filter" \
    --additional-properties "artifactVersion=$version" \
    --global-property "apiTests=false,modelTests=false,models=$models,apis,supportingFiles" \
    >"$tmp/generator.log" 2>&1; then
    cat "$tmp/generator.log" >&2
    echo "openapi-generator failed" >&2
    exit 1
  fi
  # Only "3.1 support is beta" is expected; show anything else it warns about.
  grep -E '\bWARN\b|\bERROR\b' "$tmp/generator.log" | grep -v 'OpenAPI 3.1 support is still in beta' >&2 || true

  # Hand-written files (the ignore list) are carried over unchanged; build.gradle.kts gets the
  # spec's version.
  local path
  while IFS= read -r path; do
    case "$path" in "" | "#"*) continue ;; esac
    if [ -e "$KOTLIN_OUT/$path" ]; then
      mkdir -p "$(dirname "$out/$path")"
      cp "$KOTLIN_OUT/$path" "$out/$path"
    fi
  done <"$GEN_CONFIG/kotlin-client.ignore"
  if [ -f "$out/build.gradle.kts" ]; then
    sed -i -E "s/^version = \".*\"$/version = \"$version\"/" "$out/build.gradle.kts"
  fi
}

check_template_overrides
generate_kotlin "$tmp/kotlin"

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
