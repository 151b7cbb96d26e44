#!/usr/bin/env bash
# Regenerates docs/query-plans.md: the EXPLAIN ANALYZE plan of every hot query of the service on
# a database of production-like volume (1,000 groups, 10,000 devices, 1,000,000 locations over
# 40 days, 100 per device, plus one heavy device with 100,000 locations in all, 100 API keys,
# 50,000 idempotency records, 200,000 audit log entries over 120 days).
#
# Needs a reachable PostgreSQL (psql only, no cargo): DATABASE_URL names the server (default
# postgres://postgres@127.0.0.1:5432/postgres). A scratch database (pm_query_plans) is created
# there, migrated with migrations/*.sql, seeded, and dropped afterwards. Takes well under a
# minute (seeding is most of it).
#
# The statements are read from the sources at run time (the sqlx macros in src/db/*.rs and the
# retention function in migrations/), never copied by hand, so the document always shows the
# SQL the service actually runs. Each one is PREPAREd with the parameter types sqlx binds
# (text for &str, int8 for i64, uuid for Uuid, ...), executed once to warm the cache, then
# explained; statements that write run inside BEGIN ... ROLLBACK so the data set stays put.
#
# LOCATIONS=n changes the number of seeded locations (at least 1,000,000 for the document);
# QUERY_PLANS_KEEP=1 keeps the database afterwards, to experiment with other plans;
# QUERY_PLANS_DB=name changes the name of the scratch database (default pm_query_plans).
set -euo pipefail
cd "$(dirname "$0")/.."

server="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${server%/*}"
scratch="${QUERY_PLANS_DB:-pm_query_plans}"
url="$base/$scratch"
locations="${LOCATIONS:-1000000}"
out="docs/query-plans.md"
work="$(mktemp -d)"
started=$SECONDS

cleanup() {
  if [[ -z "${QUERY_PLANS_KEEP:-}" ]]; then
    psql -X -q "$server" -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null 2>&1 || true
  else
    say "kept the database: psql $url"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '==> %s\n' "$*" >&2; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$url" "$@"; }
# One value of config/default.toml (first `name = <digits>` line).
config() { sed -n "s/^$1 *= *\([0-9][0-9]*\).*/\1/p" config/default.toml | head -n 1; }

# ---------------------------------------------------------------------------------------------
# Reading the statements from the sources
# ---------------------------------------------------------------------------------------------

# Removes the common indentation of every line but the first (the raw strings of the sources
# are indented with the Rust code around them; whitespace means nothing to PostgreSQL).
dedent() {
  perl -0777 -pe '
    my ($first, @rest) = split /\n/, $_, -1;
    my $min;
    for (@rest) { next unless /\S/; my ($i) = /^( *)/; $min = length $i if !defined $min || length $i < $min }
    $min //= 0;
    $_ = join "\n", $first, map { /\S/ ? substr($_, $min) : "" } @rest;
    s/\s+\z//;'
}

# rust_sql FILE FUNCTION [N]: the SQL of the N-th (default first) sqlx query macro of FUNCTION.
rust_sql() {
  perl -e '
    my ($file, $fn, $n) = @ARGV;
    open my $fh, "<", $file or die "$file: $!\n";
    my $src = do { local $/; <$fh> };
    $src =~ /\bfn\s+\Q$fn\E\s*[(<]/g or die "query-plans: no fn $fn in $file\n";
    my $from = pos $src;
    my $sql;
    for (1 .. $n) {
      $src =~ /\bsqlx::query(?:_as|_scalar)?!\s*\(\s*(?:[A-Za-z_]\w*\s*,\s*)?(?:r#"(.*?)"#|"((?:[^"\\]|\\.)*)")/gs
        or die "query-plans: query $n of fn $fn not found in $file\n";
      die "query-plans: fn $fn in $file has fewer than $n queries\n"
        if substr($src, $from, $-[0] - $from) =~ /\bfn\s+\w+\s*[(<]/;
      if (defined $1) { $sql = $1 }
      else { ($sql = $2) =~ s/\\\n\s*//g; $sql =~ s/\\n/\n/g; $sql =~ s/\\(["\\])/$1/g }
    }
    print $sql;' "$1" "$2" "${3:-1}" | dedent
}

# The DELETE inside cleanup_old_locations(), with its PL/pgSQL variables as the $n parameters
# PL/pgSQL binds them as.
retention_sql() {
  perl -e '
    my $src = do { local $/; open my $fh, "<", $ARGV[0] or die "$ARGV[0]: $!\n"; <$fh> };
    $src =~ /\b(WITH doomed AS \(.*?DELETE FROM locations\b.*?);/s
      or die "query-plans: no retention DELETE in $ARGV[0]\n";
    (my $sql = $1) =~ s/\bretention_days\b/\$1/g;
    $sql =~ s/\bbatch_size\b/\$2/g;
    print $sql;' migrations/0007_views_and_cleanup.sql | dedent
}

group_lock_namespace() {
  perl -ne 'if (/GROUP_LOCK_NAMESPACE: i32 = (0x[0-9a-fA-F_]+|\d+)/) { (my $v = $1) =~ s/_//g; print $v =~ /^0x/ ? hex $v : $v; exit }' src/db/devices.rs
}

# ---------------------------------------------------------------------------------------------
# Scratch database, migrations, data
# ---------------------------------------------------------------------------------------------

say "creating $scratch and applying migrations"
psql -X -q -v ON_ERROR_STOP=1 "$server" -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null 2>&1
psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $scratch" >/dev/null
for migration in migrations/*.sql; do
  psql -X -q -v ON_ERROR_STOP=1 "$url" -f "$migration" >/dev/null
done

# One heavy device (device 1, "Phone 00001") gets this many more locations, interleaved with the
# others: 100,000 in all, a phone reporting about every 35 s for 40 days.
heavy_locations=100000
heavy_extra=$((heavy_locations - locations / 10000))
all_locations=$((locations + heavy_extra))

say "seeding 1,000 groups, 10,000 devices, $all_locations locations, 100 keys, 50,000 idempotency records, 200,000 audit entries"
seed_started=$SECONDS
sql -v locations="$locations" -v heavy="$heavy_extra" -v total="$all_locations" <<'SQL'
SELECT setseed(0.42) \g /dev/null

-- 10,000 devices, 10 per group (group-0001 .. group-1000); every 7th one deactivated, last seen
-- 20 days ago, except every 70th, last seen 45 days ago (what the inactive-device purge, with
-- older_than_days = 30, deletes).
INSERT INTO devices (device_id, display_name, group_id, platform, fcm_token, active, last_seen_at,
                     created_at)
SELECT md5('device-' || i)::uuid,
       'Phone ' || lpad(i::text, 5, '0'),
       'group-' || lpad(((i - 1) % 1000 + 1)::text, 4, '0'),
       CASE WHEN i % 3 = 0 THEN 'ios' ELSE 'android' END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE 'fcm:' || md5('token-' || i) END,
       i % 7 <> 0,
       CASE WHEN i % 70 = 0 THEN now() - interval '45 days'
            WHEN i % 7 = 0 THEN now() - interval '20 days'
            ELSE now() - make_interval(secs => i % 3600) END,
       now() - interval '90 days' + make_interval(secs => i * 60)
FROM generate_series(1, 10000) i;

-- Locations in insertion order over the last 40 days (so 10 days are past the 30-day
-- retention): :locations spread evenly, 100 per device (the n-th goes to device n * 7919 mod
-- 10,000), and, evenly interleaved with them (row m is one when m * heavy / total steps up),
-- :heavy more of device 1, so that its rows lie all over the table as they would in production.
-- Each fix captured up to 5 minutes before it was stored.
INSERT INTO locations (device_id, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                       battery_level, network_type, captured_at, created_at)
SELECT md5('device-' || CASE WHEN heavy THEN 1 ELSE (n * 7919) % 10000 + 1 END)::uuid,
       45 + random() * 10,
       5 + random() * 10,
       (5 + random() * 45)::real,
       CASE WHEN m % 5 = 0 THEN NULL ELSE 100 + random() * 900 END,
       (random() * 360)::real,
       (random() * 30)::real,
       (ARRAY['gps', 'network', 'fused'])[1 + m % 3],
       (m % 101)::smallint,
       (ARRAY['wifi', '4g', '5g', NULL])[1 + m % 4],
       created_at - make_interval(secs => random() * 300),
       created_at
FROM (SELECT m,
             m * :heavy / :total > (m - 1) * :heavy / :total AS heavy,
             m - m * :heavy / :total AS n,
             now() - interval '40 days' + interval '40 days' * (m::float8 / :total) AS created_at
      FROM generate_series(1::bigint, :total) m) s;

-- 100 API keys in the service's format (pm_ + 45 URL-safe characters), stored as the service
-- stores them: SHA-256 hex and the first 8 characters. Every 10th revoked, every 4th expiring.
INSERT INTO api_keys (key_hash, key_prefix, name, is_active, is_admin, last_used_at, created_at,
                      expires_at)
SELECT encode(sha256(convert_to(k, 'UTF8')), 'hex'), left(k, 8), 'key ' || i, i % 10 <> 0, i <= 5,
       now() - make_interval(mins => i), now() - interval '90 days',
       CASE WHEN i % 4 = 0 THEN now() + interval '180 days' END
FROM (SELECT i, 'pm_' || left(translate(encode(sha512(convert_to('seed-key-' || i, 'UTF8')), 'base64'),
                                        E'+/=\n', '-_'), 45) AS k
      FROM generate_series(1, 100) i) s;

-- 50,000 idempotency records created over the last 26 hours: those older than 24 hours (about
-- 4,000) are expired and wait for the expiry job.
INSERT INTO idempotency_keys (api_key_id, key_hash, request_hash, device_id, response_status,
                              response_body, created_at, expires_at)
SELECT k.id,
       encode(sha256(convert_to('idem-' || j, 'UTF8')), 'hex'),
       encode(sha256(convert_to('request-' || j, 'UTF8')), 'hex'),
       md5('device-' || (j % 10000 + 1))::uuid,
       200,
       jsonb_build_object('success', true, 'processed_count', 1 + j % 50),
       c.created_at,
       c.created_at + interval '24 hours'
FROM generate_series(1, 50000) j
JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS rn FROM api_keys) k ON k.rn = j % 100
CROSS JOIN LATERAL (SELECT now() - interval '26 hours' * (j::float8 / 50000) AS created_at) c;

-- 200,000 audit entries over the last 120 days, in id order (ids grow with time), so a quarter
-- are past the 90-day retention. The actions the service writes: data exports (50 %),
-- reactivations (30 %) and erasures (15 %) of 2,000 of the devices (about 95 entries each),
-- and inactive-device purges (5 %, no resource id). Written by the 5 admin keys; every 50th by
-- a key deleted since (api_key_id NULL).
INSERT INTO audit_log (api_key_id, action, resource_type, resource_id, metadata, ip_address, created_at)
SELECT CASE WHEN j % 50 = 0 THEN NULL ELSE k.id END,
       a.action,
       'device',
       CASE WHEN a.action <> 'devices.purge_inactive' THEN md5('device-' || ((j * 7919) % 2000 + 1))::uuid::text END,
       CASE a.action
         WHEN 'device.reactivate' THEN jsonb_build_object('group_id', 'group-' || lpad((j % 1000 + 1)::text, 4, '0'), 'was_active', false)
         WHEN 'devices.purge_inactive' THEN jsonb_build_object('older_than_days', 30, 'deleted_count', j % 4, 'device_ids', '[]'::jsonb)
         ELSE '{}'::jsonb
       END,
       CASE WHEN j % 10 = 0 THEN NULL ELSE format('10.%s.%s.%s', j % 4, j / 256 % 256, j % 256)::inet END,
       now() - interval '120 days' + interval '120 days' * (j::float8 / 200000)
FROM generate_series(1, 200000) j
CROSS JOIN LATERAL (SELECT (j + j / 2000) % 20 AS r) r  -- the device is j mod 2000: r varies per device
JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS rn FROM api_keys WHERE is_admin) k ON k.rn = r.r % 5
CROSS JOIN LATERAL (SELECT CASE WHEN r.r < 10 THEN 'device.data_export'
                                WHEN r.r < 16 THEN 'device.reactivate'
                                WHEN r.r < 19 THEN 'device.data_delete'
                                ELSE 'devices.purge_inactive' END AS action) a;

REFRESH MATERIALIZED VIEW group_member_counts;
VACUUM ANALYZE;
SQL
seed_seconds=$((SECONDS - seed_started))

# ---------------------------------------------------------------------------------------------
# Realistic parameter values
# ---------------------------------------------------------------------------------------------

retention_days="$(config location_retention_days)"; retention_days="${retention_days:-30}"
delete_batch="$(config delete_batch_size)"; delete_batch="${delete_batch:-10000}"
max_batch="$(config max_batch_size)"; max_batch="${max_batch:-50}"
namespace="$(group_lock_namespace)"
[[ -n "$namespace" ]] || { echo "query-plans: GROUP_LOCK_NAMESPACE not found in src/db/devices.rs" >&2; exit 1; }

group="group-0042"
key_hash="$(sql -c "SELECT key_hash FROM api_keys WHERE is_active AND expires_at IS NULL ORDER BY id LIMIT 1")"
key_id="$(sql -c "SELECT id FROM api_keys WHERE key_hash = '$key_hash'")"
member="$(sql -c "SELECT device_id FROM devices WHERE group_id = '$group' AND active ORDER BY id LIMIT 1")"
member_name="$(sql -c "SELECT display_name FROM devices WHERE device_id = '$member'")"
new_device="$(sql -c "SELECT md5('a-new-phone')::uuid")"
taken_key="$(sql -c "SELECT key_hash FROM idempotency_keys WHERE api_key_id = $key_id AND expires_at > now() ORDER BY id LIMIT 1")"
new_key="$(sql -c "SELECT encode(sha256(convert_to('a-new-idempotency-key', 'UTF8')), 'hex')")"
new_request="$(sql -c "SELECT encode(sha256(convert_to('a-new-request', 'UTF8')), 'hex')")"
# Admin operations, privacy and the audit log.
audit_retention_days="$(config audit_retention_days)"; audit_retention_days="${audit_retention_days:-90}"
purge_days=30
admin_key_id="$(sql -c "SELECT id FROM api_keys WHERE is_admin AND is_active AND expires_at IS NULL ORDER BY id LIMIT 1")"
inactive="$(sql -c "SELECT device_id FROM devices WHERE group_id = '$group' AND NOT active ORDER BY id LIMIT 1")"
inactive_name="$(sql -c "SELECT display_name FROM devices WHERE device_id = '$inactive'")"
heavy="$(sql -c "SELECT md5('device-1')::uuid")"
heavy_name="$(sql -c "SELECT display_name FROM devices WHERE device_id = '$heavy'")"
member_locations="$(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM locations WHERE device_id = '$member'")"
heavy_locations_n="$(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM locations WHERE device_id = '$heavy'")"
member_audit="$(sql -c "SELECT count(*) FROM audit_log WHERE resource_id = '$member'")"
# The cursor of the second page of the member's audit trail: the id of the first page's last entry.
cursor="$(sql -c "SELECT id FROM audit_log WHERE resource_id = '$member' ORDER BY id DESC OFFSET 49 LIMIT 1")"
[[ -n $inactive && -n $cursor ]] || { echo "query-plans: the seed has no inactive device in $group or too few audit entries for $member" >&2; exit 1; }
# One upload of max_batch_size fixes, one array per column as insert_fixes binds them.
fixes="$(sql -F ', ' <<SQL
SELECT quote_literal(ARRAY(SELECT 48.85 + g * 0.0001 FROM generate_series(1, $max_batch) g)::float8[]),
       quote_literal(ARRAY(SELECT 2.35 + g * 0.0001 FROM generate_series(1, $max_batch) g)::float8[]),
       quote_literal(ARRAY(SELECT (8 + g % 5)::float4 FROM generate_series(1, $max_batch) g)),
       quote_literal(ARRAY(SELECT CASE WHEN g % 5 = 0 THEN NULL ELSE 35 + g * 0.1 END::float8 FROM generate_series(1, $max_batch) g)),
       quote_literal(ARRAY(SELECT (g * 7 % 360)::float4 FROM generate_series(1, $max_batch) g)),
       quote_literal(ARRAY(SELECT (g % 3 * 1.5)::float4 FROM generate_series(1, $max_batch) g)),
       quote_literal(ARRAY(SELECT (ARRAY['gps', 'fused'])[1 + g % 2] FROM generate_series(1, $max_batch) g)),
       quote_literal(ARRAY(SELECT (90 - g / 10)::int2 FROM generate_series(1, $max_batch) g)),
       quote_literal(ARRAY(SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE 'wifi' END FROM generate_series(1, $max_batch) g)),
       quote_literal(ARRAY(SELECT date_trunc('second', now()) - make_interval(secs => ($max_batch - g) * 10) FROM generate_series(1, $max_batch) g))
SQL
)"

# ---------------------------------------------------------------------------------------------
# Explaining
# ---------------------------------------------------------------------------------------------

# findings: one line per flagged plan; notes: the reason and the fix of each, after the list.
body="$work/body.md"; summary="$work/summary.md"; findings="$work/findings.md"; small="$work/small.md"
notes="$work/notes.md"
: >"$body"; : >"$summary"; : >"$findings"; : >"$small"; : >"$notes"
n=0

# Tables big enough that a sequential scan of them is a finding (estimated rows).
big_tables="$(sql -c "SELECT string_agg(relname, ' ') FROM pg_class
                      WHERE relkind IN ('r', 'm') AND relnamespace = 'public'::regnamespace
                        AND reltuples > 5000")"
# Every index of the schema with its table and leading column (none for an expression): an index
# scanned with a condition that leaves out its leading column reads the whole index.
leading="$work/leading.txt"
sql -F ' ' -c "SELECT c.relname, t.relname, coalesce(a.attname, '') FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
               LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE c.relnamespace = 'public'::regnamespace" >"$leading"
# A sort of more rows than this (or one that spills to disk) is a finding: the plan reads and
# orders a whole set where an index in the right order would stop after what it returns.
sort_rows_limit=1000

indexes_in() {
  perl -ne '
    while (/(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)/g) { push @o, $1 unless $s{$1}++ }
    if (/Conflict Arbiter Indexes: (.*)/) { for (split /, /, $1) { push @o, "$_ (conflict arbiter)" unless $s{$_}++ } }
    END { print join(", ", map { "`$_`" } @o) }'
}
seq_scans_in() { perl -ne 'print "$1\n" while /Seq Scan on (\S+)/g' | sort -u | tr '\n' ' '; }
# "index table column" for each index of a big table scanned with an Index Cond that leaves out
# the index's leading column (a non-leading-column scan: the whole index is read).
whole_index_scans_in() {
  perl -e '
    my ($map, @big) = @ARGV; my %big = map { $_ => 1 } @big; my (%lead, %table, %seen, $idx);
    open my $fh, "<", $map or die "$map: $!\n";
    while (<$fh>) { chomp; my ($i, $t, $c) = split / /, $_, 3; ($table{$i}, $lead{$i}) = ($t, $c) }
    while (<STDIN>) {
      if (/(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)/) { $idx = $1; next }
      if (/^\s*->/) { undef $idx; next }
      next unless defined $idx && /Index Cond: (.*)/;
      my ($cond, $col) = ($1, $lead{$idx});
      print "$idx $table{$idx} $col\n"
        if defined $col && $col ne "" && $big{$table{$idx}} && $cond !~ /\b\Q$col\E\b/ && !$seen{$idx}++;
      undef $idx;
    }' "$leading" $big_tables
}
# "rows<TAB>method<TAB>space" for each Sort node: the rows fed into it (its input's rows x loops),
# its sort method and its memory or disk use.
sorts_in() {
  perl -ne '
    if (/^\s*(?:->\s+)?(?:Incremental )?Sort \(actual /) { ($pending, $m, $sp) = (1, "?", ""); next }
    next unless $pending;
    if (/^\s*Sort Method: (.*?)\s*(?:(Memory|Disk): (\S+))?\s*$/) { ($m, $sp) = ($1, defined $2 ? "$2: $3" : ""); next }
    if (/^\s*->\s+.*?\(actual time=\S+ rows=(\d+) loops=(\d+)\)/) { print join("\t", $1 * $2, $m, $sp), "\n"; $pending = 0 }'
}
big_only() { local t; for t in $1; do [[ " $big_tables " == *" $t "* ]] && printf '%s ' "$t"; done; true; }
table_size() { sql -c "SELECT format('%s rows, %s pages', to_char(reltuples, 'FM9,999,999'), relpages) FROM pg_class WHERE oid = '$1'::regclass"; }
ms() { grep -oP "$1: \K[0-9.]+" | head -n 1; }
commas() { perl -pe '1 while s/^(\d+)(\d{3})/$1,$2/'; }
# Long array literals are shortened for display ('{1,2,3,…}' with the element count).
shorten() {
  perl -pe 's/\x27\{([^}]{60,})\}\x27/my @e = split m{,}, $1; sprintf "\x27{%s,…}\x27 (%d elements)", join(",", @e[0..2]), scalar @e/ge'
}

# explain NAME TITLE SOURCE MODE TYPES ARGS STATEMENT [NOTE] [NO_INDEX]
#   NAME       prepared statement name (the Rust function's name)
#   MODE       read, or write (explained inside BEGIN ... ROLLBACK)
#   TYPES      parameter types as sqlx binds them ("" for none); ARGS the EXECUTE arguments
#   NO_INDEX   what to say when the plan touches no table (default "none (no table access)")
# Environment: PROPOSAL=1 for a change that is not in the code (shown, kept out of the summary
# and findings); SETUP="sql" runs first in a transaction rolled back at the end (an index or a
# setting to try: nothing persists); ALSO_USES="text" is added to the index column (indexes used
# underneath, e.g. by a cascade, that EXPLAIN does not show); NO_SORT=1 makes any sort a finding
# (a streamed query whose order must come from its index).
explain() {
  local name=$1 title=$2 source=$3 mode=$4 types=$5 args=$6 stmt=$7 note=${8:-} no_index=${9:-}
  local proposal=${PROPOSAL:-} setup=${SETUP:-} also_uses=${ALSO_USES:-} no_sort=${NO_SORT:-}
  local begin="" end="" prepare="PREPARE $name AS" open="" close=""
  if [[ -n $setup ]]; then
    open="BEGIN; $setup;" close="ROLLBACK;"
    [[ $mode == write ]] && { begin="SAVEPOINT plan;"; end="ROLLBACK TO SAVEPOINT plan;"; }
  else
    [[ $mode == write ]] && { begin="BEGIN;"; end="ROLLBACK;"; }
  fi
  [[ -n $types ]] && prepare="PREPARE $name ($types) AS"
  local execute="EXECUTE $name${args:+ ($args)}"
  local raw="$work/$name.out"
  say "explaining $name"
  sql >"$raw" <<SQL
\\o /dev/null
$open
\\o
$prepare
$stmt;
\\o /dev/null
$begin EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) $execute; $end
\\o
$begin EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) $execute; $end
\\echo @@generic
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) $execute;
\\echo @@noseqscan
SET plan_cache_mode = force_custom_plan;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) $execute;
$close
SQL
  local plan generic noseq
  plan="$(sed '/^@@generic$/,$d' "$raw")"
  generic="$(sed -n '/^@@generic$/,/^@@noseqscan$/{//!p}' "$raw")"
  noseq="$(sed '1,/^@@noseqscan$/d' "$raw")"
  local exec_ms plan_ms used generic_used seqs big generic_big
  exec_ms="$(ms 'Execution Time' <<<"$plan")"
  plan_ms="$(ms 'Planning Time' <<<"$plan")"
  used="$(indexes_in <<<"$plan")"
  generic_used="$(indexes_in <<<"$generic")"
  seqs="$(seq_scans_in <<<"$plan")"
  big="$(big_only "$seqs")"
  generic_big="$(big_only "$(seq_scans_in <<<"$generic")")"

  local whole sorts big_sort="" small_sort=""
  whole="$(whole_index_scans_in <<<"$plan")"
  sorts="$(sorts_in <<<"$plan")"
  local rows method space
  while IFS=$'\t' read -r rows method space; do
    [[ -n $rows ]] || continue
    local what="$(commas <<<"$rows") rows ($method$(sed -E 's/^Memory: (.*)/, \1 of memory/; s/^Disk: (.*)/, \1 on disk/' <<<"${space:+$space}"))"
    if (( rows > sort_rows_limit )) || [[ $space == Disk* || -n $no_sort ]]; then big_sort+="${big_sort:+, }$what"
    else small_sort+="${small_sort:+, }$what"; fi
  done <<<"$sorts"

  last_exec_ms=$exec_ms last_used=$used last_plan=$plan last_problem=""
  local anchor
  if [[ -n $proposal ]]; then anchor="${n}b"; else n=$((n + 1)); anchor=$n; fi
  local index_text="${used:-${no_index:-none (no table access)}}${also_uses:+; $also_uses}"
  local summary_index="$index_text" verdict="**Index:** $index_text"
  # Whole-index scans and big sorts: the long form (verdict, findings) and the short one (summary).
  local problems="" short="" idx table col
  while read -r idx table col; do
    [[ -n $idx ]] || continue
    problems+="${problems:+; }it reads the whole of \`$idx\` ($(table_size "$idx")): the condition leaves out its leading column \`$col\`"
    short+="${short:+; }⚠ whole \`$idx\` read (leading column \`$col\` unused)"
  done <<<"$whole"
  if [[ -n $big_sort ]]; then
    problems+="${problems:+; }it sorts $big_sort"
    short+="${short:+; }⚠ sorts $big_sort"
  fi
  if [[ -n $big ]]; then
    last_problem="it scans \`${big% }\` sequentially ($(table_size "${big% }"))${problems:+; $problems}"
    verdict="**⚠ No index for \`${big% }\`: it is scanned sequentially ($(table_size "${big% }"))**${used:+. Other indexes: $used}${also_uses:+; $also_uses}${problems:+. Also: $problems}"
    summary_index="**⚠ seq scan of \`${big% }\`**${used:+; $used}${also_uses:+; $also_uses}${short:+; $short}"
    [[ -n $proposal ]] || printf -- '- **%s** (`%s`): sequential scan of `%s`%s; see [%s](#q%s).\n' \
      "$title" "$source" "${big% }" "${problems:+; $problems}" "$anchor" "$anchor" >>"$findings"
  elif [[ -n $problems ]]; then
    last_problem=$problems
    verdict="**⚠ Index:** $index_text, **but $problems**"
    summary_index="**$short**; $index_text"
    [[ -n $proposal ]] || printf -- '- **%s** (`%s`): %s; see [%s](#q%s).\n' \
      "$title" "$source" "$problems" "$anchor" "$anchor" >>"$findings"
  elif [[ -n $seqs ]]; then
    local fallback size
    fallback="$(indexes_in <<<"$noseq")"
    size="$(table_size "${seqs% }")"
    verdict="**Index:** ${used:+$used; }none chosen for \`${seqs% }\`: at its size ($size) a sequential scan is cheaper than any index. With \`enable_seqscan = off\` the planner uses ${fallback:-no index}, so the index is there and usable"
    summary_index="${used:+$used; }seq scan of tiny \`${seqs% }\` ($size); ${fallback:-no index} when forced"
    [[ -n $proposal ]] || printf -- '- %s ([%s](#q%s)): `%s` is tiny (%s); forced off the sequential scan, the plan uses %s.\n' \
      "$title" "$anchor" "$anchor" "${seqs% }" "$size" "${fallback:-no index}" >>"$small"
  fi
  if [[ -n $generic_big && -z $proposal ]]; then
    printf -- '- **%s** (`%s`): the *generic* plan (used once sqlx has run the prepared statement 5+ times) scans `%s` sequentially; see [%s](#q%s).\n' \
      "$title" "$source" "${generic_big% }" "$anchor" "$anchor" >>"$findings"
  fi
  if [[ -n $small_sort ]]; then
    verdict+=". Sorts in memory: $small_sort"
    summary_index+="; sorts $small_sort"
    [[ -n $proposal || -n $problems || -n $big ]] || printf -- '- %s ([%s](#q%s)): sorts %s.\n' \
      "$title" "$anchor" "$anchor" "$small_sort" >>"$small"
  fi
  local generic_text="same indexes"
  [[ "$generic_used" != "$used" ]] && generic_text="${generic_used:-no index}"
  [[ -n $generic_big ]] && generic_text="⚠ seq scan of \`${generic_big% }\`"
  {
    printf '<a id="q%s"></a>\n### %s. %s\n\n' "$anchor" "$anchor" "$title"
    printf '`%s`%s\n\n' "$source" "${note:+ — $note}"
    printf '```sql\n%s\n```\n\n' "$stmt"
    printf 'Run as `%s`%s%s:\n\n' "$(shorten <<<"$execute")" \
      "$([[ $mode == write ]] && printf ' inside `BEGIN … ROLLBACK`')" \
      "$([[ -n $setup ]] && printf ', after `%s` (in a transaction rolled back afterwards: nothing persists)' "$setup")"
    printf '```\n%s\n```\n\n' "$plan"
    printf '%s. **Execution time:** %s ms (planning %s ms). Generic plan: %s.\n\n' \
      "$verdict" "$exec_ms" "$plan_ms" "$generic_text"
  } >>"$body"
  [[ -n $proposal ]] || printf '| [%s](#q%s) | %s | `%s` | %s | %s ms |\n' "$anchor" "$anchor" "$title" \
    "$source" "$summary_index" "$exec_ms" >>"$summary"
}

section() { printf '## %s\n\n' "$1" >>"$body"; [[ -z ${2:-} ]] || printf '%s\n\n' "$2" >>"$body"; }

# cascade_plans TYPES ARGS STATEMENT: the plans of the statements a write runs underneath (the
# foreign keys' ON DELETE CASCADE), captured with auto_explain inside BEGIN ... ROLLBACK; costs
# stripped, and the statement's own plan (logged last, and explained anyway) left out.
cascade_plans() {
  local out
  out="$(sql 2>&1 >/dev/null <<SQL
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
PREPARE nested_stmt ${1:+($1)} AS $3;
BEGIN;
EXECUTE nested_stmt ${2:+($2)};
ROLLBACK;
SQL
)" || { echo "(auto_explain is not available on this server)"; return 0; }
  perl -0777 -pe 'my @b = split /^(?=NOTICE:  duration: )/m; pop @b; $_ = join "", @b;
                  s/  \(cost=[^)]*\)//g; s/^NOTICE:  //mg; s/\s+\z/\n/' <<<"$out"
}
# cascade_block TITLE PLANS: the captured cascade plans, folded, into the document.
cascade_block() {
  printf '<details><summary>%s</summary>\n\n```\n%s\n```\n\n</details>\n\n' "$1" "$2" >>"$body"
}
# The time of the named node's scan (end of its actual time) in a plan; empty when absent.
node_ms() { grep -oP "$1 \(actual time=[0-9.]+\.\.\K[0-9.]+" | head -n 1; }
trigger_ms() { grep -oP "Trigger for constraint $1: time=\K[0-9.]+" | head -n 1; }

section "Authentication (every request)"
explain find_active_by_hash "API key lookup" "src/db/api_keys.rs: find_active_by_hash" read \
  "text" "'$key_hash'" "$(rust_sql src/db/api_keys.rs find_active_by_hash)"
explain touch_last_used "Key last-used bookkeeping (at most once a minute per key)" \
  "src/db/api_keys.rs: touch_last_used" write "int8" "$key_id" \
  "$(rust_sql src/db/api_keys.rs touch_last_used)"

section "Device registration (one transaction)" \
  "\`src/domain/devices.rs: register\` runs these four statements in one transaction. Shown for group \`$group\` and its member \`$member\` (\`$member_name\`)."
explain lock_group "Group advisory lock" "src/db/devices.rs: lock_group" write \
  "int4, text" "$namespace, '$group'" "$(rust_sql src/db/devices.rs lock_group)" "" \
  "none needed (no table access: an advisory lock, held until the transaction ends)"
explain find_membership_for_update "Current membership, row locked" \
  "src/db/devices.rs: find_membership_for_update" write "uuid" "'$member'" \
  "$(rust_sql src/db/devices.rs find_membership_for_update)"
explain count_active_in_group "Active members of the group (limit check)" \
  "src/db/devices.rs: count_active_in_group" write "text" "'$group'" \
  "$(rust_sql src/db/devices.rs count_active_in_group)"
explain upsert "Upsert, re-registration of a known device" "src/db/devices.rs: upsert" write \
  "uuid, text, text, text, text, text" "'$member', 'Phone renamed', '$group', NULL, 'android', 'fcm:new-token'" \
  "$(rust_sql src/db/devices.rs upsert)" "the \`ON CONFLICT … DO UPDATE\` path"
explain upsert_new "Upsert, first registration of a new device" "src/db/devices.rs: upsert" write \
  "uuid, text, text, text, text, text" "'$new_device', 'New phone', '$group', 'ios', 'android', NULL" \
  "$(rust_sql src/db/devices.rs upsert)" "the plain insert path"

section "Group listing"
explain list_active_in_group "Active members with their last location" \
  "src/db/devices.rs: list_active_in_group" read "text" "'$group'" \
  "$(rust_sql src/db/devices.rs list_active_in_group)" \
  "through the \`devices_with_last_location\` view (one \`LIMIT 1\` probe per member)"

section "Location upload (one transaction)" \
  "\`src/domain/locations.rs: upload\`: idempotency claim (when an \`Idempotency-Key\` is sent), the batch insert, the stored answer; \`touch_last_seen\` runs afterwards, off the request path."
explain claim "Idempotency claim" "src/db/idempotency.rs: claim (1st statement)" write \
  "int8, text, text, uuid" "$key_id, '$new_key', '$new_request', '$member'" \
  "$(rust_sql src/db/idempotency.rs claim 1)" "a new key, the common case"
explain claim_lookup "Idempotency lookup of a taken key" "src/db/idempotency.rs: claim (2nd statement)" \
  read "int8, text" "$key_id, '$taken_key'" "$(rust_sql src/db/idempotency.rs claim 2)" \
  "runs only when the claim returned no row (a replay)"
explain insert_fixes "Batch insert of $max_batch fixes" "src/db/locations.rs: insert_fixes" write \
  "uuid, float8[], float8[], float4[], float8[], float4[], float4[], text[], int2[], text[], timestamptz[]" \
  "'$member', $fixes" "$(rust_sql src/db/locations.rs insert_fixes)" \
  "a full batch (\`limits.max_batch_size\`); the foreign-key trigger probes \`uq_devices_device_id\` once per row"
explain complete "Idempotency answer stored" "src/db/idempotency.rs: complete" write \
  "int8, text, int2, jsonb" "$key_id, '$taken_key', 200, '{\"success\": true, \"processed_count\": $max_batch}'" \
  "$(rust_sql src/db/idempotency.rs complete)"
explain touch_last_seen "Device last-seen bookkeeping" "src/db/devices.rs: touch_last_seen" write \
  "uuid" "'$member'" "$(rust_sql src/db/devices.rs touch_last_seen)"

section "Device deactivation"
explain deactivate "Soft delete" "src/db/devices.rs: deactivate" write "uuid" "'$member'" \
  "$(rust_sql src/db/devices.rs deactivate)"

section "Data export (privacy)" \
  "\`src/domain/privacy.rs: export\`: the device is read and the export audited in one transaction; then its locations are streamed, in \`captured_at\` order, from a read-only REPEATABLE READ snapshot and written out as they arrive (never collected). Shown for \`$member_name\` ($member_locations locations, like every seeded device but one) and for the heavy device \`$heavy_name\` ($heavy_locations_n locations)."
explain find_record "Device record" "src/db/devices.rs: find_record" read "uuid" "'$member'" \
  "$(rust_sql src/db/devices.rs find_record)" "also the first step of a reactivation"
explain insert "Audit entry" "src/db/audit.rs: insert" write "int8, text, text, text, jsonb, text" \
  "$admin_key_id, 'device.data_export', 'device', '$member', '{}', '203.0.113.7'" \
  "$(rust_sql src/db/audit.rs insert)" \
  "every audited operation (export, erasure, reactivation, purge) writes one in its transaction" \
  "none needed (an insert; the foreign-key check of \`api_key_id\` probes \`pk_api_keys\`)"
# The export runs in a transaction where src/db/locations.rs: prefer_index_order has set
# enable_sort = off; explain it the same way.
NO_SORT=1 SETUP="SET LOCAL enable_sort = off" explain stream_for_device "Export of a typical device's locations, oldest first" \
  "src/db/locations.rs: stream_for_device" read "uuid" "'$member'" \
  "$(rust_sql src/db/locations.rs stream_for_device)" \
  "$member_locations locations; streamed, in the export's transaction (\`SET LOCAL enable_sort = off\`, \`prefer_index_order\`), so the order comes from \`idx_locations_device_captured\` walked backwards, without a sort"
stream_problem=$last_problem
NO_SORT=1 SETUP="SET LOCAL enable_sort = off" explain stream_for_device_heavy "Export of the heavy device's locations, oldest first" \
  "src/db/locations.rs: stream_for_device" read "uuid" "'$heavy'" \
  "$(rust_sql src/db/locations.rs stream_for_device)" \
  "the same statement for \`$heavy_name\` and its $heavy_locations_n locations"
heavy_problem=$last_problem heavy_ms=$last_exec_ms heavy_plan=$last_plan
if [[ -n $stream_problem || -n $heavy_problem ]]; then
  heavy_sort="$(grep -oP 'Sort Method: \K.*' <<<"$heavy_plan" | head -n 1 | sed 's/  */ /g')"
  correlation="$(sql -c "SELECT round(correlation::numeric, 4) FROM pg_stats WHERE tablename = 'locations' AND attname = 'device_id'")"
  PROPOSAL=1 SETUP="SET LOCAL random_page_cost = 1.1" explain stream_for_device_ssd \
    "The heavy device's export with random_page_cost = 1.1 (a setting, not in the code)" \
    "proposal for src/db/locations.rs: stream_for_device" read "uuid" "'$heavy'" \
    "$(rust_sql src/db/locations.rs stream_for_device)" \
    "the same statement and device; only the planner's cost of a random page read changes"
  cat >>"$notes" <<EOF

**The export sorts instead of walking \`idx_locations_device_captured\` backwards.**
\`stream_for_device\` streams a device's locations in \`captured_at\` order, and
\`idx_locations_device_captured (device_id, captured_at DESC)\` delivers exactly that order when
walked backwards, so the first row could leave at once. The index exists and is used, but only
as a bitmap: the planner reads the device's heap pages in physical order and then sorts, for the
typical device${stream_problem:+ (${stream_problem#it })} as for the heavy one (${heavy_problem#it }; $heavy_ms ms).
The reason is the cost model, not a missing index: a device's rows lie all over the table
(physical correlation of \`device_id\`: $correlation), so with the default \`random_page_cost = 4\`
an index scan, one random page read per row, looks dearer than a bitmap scan plus a sort. The
database therefore reads and sorts the whole export (on disk for the heavy device) before the
first row goes out. No migration fixes it; either of these does (neither is applied):
- \`random_page_cost = 1.1\`, the usual value on SSD storage (\`ALTER DATABASE … SET random_page_cost = 1.1\`
  or the server configuration): the plan becomes \`$(grep -m 1 -oP '^\S.*?(?= \(actual)' <<<"$last_plan")\`${last_problem:+, but $last_problem};
  the first row leaves at once, and the whole heavy export takes $last_exec_ms ms (against $heavy_ms ms with the sort;
  plan in [${n}b](#q${n}b));
- or \`SET LOCAL enable_sort = off\` in the export's snapshot transaction before
  \`stream_for_device\` (a code change in \`src/domain/privacy.rs\`), after which the planner
  chooses the same backward index scan.

A covering index (\`INCLUDE\` of every exported column, for an index-only scan) would also do, at
the price of a second copy of \`locations\`.
EOF
fi

section "Data erasure (privacy, one transaction)" \
  "\`src/domain/privacy.rs: erase\`: the device is deleted, its locations and idempotency records with it (\`ON DELETE CASCADE\` of \`fk_locations_device\` and \`fk_idempotency_keys_device\`), and the erasure audited (the insert above), in one transaction. EXPLAIN shows the cascade only as trigger time: its statements' plans are captured with auto_explain."
say "capturing the cascade of delete with auto_explain"
cascade="$(cascade_plans uuid "'$member'" "$(rust_sql src/db/devices.rs delete)")"
ALSO_USES="cascade: $(indexes_in <<<"$cascade")" explain delete "Erasure of a typical device" \
  "src/db/devices.rs: delete" write "uuid" "'$member'" "$(rust_sql src/db/devices.rs delete)" \
  "$member_locations locations"
cascade_block "The cascade's statements (auto_explain, nested statements)" "$cascade"
say "capturing the cascade of delete (heavy device) with auto_explain"
cascade_heavy="$(cascade_plans uuid "'$heavy'" "$(rust_sql src/db/devices.rs delete)")"
ALSO_USES="cascade: $(indexes_in <<<"$cascade_heavy")" explain delete_heavy "Erasure of the heavy device" \
  "src/db/devices.rs: delete" write "uuid" "'$heavy'" "$(rust_sql src/db/devices.rs delete)" \
  "$heavy_locations_n locations: the cascade is the whole cost"
cascade_block "The cascade's statements (auto_explain, nested statements)" "$cascade_heavy"
for plans in "$cascade" "$cascade_heavy"; do
  cascade_big="$(big_only "$(seq_scans_in <<<"$plans")")"
  [[ -z $cascade_big ]] || printf -- '- **Erasure** (`src/db/devices.rs: delete`): its cascade scans `%s` sequentially; see the cascade plans under [%s](#q%s).\n' \
    "${cascade_big% }" "$n" "$n" >>"$findings"
done

section "Admin operations" \
  "\`src/domain/admin.rs\` and the admin routes (admin keys only), each audited with the insert above."
explain activate "Reactivation" "src/db/devices.rs: activate" write "uuid" "'$inactive'" \
  "$(rust_sql src/db/devices.rs activate)" \
  "of \`$inactive_name\`, inactive, in \`$group\`; after the group lock, row lock and limit check shown under registration"
purge_where="NOT active AND COALESCE(last_seen_at, updated_at) < now() - make_interval(days => $purge_days)"
purge_count="$(sql -c "SELECT count(*) FROM devices WHERE $purge_where")"
purge_locations="$(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM locations WHERE device_id IN (SELECT device_id FROM devices WHERE $purge_where)")"
ALSO_USES="cascade: the statements of the erasure above, once per device" explain delete_inactive \
  "Purge of inactive devices" "src/db/devices.rs: delete_inactive" write "int4" "$purge_days" \
  "$(rust_sql src/db/devices.rs delete_inactive)" \
  "\`older_than_days\` = $purge_days: $purge_count devices, and by cascade their $purge_locations locations and their idempotency records (the trigger times)"
if [[ -n $last_problem ]]; then
  purge_problem=$last_problem purge_ms=$last_exec_ms purge_plan=$last_plan
  purge_scan_ms="$(node_ms '(?:Seq Scan|Bitmap Heap Scan|Index Scan using \S+) on devices' <<<"$purge_plan")"
  purge_cascade_ms="$(trigger_ms fk_locations_device <<<"$purge_plan")"
  PROPOSAL=1 SETUP="CREATE INDEX idx_devices_inactive_seen ON devices ((COALESCE(last_seen_at, updated_at))) WHERE NOT active" \
    explain delete_inactive_indexed "Purge of inactive devices with a partial index (not in the migrations)" \
    "proposal for migrations/0002_devices.sql" write "int4" "$purge_days" \
    "$(rust_sql src/db/devices.rs delete_inactive)" "the same statement and data, with an index that matches its condition"
  purge_fixed_scan_ms="$(node_ms '(?:Seq Scan|Bitmap Heap Scan|Index Scan using \S+) on devices' <<<"$last_plan")"
  cat >>"$notes" <<EOF

**The purge of inactive devices has no index for its condition.** \`delete_inactive\` filters on
\`NOT active AND COALESCE(last_seen_at, updated_at) < now() - make_interval(days => \$1)\`, which no
index matches: the plan ${purge_problem#it }; finding the rows takes ${purge_scan_ms:-?} ms of the statement's $purge_ms ms
here, the cascade into \`locations\` (through \`idx_locations_device_captured\`) ${purge_cascade_ms:-?} ms. Fix (a migration, not
applied): the partial expression index
\`CREATE INDEX idx_devices_inactive_seen ON devices ((COALESCE(last_seen_at, updated_at))) WHERE NOT active\`,
which reads only the devices to delete: ${last_used:-no index}, ${purge_fixed_scan_ms:-?} ms to find them (plan in [${n}b](#q${n}b)).
Low priority: an admin operation, run rarely, whose cost is the cascade; the scan grows with the
number of devices, not of locations.
EOF
fi
explain stats "Dashboard figures" "src/db/devices.rs: stats" read "" "" "$(rust_sql src/db/devices.rs stats)" \
  "\`GET /admin/stats\`: exact device counts, group figures from the materialized view, the location count estimated"
if [[ -n $last_problem ]]; then
  cat >>"$notes" <<EOF

**The dashboard figures count every device.** \`stats\` counts \`devices\` exactly, all of them and
the active ones: ${last_problem}, $last_exec_ms ms for the whole statement here. No index fixes an exact
count of a whole table (an index-only scan still reads every entry), and the code chose exact
counts because the table is small. If devices grow, the fix is a query change, not an index:
\`sum(total_count)\` and \`sum(active_count)\` of \`group_member_counts\`, as the statement already
does for the group figures (as fresh as the hourly refresh). Its other parts use indexes
(\`min\`/\`max\` on \`idx_locations_created_at\`) or the planner's row estimate.
EOF
fi
audit_types="text, text, text, int8, timestamptz, timestamptz, int8, int8"
explain list "Audit log, first page" "src/db/audit.rs: list" read "$audit_types" \
  "NULL, NULL, NULL, NULL, NULL, NULL, NULL, 50" "$(rust_sql src/db/audit.rs list)" \
  "\`GET /admin/audit\` without filters, the default page size of 50"
explain list_filtered "Audit log of one device, second page" "src/db/audit.rs: list" read "$audit_types" \
  "NULL, NULL, '$member', NULL, NULL, NULL, $cursor, 50" "$(rust_sql src/db/audit.rs list)" \
  "\`GET /admin/audit?resource_id=…&cursor=…\`: the entries of \`$member_name\` ($member_audit in all) older than the cursor of the first page"
if [[ -n $last_problem ]]; then
  audit_ms=$last_exec_ms audit_sorted=""
  grep -q 'Sort Key' <<<"$last_plan" && audit_sorted=1
  PROPOSAL=1 SETUP="CREATE INDEX idx_audit_resource_id ON audit_log (resource_id, id)" \
    explain list_filtered_indexed "Audit log of one device with an index on resource_id (not in the migrations)" \
    "proposal for migrations/0006_audit_log.sql" read "$audit_types" \
    "NULL, NULL, '$member', NULL, NULL, NULL, $cursor, 50" "$(rust_sql src/db/audit.rs list)" \
    "the same statement and page, with an index that starts with \`resource_id\`"
  cat >>"$notes" <<EOF

**The audit log filtered by \`resource_id\` alone reads a whole index.** The admin API accepts
\`resource_id\` without \`resource_type\`, and then \`list\` has no index starting with
\`resource_id\`: \`idx_audit_resource\` is \`(resource_type, resource_id)\`, so the planner reads all
of it ($(table_size idx_audit_resource)), checking \`resource_id\` on every entry, then fetches
the device's entries${audit_sorted:+ and sorts them by \`id\`}; $audit_ms ms here, a cost that grows with the whole audit log instead of
with the device's entries. Fix (a migration, not applied):
\`CREATE INDEX idx_audit_resource_id ON audit_log (resource_id, id)\` makes both
\`resource_id = \$3\` and the cursor \`id < \$7\` index conditions: ${last_used:-no index}, $last_exec_ms ms${last_problem:+, but $last_problem} (plan in
[${n}b](#q${n}b)). With \`resource_type=device\` also given, the existing index already serves it.
EOF
fi

section "Maintenance jobs" \
  "Each job runs hourly but the audit retention, which runs daily (\`[jobs]\` in \`config/default.toml\`), in batches of \`delete_batch_size\` = $delete_batch rows."
# The plan of the DELETE as the function itself runs it, captured with auto_explain (costs
# stripped to match the other plans).
say "capturing the plan inside cleanup_old_locations with auto_explain"
nested="$(sql 2>&1 >/dev/null <<SQL
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
BEGIN;
SELECT cleanup_old_locations($retention_days, $delete_batch);
ROLLBACK;
SQL
)" || nested="(auto_explain is not available on this server)"
nested="$(perl -pe 's/  \(cost=[^)]*\)//; s/^NOTICE:  //' <<<"$nested")"
nested_used="$(indexes_in <<<"$nested")"
explain cleanup_old_batch "Retention batch (function call)" "src/db/locations.rs: cleanup_old_batch" write \
  "int4, int4" "$retention_days, $delete_batch" "$(rust_sql src/db/locations.rs cleanup_old_batch)" \
  "EXPLAIN cannot see inside the function: its statement is explained below, and its plan as the function runs it is captured with auto_explain" \
  "hidden by the function call; inside: ${nested_used:-none} (see below)"

{
  printf 'The function'\''s DELETE as the function runs it (auto_explain, nested statements, for `SELECT cleanup_old_locations(%s, %s)`):\n\n' \
    "$retention_days" "$delete_batch"
  printf '```\n%s\n```\n\n' "$nested"
} >>"$body"

explain cleanup_old_locations "Retention batch (the DELETE inside the function)" \
  "migrations/0007_views_and_cleanup.sql: cleanup_old_locations" write "int4, int4" \
  "$retention_days, $delete_batch" "$(retention_sql)" \
  "PL/pgSQL binds \`retention_days\` and \`batch_size\` as the parameters \$1 and \$2"
explain delete_expired "Idempotency expiry batch" "src/db/idempotency.rs: delete_expired" write \
  "int8" "$delete_batch" "$(rust_sql src/db/idempotency.rs delete_expired)"
# The planner turns `id IN (SELECT ... LIMIT $1)` into a hash semi-join, which reads the whole
# table to hash it as soon as the batch is a few percent of the table. When it does, measure the
# rewrite that keeps both sides on an index (the ids become one array: pk probes only).
if grep -q 'delete_expired' "$findings"; then
  current_ms=$last_exec_ms
  PROPOSAL=1 explain delete_expired_rewrite "Proposed rewrite of the idempotency expiry batch (not in the code)" \
    "proposal for src/db/idempotency.rs: delete_expired" write "int8" "$delete_batch" \
"DELETE FROM idempotency_keys WHERE id = ANY (ARRAY(
    SELECT id FROM idempotency_keys WHERE expires_at <= now() LIMIT \$1
))" "same rows deleted, same parameter; the subquery result becomes one array, probed on the primary key"
  cat >>"$notes" <<EOF

Not a missing index: both \`idx_idempotency_keys_expires_at\` (finds the expired rows) and
\`pk_idempotency_keys\` exist. The planner rewrites \`id IN (SELECT … LIMIT \$1)\` into a hash
semi-join and, with about $(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM idempotency_keys WHERE expires_at <= now()") expired rows of $(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM idempotency_keys"), prefers hashing the
whole table to one primary-key probe per row: the DELETE reads every page of
\`idempotency_keys\` ($current_ms ms here), and that cost grows with the table, not the batch.
Fix (a query change in \`src/db/idempotency.rs\`, no migration):
\`DELETE FROM idempotency_keys WHERE id = ANY (ARRAY(SELECT id FROM idempotency_keys WHERE expires_at <= now() LIMIT \$1))\`
uses ${last_used:-no index} and took $last_exec_ms ms on the same data (plan in [${n}b](#q${n}b)).
EOF
fi

explain delete_older_than "Audit retention batch" "src/db/audit.rs: delete_older_than" write \
  "int4, int8" "$audit_retention_days, $delete_batch" "$(rust_sql src/db/audit.rs delete_older_than)" \
  "\`limits.audit_retention_days\` = $audit_retention_days: $(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM audit_log WHERE created_at < now() - make_interval(days => $audit_retention_days)") entries are past it"

# REFRESH cannot be explained: time it (after an hour's worth of last-seen updates, as the hourly
# job sees it, then again with nothing changed) and capture its internal statements.
say "timing REFRESH MATERIALIZED VIEW CONCURRENTLY group_member_counts"
refresh_stmt="$(rust_sql src/db/devices.rs refresh_group_stats)"
sql -c "UPDATE devices SET last_seen_at = now() - make_interval(secs => id % 600) WHERE active" >/dev/null
refresh_out="$(sql <<SQL
\\timing on
$refresh_stmt;
$refresh_stmt;
$refresh_stmt;
SQL
)"
mapfile -t refresh_ms < <(grep -oP '^Time: \K[0-9.]+' <<<"$refresh_out")
refresh_plans="$(sql 2>&1 >/dev/null <<SQL
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
$refresh_stmt;
SQL
)" || refresh_plans="(auto_explain is not available on this server)"
refresh_plans="$(perl -pe 's/  \(cost=[^)]*\)//; s/^NOTICE:  //' <<<"$refresh_plans")"
n=$((n + 1))
{
  printf '<a id="q%d"></a>\n### %d. Group statistics refresh\n\n' "$n" "$n"
  printf '`src/db/devices.rs: refresh_group_stats` — hourly job `src/jobs/group_stats.rs`\n\n'
  printf '```sql\n%s\n```\n\n' "$refresh_stmt"
  printf 'REFRESH cannot be explained, so it is timed with psql `\\timing`: %s ms after an hour'\''s worth of\n' "${refresh_ms[0]}"
  printf 'last-seen updates (every group changed), then %s ms and %s ms with nothing changed.\n' "${refresh_ms[1]}" "${refresh_ms[2]}"
  printf 'It recomputes the view from all of `devices` (a sequential scan is inherent to an aggregate over every\n'
  printf 'row: 10,000 rows, a few hundred pages) and diffs it against the old contents, which is what\n'
  printf '`CONCURRENTLY` costs so that readers are never blocked. Its internal statements, captured with auto_explain:\n\n'
  printf '<details><summary>Internal plans of REFRESH … CONCURRENTLY</summary>\n\n```\n%s\n```\n\n</details>\n\n' "$refresh_plans"
} >>"$body"
printf '| [%d](#q%d) | Group statistics refresh | `src/db/devices.rs: refresh_group_stats` | none: full aggregate of `devices` (by design) | %s ms (timed) |\n' \
  "$n" "$n" "${refresh_ms[0]}" >>"$summary"

# ---------------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------------

say "writing $out"
version="$(sql -c "SELECT version()")"
settings="$(sql -F ' = ' -c "SELECT name, current_setting(name) FROM pg_settings
                              WHERE name IN ('shared_buffers', 'work_mem', 'random_page_cost',
                                             'effective_cache_size', 'max_parallel_workers_per_gather')
                              ORDER BY name" | sed 's/^/`/; s/$/`/' | paste -sd ',' | sed 's/,/, /g')"
counts="$(sql -F ' | ' <<'SQL'
SELECT '| `' || t || '` | ' || to_char(c, 'FM9,999,999,999') || ' | ' || pg_size_pretty(pg_total_relation_size(t::regclass)) || ' |'
FROM (VALUES ('locations', (SELECT count(*) FROM locations)),
             ('devices', (SELECT count(*) FROM devices)),
             ('api_keys', (SELECT count(*) FROM api_keys)),
             ('idempotency_keys', (SELECT count(*) FROM idempotency_keys)),
             ('audit_log', (SELECT count(*) FROM audit_log)),
             ('group_member_counts', (SELECT count(*) FROM group_member_counts))) v(t, c)
SQL
)"
details="$(sql -c "SELECT format('%s active / %s inactive devices in %s groups (%s inactive for over %s days: what the purge deletes); %s locations, %s of them of the heavy device \`%s\`, %s older than %s days (the retention backlog); %s expired idempotency records; %s audit entries older than %s days',
                   count(*) FILTER (WHERE active), count(*) FILTER (WHERE NOT active), count(DISTINCT group_id),
                   $purge_count, $purge_days,
                   to_char((SELECT count(*) FROM locations), 'FM9,999,999'), '$heavy_locations_n', '$heavy_name',
                   to_char((SELECT count(*) FROM locations WHERE created_at < now() - make_interval(days => $retention_days)), 'FM9,999,999'),
                   $retention_days, to_char((SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()), 'FM9,999,999'),
                   to_char((SELECT count(*) FROM audit_log WHERE created_at < now() - make_interval(days => $audit_retention_days)), 'FM9,999,999'),
                   $audit_retention_days)
                   FROM devices")"
cores="$(nproc)"
dirty=""
if git status --porcelain -- src migrations config | grep -q .; then
  dirty=" (with uncommitted changes to src/, migrations/ or config/)"
fi
memory="$(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)"

{
  cat <<EOF
# Query plans of the hot queries

Generated by \`scripts/query-plans.sh\` — do not edit by hand; rerun the script (one command, under a
minute here, needs only \`psql\` and a PostgreSQL server: \`DATABASE_URL\`, default
\`postgres://postgres@127.0.0.1:5432/postgres\`). Issue requirement: *every hot query uses an index,
shown with \`EXPLAIN ANALYZE\` on a table of at least 1M locations.*

EOF
  if [[ -s $findings ]]; then
    printf '> **⚠ Hot queries without a fitting index**: sequential scans of a large table, scans of a whole\n'
    printf '> index whose leading column the query does not give, sorts of many rows (or of any row, in a\n'
    printf '> streamed query). Found by the script in the plans below; the migrations and the code are unchanged.\n>\n'
    sed 's/^/> /' "$findings"
    [[ ! -s $notes ]] || sed 's/^/> /; s/^> $/>/' "$notes"
    printf '\n'
    printf 'Every other hot query uses an index, or reads only a tiny table or sorts a few rows (below); the summary table at the end lists them all.\n\n'
  else
    printf '**Result: every hot query uses an index; no hot query scans a large table sequentially**, neither\n'
    printf 'in the plans below (custom plans, the first executions of a prepared statement) nor in the generic\n'
    printf 'plans PostgreSQL may switch to once sqlx has executed a cached statement five times.\n\n'
  fi
  if [[ -s $small ]]; then
    printf 'Not findings: sequential scans of *small* tables, where PostgreSQL rightly prefers reading a couple of\n'
    printf 'pages to an index (they switch to the index as the table grows), and in-memory sorts of a few rows\n'
    printf '(at most %s, a page of results):\n\n' "$sort_rows_limit"
    cat "$small"
    printf '\n'
  fi
  cat <<EOF
## Setup

- Generated $(date -u '+%Y-%m-%d %H:%M UTC') from commit \`$(git rev-parse --short HEAD)\`${dirty}; seeding took
  ${seed_seconds} s and the whole run about $((SECONDS - started + 2)) s.
- Machine: ${cores} cores, ${memory} RAM, shared with other work (timings are indicative; re-run to compare).
- ${version}
- Server settings (defaults): ${settings}.
- Data, seeded set-based (\`INSERT … SELECT generate_series\`) into a scratch database migrated
  with \`migrations/*.sql\`, then \`VACUUM ANALYZE\`: ${details}.

| Table | Rows | Size (with indexes) |
|---|---:|---:|
${counts}

## Method

- Each statement is read from the source at run time (the \`sqlx\` macro in the named function;
  only the indentation of continuation lines is removed) and \`PREPARE\`d with the parameter
  types sqlx binds, so the text and the types are exactly what the service sends.
- It is executed once to warm the cache, then shown with
  \`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) EXECUTE …\`. Statements that write run inside
  \`BEGIN … ROLLBACK\`, so every plan sees the same data.
- "Generic plan" checks \`plan_cache_mode = force_generic_plan\`: sqlx caches prepared statements
  per connection, and after five executions PostgreSQL may reuse a generic plan.
- Parameters are realistic: an active API key, group \`${group}\` (10 devices, the busiest size
  the seed has; the limit is 20), one of its active members, a full batch of ${max_batch} fixes,
  the configured retention (${retention_days} days, ${audit_retention_days} for the audit log) and job batch size
  (${delete_batch}); for the admin operations an admin key, an inactive device of the group, a purge
  of devices inactive for ${purge_days} days, the member's audit trail and the heavy device.
- A plan is flagged when it scans a table of more than 5,000 rows sequentially, reads a whole index
  (an index condition without the index's leading column), or sorts more than ${sort_rows_limit} rows or on
  disk. A change that would fix it (an index, a setting) is tried in a transaction rolled back
  afterwards and shown after the query, marked *not in the code*.

EOF
  cat "$body"
  printf '## Summary\n\n'
  printf '| # | Query | Source | Index | Execution time |\n|---|---|---|---|---:|\n'
  cat "$summary"
} >"$work/doc.md"
mkdir -p docs
mv "$work/doc.md" "$out"
say "done in $((SECONDS - started)) s: $out"
