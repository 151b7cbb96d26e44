#!/usr/bin/env bash
# Checks the API contract (openapi/v1.json) end to end, in this order:
#   1. tools           install what is missing (cached in contract/.venv, contract/node_modules)
#   2. clients         clients/kotlin is what scripts/generate-clients.sh generates from the spec
#   3. lint            Spectral: spectral:oas + the project rules (contract/.spectral.yaml)
#   4. breaking-selftest  the breaking-change check catches the seeded fixtures
#   5. breaking        no breaking change against the last released contract
#   6. server          cargo build, then a server on a free port with a throwaway database
#   7. fuzz            schemathesis, all checks, against that server (with an admin key)
#   8. kotlin-smoke    the generated Kotlin client compiled with kotlinc and used against it
# Every step runs even when an earlier one failed (except that 7 and 8 need 6); a summary
# closes the output and the exit status is non-zero if anything failed.
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); starts or installs it like
# .ci/run when it is down. Environment knobs: PM_BIN (use this server binary, no cargo build),
# CONTRACT_BASE_REF (baseline of the breaking check), CONTRACT_FUZZ_EXAMPLES / _SEED / _TIMEOUT
# (see contract/fuzz.sh). Details of each part: contract/README.md.
set -uo pipefail
source "$(dirname "$0")/../contract/lib.sh"
cd "$REPO_ROOT"
mkdir -p "$WORK_DIR"

run_start=$SECONDS
results=()
failed=0
passed=0

step() {
  local name="$1"
  shift
  printf '\n==> %s\n' "$name"
  local start=$SECONDS status=0
  "$@" || status=$?
  local took=$((SECONDS - start))
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    results+=("$(printf 'PASS  %-18s %4ss' "$name" "$took")")
  else
    failed=$((failed + 1))
    results+=("$(printf 'FAIL  %-18s %4ss  (exit %s)' "$name" "$took" "$status")")
  fi
  return "$status"
}

skip() {
  failed=$((failed + 1))
  results+=("$(printf 'SKIP  %-18s        (%s)' "$1" "$2")")
}

install_tools() {
  ensure_java && ensure_python_tools && ensure_node_tools && ensure_smoke_jars || return 1
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
}

# --- server ---------------------------------------------------------------------------------

SERVER_PID=""
DB_NAME="pm_contract_$$"
DB_URL="postgres://postgres@127.0.0.1:5432/$DB_NAME"
BASE_URL=""
API_KEY=""       # a `full` key (the Kotlin smoke test's key administration checks)
APP_KEY=""       # an `app` key, as an app build ships: the Kotlin smoke test's phones
ADMIN_KEY=""     # an admin key, so the fuzzer reaches /api/v1/admin/* beyond the 403

postgres_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

ensure_postgres() {
  postgres_ready && return 0
  if ! compgen -G "/etc/postgresql/*/main" >/dev/null; then
    apt_install postgresql
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
      "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  note "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do postgres_ready && return 0; sleep 1; done
  echo "PostgreSQL did not become ready on 127.0.0.1:5432" >&2
  return 1
}

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  psql -h 127.0.0.1 -U postgres -X -q -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() {
  ensure_postgres || return 1
  local bin="${PM_BIN:-$REPO_ROOT/target/debug/phone-manager}"
  if [ -z "${PM_BIN:-}" ]; then
    note "cargo build (does nothing when target/debug/phone-manager is current)"
    cargo build --quiet || return 1
  fi
  [ -x "$bin" ] || { echo "no server binary at $bin" >&2; return 1; }

  local port
  port=$(free_port)
  BASE_URL="http://127.0.0.1:$port"
  mkdir -p "$WORK_DIR/server-config" # an empty PM_CONFIG_DIR: no developer local.toml
  export PM_CONFIG_DIR="$WORK_DIR/server-config"
  export PM__SERVER__HOST=127.0.0.1 PM__SERVER__PORT="$port"
  export PM__DATABASE__URL="$DB_URL"
  export PM__LOGGING__LEVEL=warn PM__LOGGING__FORMAT=pretty
  # The fuzzer sends thousands of requests a minute with one key; the rate limiter is not
  # what it tests.
  export PM__SECURITY__RATE_LIMIT_PER_MINUTE=1000000 PM__SECURITY__ADMIN_RATE_LIMIT_PER_MINUTE=1000000
  export PM__SECURITY__EXPORT_RATE_LIMIT_PER_HOUR=1000000
  export PM__SECURITY__RATE_LIMIT_BACKEND=local

  "$bin" serve >"$WORK_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  note "server pid $SERVER_PID on $BASE_URL, database $DB_NAME, log contract/.work/server.log"
  local ready=""
  for _ in $(seq 1 120); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    if curl -fsS "$BASE_URL/api/health/ready" >/dev/null 2>&1; then ready=1 && break; fi
    sleep 0.5
  done
  if [ -z "$ready" ]; then
    tail -n 30 "$WORK_DIR/server.log" >&2
    echo "the server did not become ready" >&2
    return 1
  fi
  API_KEY=$("$bin" keys create --name contract --json | json_field key) || return 1
  APP_KEY=$("$bin" keys create --name contract-app --scope app --json | json_field key) || return 1
  ADMIN_KEY=$("$bin" keys create --name contract-admin --admin --json | json_field key) || return 1
  [ -n "$API_KEY" ] && [ -n "$APP_KEY" ] && [ -n "$ADMIN_KEY" ] || return 1
  note "API keys created: full ${API_KEY:0:8}..., app ${APP_KEY:0:8}..., admin ${ADMIN_KEY:0:8}..."
}

# --- steps ----------------------------------------------------------------------------------

step tools install_tools
step clients scripts/generate-clients.sh --check
step lint contract/lint.sh
step breaking-selftest contract/breaking-selftest.sh
step breaking contract/breaking-check.sh
if step server start_server; then
  step fuzz contract/fuzz.sh "$BASE_URL" "$ADMIN_KEY"
  step kotlin-smoke contract/kotlin-smoke/run.sh "$BASE_URL" "$API_KEY" "$APP_KEY" "$DB_URL"
  errors=$(grep -c ' ERROR ' "$WORK_DIR/server.log" || true)
  [ "$errors" -eq 0 ] || note "the server logged $errors ERROR line(s): contract/.work/server.log"
else
  skip fuzz "no server"
  skip kotlin-smoke "no server"
fi

printf '\n==> summary (%ss)\n' "$((SECONDS - run_start))"
printf '  %s\n' "${results[@]}"
echo "contract-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
