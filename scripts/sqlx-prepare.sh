#!/usr/bin/env bash
# Refreshes .sqlx/ (the offline query data that lets `query!` compile without a database), or
# with --check verifies that the committed data is current. Needs a reachable PostgreSQL:
# DATABASE_URL names the server (default postgres://postgres@127.0.0.1:5432/postgres); a
# scratch database is created there, migrated, and dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

server="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${server%/*}"
scratch="pm_sqlx_prepare_$$"
out=".sqlx"
if [[ "${1:-}" == "--check" ]]; then out="$(mktemp -d)"; fi

cleanup() { psql -q "$server" -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
psql -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $scratch" >/dev/null
for migration in migrations/*.sql; do
  psql -q -v ON_ERROR_STOP=1 "$base/$scratch" -f "$migration" >/dev/null
done

rm -rf "${out:?}"/query-*.json
mkdir -p "$out"
# The macros write one file per query when SQLX_OFFLINE_DIR is set and they run online;
# touching the sources makes cargo re-expand them.
touch src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$(realpath "$out")" DATABASE_URL="$base/$scratch" \
  cargo check --quiet --all-targets

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -q .sqlx "$out" >/dev/null; then
    diff -r .sqlx "$out" | head -40 >&2
    echo "error: .sqlx/ is stale; run scripts/sqlx-prepare.sh and commit the result" >&2
    exit 1
  fi
  echo ".sqlx/ is current ($(ls .sqlx | wc -l) queries)"
else
  echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
fi
