#!/usr/bin/env bash
# Compiles the generated Kotlin client (clients/kotlin) with kotlinc and runs Smoke.kt against a
# live server; then checks in the database that the retried batch stored no duplicate rows.
#
#   contract/kotlin-smoke/run.sh BASE_URL API_KEY APP_KEY DATABASE_URL
#
# API_KEY is a `full` key, APP_KEY an `app` key (what an app build ships; the phones of the
# smoke test register with it and then act with their device tokens).
#
# The build proves what an Android app on Kotlin 2.2 needs:
#   1. the client compiled by kotlinc 2.4 with the options of clients/kotlin/build.gradle.kts
#      (-language-version 2.2 -api-version 2.2 -jvm-target 1.8, kotlinx-serialization plugin);
#   2. every class file of it carries Kotlin metadata 2.2 (javap -v, the `mv` of kotlin.Metadata);
#   3. the same sources compile with kotlinc 2.2.21 and its serialization plugin;
#   4. Smoke.kt, the "app", is compiled by kotlinc 2.2.21 against the 2.4-built client of step 1
#      and runs on the 2.2.21 stdlib.
#
# Offline, the only OkHttp here is Debian's 3.13, while the client is written against the
# OkHttp 4+ Kotlin API. So the build compiles a *copy* of the client from which the
# `import okhttp3.X.Companion.y` lines are dropped, plus OkHttp4Compat*.kt supplying those
# functions and properties on top of 3.13. Nothing else of the client changes, and clients/ is
# never touched. kotlinx-serialization 1.9.0 comes from PyPI (contract/kotlin-jars.txt),
# kotlinx-coroutines from the compiler's lib/. The builds are cached in contract/.work/kotlin-smoke
# by a hash of their inputs.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

if [ $# -ne 4 ]; then
  echo "usage: $0 BASE_URL API_KEY APP_KEY DATABASE_URL" >&2
  exit 64
fi
base_url="$1"
api_key="$2"
app_key="$3"
database_url="$4"

ensure_java
ensure_node_tools
ensure_smoke_jars

SMOKE_DIR="$CONTRACT_DIR/kotlin-smoke"
CLIENT_SRC="$REPO_ROOT/clients/kotlin/src/main/kotlin"
BUILD="$WORK_DIR/kotlin-smoke"
K24="$CONTRACT_DIR/node_modules/kotlin-compiler"      # 2.4.x: builds the client
K22="$CONTRACT_DIR/node_modules/kotlin-compiler-2-2"  # 2.2.x: the app's compiler
# The compiler options of clients/kotlin/build.gradle.kts.
CLIENT_OPTIONS=(-language-version 2.2 -api-version 2.2 -jvm-target 1.8)
WANT_METADATA="2,2"
# kotlinx-coroutines-core 1.8.0; kotlinc 2.4.20 and 2.2.21 ship the same jar.
COROUTINES="$K22/lib/kotlinx-coroutines-core-jvm.jar"
libs=$(IFS=:; echo "${SMOKE_JARS[*]}:${KOTLINX_SERIALIZATION_JARS[*]}:$COROUTINES")

# Two cache levels: the client jars (by the client's inputs) and smoke.jar (by those and Smoke.kt),
# so that changing only Smoke.kt recompiles only Smoke.kt.
client_hash=$(
  {
    find "$CLIENT_SRC" -type f -name '*.kt' -print0 | sort -z | xargs -0 sha256sum
    sha256sum "$SMOKE_DIR"/OkHttp4Compat*.kt "$SMOKE_DIR/run.sh"
    cat "$K24/build.txt" "$K22/build.txt"
    sha256sum "${SMOKE_JARS[@]}" "${KOTLINX_SERIALIZATION_JARS[@]}" "$COROUTINES"
  } | sha256sum | cut -d' ' -f1
)
smoke_hash=$( { echo "$client_hash"; sha256sum "$SMOKE_DIR/Smoke.kt"; } | sha256sum | cut -d' ' -f1)

kotlinc() {
  local home="$1" what="$2" start=$SECONDS
  shift 2
  "$home/bin/kotlinc" -nowarn -Xplugin="$home/lib/kotlinx-serialization-compiler-plugin.jar" "$@" || {
    note "FAIL kotlinc $(cat "$home/build.txt"): $what"
    return 1
  }
  note "kotlinc $(cat "$home/build.txt"): $what ($((SECONDS - start))s)"
}

# The `mv` (metadata version) of every class in a jar, e.g. "129 2,2,0"; fails unless all are
# $WANT_METADATA.x.
check_metadata() {
  local jar="$1" classes versions total
  classes=$(python3 -c 'import sys, zipfile
for n in zipfile.ZipFile(sys.argv[1]).namelist():
    if n.endswith(".class"): print(n[:-6].replace("/", "."))' "$jar")
  total=$(wc -l <<<"$classes")
  # shellcheck disable=SC2086
  versions=$(javap -v -cp "$jar" $classes | grep -A1 'kotlin.Metadata(' | grep -o 'mv=\[[0-9,]*\]' | sort | uniq -c |
    sed -E 's/^ *([0-9]+) mv=\[([0-9,]+)\]/\1 classes: \2/')
  if [ "$(grep -c . <<<"$versions")" = 1 ] && grep -q "^$total classes: $WANT_METADATA," <<<"$versions"; then
    note "ok   Kotlin metadata of all $total classes in $(basename "$jar") is ${versions#*: } (javap -v: kotlin.Metadata mv)"
  else
    note "FAIL Kotlin metadata in $(basename "$jar"): want $WANT_METADATA.x in all $total classes, found: $(tr '\n' ';' <<<"$versions")"
    return 1
  fi
}

if [ -f "$BUILD/client.jar" ] && [ "$(cat "$BUILD/client.sha256" 2>/dev/null)" = "$client_hash" ]; then
  note "kotlinc: the client build is current (cached)"
else
  rm -rf "$BUILD"
  mkdir -p "$BUILD/client-src"
  cp -R "$CLIENT_SRC/." "$BUILD/client-src/"
  find "$BUILD/client-src" -name '*.kt' -exec sed -i -E '/^import okhttp3\.[A-Za-z]+\.Companion\.[A-Za-z]+$/d' {} +
  cp "$SMOKE_DIR"/OkHttp4Compat*.kt "$BUILD/client-src/"
  note "compiling $(find "$BUILD/client-src" -name '*.kt' | wc -l) client files (with the OkHttp 3.13 shim)"
  kotlinc "$K24" "the client, ${CLIENT_OPTIONS[*]}" \
    "${CLIENT_OPTIONS[@]}" -cp "$libs" -d "$BUILD/client.jar" "$BUILD/client-src"
  check_metadata "$BUILD/client.jar"
  kotlinc "$K22" "the client, same sources" \
    "${CLIENT_OPTIONS[@]}" -cp "$libs" -d "$BUILD/client-k22.jar" "$BUILD/client-src"
  echo "$client_hash" >"$BUILD/client.sha256"
fi
if [ -f "$BUILD/smoke.jar" ] && [ "$(cat "$BUILD/smoke.sha256" 2>/dev/null)" = "$smoke_hash" ]; then
  note "kotlinc: Smoke.kt build is current (cached)"
else
  kotlinc "$K22" "Smoke.kt against the client built by $(cat "$K24/build.txt")" \
    -jvm-target 1.8 -cp "$BUILD/client.jar:$libs" -d "$BUILD/smoke.jar" "$SMOKE_DIR/Smoke.kt"
  echo "$smoke_hash" >"$BUILD/smoke.sha256"
fi

# The app's runtime: the 2.2.21 stdlib, the client built by 2.4.
set +e
java -cp "$BUILD/smoke.jar:$BUILD/client.jar:$K22/lib/kotlin-stdlib.jar:$libs" com.phonemanager.smoke.SmokeKt "$base_url" "$api_key" "$app_key" |
  tee "$BUILD/output.txt"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || exit "$status"

# A stored 2 fixes (its single upload, the live stream's); B 4: its batch, sent twice with one
# Idempotency-Key and once more with another, must be there once, plus the live stream's fix.
read -r _ group device_a device_b < <(grep '^SMOKE_DEVICES ' "$BUILD/output.txt")
count() { psql "$database_url" -X -q -t -A -c "SELECT count(*) FROM locations WHERE device_id = '$1'"; }
rows_a=$(count "$device_a")
rows_b=$(count "$device_b")
if [ "$rows_a" = 2 ] && [ "$rows_b" = 4 ]; then
  note "ok   database: group $group holds 2 + 4 location rows (the replayed and the resent batch stored nothing)"
else
  note "FAIL database: expected 2 rows for $device_a and 4 for $device_b, found $rows_a and $rows_b"
  exit 1
fi
