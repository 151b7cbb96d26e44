#!/usr/bin/env bash
# Compiles the generated Kotlin client (clients/kotlin) with kotlinc and runs Smoke.kt against a
# live server; then checks in the database that the retried batch stored no duplicate rows.
#
#   contract/kotlin-smoke/run.sh BASE_URL API_KEY DATABASE_URL
#
# Offline, the only OkHttp here is Debian's 3.13, while the client is written against the
# OkHttp 4+ Kotlin API. So the build compiles a *copy* of the client from which the
# `import okhttp3.X.Companion.y` lines are dropped, plus OkHttp4Compat*.kt supplying those
# functions and properties on top of 3.13. Nothing else of the client changes, and clients/ is
# never touched. The compiled jar is cached in contract/.work/kotlin-smoke by a hash of its inputs.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

if [ $# -ne 3 ]; then
  echo "usage: $0 BASE_URL API_KEY DATABASE_URL" >&2
  exit 64
fi
base_url="$1"
api_key="$2"
database_url="$3"

ensure_java
ensure_node_tools
ensure_smoke_jars

SMOKE_DIR="$CONTRACT_DIR/kotlin-smoke"
CLIENT_SRC="$REPO_ROOT/clients/kotlin/src/main/kotlin"
BUILD="$WORK_DIR/kotlin-smoke"
KOTLINC="$CONTRACT_DIR/node_modules/kotlin-compiler/bin/kotlinc"
classpath=$(IFS=:; echo "${SMOKE_JARS[*]}")

inputs_hash=$(
  {
    find "$CLIENT_SRC" "$SMOKE_DIR" -type f -name '*.kt' -print0 | sort -z | xargs -0 sha256sum
    cat "$CONTRACT_DIR/node_modules/kotlin-compiler/build.txt"
    sha256sum "${SMOKE_JARS[@]}"
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$BUILD/smoke.jar" ] && [ "$(cat "$BUILD/inputs.sha256" 2>/dev/null)" = "$inputs_hash" ]; then
  note "kotlinc: cached build is current"
else
  rm -rf "$BUILD"
  mkdir -p "$BUILD/client"
  cp -R "$CLIENT_SRC/." "$BUILD/client/"
  find "$BUILD/client" -name '*.kt' -exec sed -i -E '/^import okhttp3\.[A-Za-z]+\.Companion\.[A-Za-z]+$/d' {} +
  note "kotlinc: compiling $(find "$BUILD/client" -name '*.kt' | wc -l) client files + the smoke program"
  start=$SECONDS
  "$KOTLINC" -nowarn -include-runtime -cp "$classpath" -d "$BUILD/smoke.jar" \
    "$BUILD/client" "$SMOKE_DIR"/*.kt
  note "kotlinc: done in $((SECONDS - start))s"
  echo "$inputs_hash" >"$BUILD/inputs.sha256"
fi

set +e
java -cp "$BUILD/smoke.jar:$classpath" com.phonemanager.smoke.SmokeKt "$base_url" "$api_key" | tee "$BUILD/output.txt"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || exit "$status"

# The batch was sent twice with one Idempotency-Key: the database must hold its 3 fixes once.
read -r _ group device_a device_b < <(grep '^SMOKE_DEVICES ' "$BUILD/output.txt")
count() { psql "$database_url" -X -q -t -A -c "SELECT count(*) FROM locations WHERE device_id = '$1'"; }
rows_a=$(count "$device_a")
rows_b=$(count "$device_b")
if [ "$rows_a" = 1 ] && [ "$rows_b" = 3 ]; then
  note "ok   database: group $group holds 1 + 3 location rows (the replayed batch stored nothing)"
else
  note "FAIL database: expected 1 row for $device_a and 3 for $device_b, found $rows_a and $rows_b"
  exit 1
fi
