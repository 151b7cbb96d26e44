#!/usr/bin/env bash
# Expiring one day of 1,000,000 fixes: the retention job's batched DELETE against dropping the
# day's partition (DETACH + DROP). Self-contained: creates its own database (pm_part_<pid>) on
# the server DATABASE_URL names (default postgres://postgres@127.0.0.1:5432/postgres), applies
# the migrations, seeds set-based, measures, prints a markdown table, drops the database.
#
#   scripts/load/partitions.sh [fixes]        # fixes in the expired day, default 1000000
#
# WAL: "statement" is the WAL the DELETE statements wrote (EXPLAIN (ANALYZE, WAL), per backend);
# "LSN diff" is pg_current_wal_lsn() before and after, which also counts anything else the
# server wrote meanwhile (other databases on a shared server). Each measurement starts after a
# CHECKPOINT, so both pay the full-page images of a fresh checkpoint. Autovacuum is off on the
# measured partition, so the dead tuples and size are those before any VACUUM.
set -euo pipefail
cd "$(dirname "$0")/../.."

fixes="${1:-1000000}"
batch=10000 # jobs.delete_batch_size's default, what cleanup_old_locations deletes per call
server="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="pm_part_$$"
url="${server%/*}/$db"
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$url" "$@"; }
cleanup() { psql -X -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT

psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $db" >/dev/null
for migration in migrations/*.sql; do sql -f "$migration" >/dev/null; done

# The expired day: 40 days ago (retention is 30), with neighbours on both sides, each in a
# partition of its own (the legacy partition, empty here, goes).
sql <<'SQL' >/dev/null
ALTER TABLE locations DETACH PARTITION locations_legacy;
DROP TABLE locations_legacy;
SELECT create_locations_partition((now() AT TIME ZONE 'UTC')::date - n) FROM generate_series(39, 41) n;
INSERT INTO devices (device_id, display_name, group_id)
SELECT md5('device-' || n)::uuid, 'Device ' || n, 'g-' || (n / 10) FROM generate_series(1, 1000) n;
CREATE FUNCTION seed_day(day date, fixes int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO locations (device_id, latitude, longitude, accuracy, altitude, provider, captured_at, created_at)
    SELECT md5('device-' || (i % 1000 + 1))::uuid, random() * 120 - 60, random() * 340 - 170,
           3 + random() * 47, 100 + random() * 500, 'fused',
           day::timestamp AT TIME ZONE 'UTC' + make_interval(secs => i * 86399.0 / fixes),
           day::timestamp AT TIME ZONE 'UTC' + make_interval(secs => i * 86399.0 / fixes)
    FROM generate_series(0, fixes - 1) i
$$;
-- The retention job's DELETE (cleanup_old_locations), one batch per transaction, limited to the
-- day; returns the WAL its statements wrote.
CREATE PROCEDURE delete_day(day date, batch int, INOUT wal numeric DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    plan json;
    lower timestamptz := day::timestamp AT TIME ZONE 'UTC';
    upper timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    wal := 0;
    LOOP
        EXECUTE format($q$EXPLAIN (ANALYZE, WAL, FORMAT JSON)
            WITH doomed AS (
                SELECT device_id, captured_at FROM locations
                WHERE captured_at >= %1$L AND captured_at < %2$L
                ORDER BY captured_at LIMIT %3$s FOR UPDATE SKIP LOCKED)
            DELETE FROM locations l USING doomed
            WHERE l.device_id = doomed.device_id AND l.captured_at = doomed.captured_at
              AND l.captured_at >= %1$L AND l.captured_at < %2$L$q$, lower, upper, batch) INTO plan;
        wal := wal + COALESCE((plan -> 0 -> 'Plan' ->> 'WAL Bytes')::numeric, 0);
        COMMIT;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM locations WHERE captured_at >= lower AND captured_at < upper);
    END LOOP;
END;
$$;
SQL
day="$(sql -c "SELECT (now() AT TIME ZONE 'UTC')::date - 40")"
part="locations_p${day//-/}"
seed() { # the day, and with "neighbours" the days either side
  if [[ "${1:-}" == neighbours ]]; then
    sql -c "SELECT seed_day('$day'::date - 1, 50000), seed_day('$day'::date + 1, 50000)" >/dev/null
  fi
  sql -c "SELECT seed_day('$day', $fixes)" >/dev/null
  sql -c "ALTER TABLE $part SET (autovacuum_enabled = off)" -c "VACUUM ANALYZE locations" >/dev/null
}
size() { sql -c "SELECT pg_total_relation_size('$1')"; }
tree_size() { sql -c "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('locations')"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
now_ms() { date +%s%3N; }
num() { sql -c "SELECT to_char($1, 'FM999,999,999,990')"; }

# (a) batched DELETE
seed neighbours
rows="$(sql -c "SELECT count(*) FROM $part")"
part_before="$(size "$part")"; tree_before="$(tree_size)"
sql -c "CHECKPOINT"
lsn="$(sql -c "SELECT pg_current_wal_lsn()")"; t0="$(now_ms)"
del_wal="$(sql -c "CALL delete_day('$day', $batch)")"
t1="$(now_ms)"; del_lsn="$(sql -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')")"
sleep 2 # the statistics collector's flush
dead="$(sql -c "SELECT pg_stat_clear_snapshot()" -c "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '$part'")"
dead="${dead##*$'\n'}"
del_part_after="$(size "$part")"; del_tree_after="$(tree_size)"
del_ms=$((t1 - t0))

# (b) DETACH + DROP of the same day, seeded again
sql -c "DROP TABLE $part" -c "SELECT create_locations_partition('$day')" >/dev/null
seed
sql -c "CHECKPOINT"
drop_before="$(tree_size)"
lsn="$(sql -c "SELECT pg_current_wal_lsn()")"; t0="$(now_ms)"
sql -c "ALTER TABLE locations DETACH PARTITION $part" -c "DROP TABLE $part"
t1="$(now_ms)"; drop_lsn="$(sql -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')")"
drop_tree_after="$(tree_size)"
drop_ms=$((t1 - t0))

echo "Expiring one day of $(num "$rows") fixes (plus 50,000 on each neighbouring day), PostgreSQL $(sql -c 'SHOW server_version'), $(date -u +%Y-%m-%d):"
echo
echo "| | batched DELETE ($batch per transaction) | DETACH + DROP |"
echo "|---|---|---|"
echo "| time | $(awk -v m="$del_ms" 'BEGIN { printf "%.2f s", m / 1000 }') | $(awk -v m="$drop_ms" 'BEGIN { printf "%.3f s", m / 1000 }') |"
echo "| WAL, LSN diff (server-wide) | $(mb "$del_lsn") | $(mb "$drop_lsn") |"
echo "| WAL, the statements' own (EXPLAIN WAL) | $(mb "$del_wal") | — (DDL) |"
echo "| day's partition, table + indexes, before | $(mb "$part_before") | $(mb "$part_before") |"
echo "| day's partition after, before VACUUM | $(mb "$del_part_after") ($(num "$dead") dead tuples) | gone (0) |"
echo "| all of locations, before → after | $(mb "$tree_before") → $(mb "$del_tree_after") | $(mb "$drop_before") → $(mb "$drop_tree_after") |"
