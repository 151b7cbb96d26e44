#!/usr/bin/env bash
# Regenerates docs/query-plans.md: the EXPLAIN ANALYZE plan of every hot query of the service on
# a database of production-like volume (1,000 groups, 10,000 devices, 1,000,000 locations over
# 40 days, 100 per device, plus one heavy device with 100,000 locations in all (history's page 1
# against page 500 is measured on it), 100 API keys,
# 50,000 idempotency records, 200,000 audit log entries over 120 days).
#
# Needs a reachable PostgreSQL (psql only, no cargo): DATABASE_URL names the server (default
# postgres://postgres@127.0.0.1:5432/postgres). A scratch database (pm_query_plans) is created
# there, migrated with migrations/*.sql, seeded, and dropped afterwards. Takes well under a
# minute (seeding is most of it).
#
# The statements are read from the sources at run time (the sqlx macros in src/db/*.rs, each
# from the body of its function, and the retention DELETE from cleanup_old_locations() as the
# migrations leave it), never copied by hand, so the document always shows the
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

# rust_sql FILE FUNCTION [WHICH]: the SQL of one sqlx query macro (query!, query_as!,
# query_scalar!, wherever it sits, e.g. inside observe!) in the body of FUNCTION, which runs to
# the next `fn` of the file. WHICH is a number N (the N-th macro of the function; default 1) or a
# Perl regex that exactly one of the function's statements matches (e.g. 'ORDER BY captured_at
# DESC' for the descending arm of a match on the order): a function whose statements are
# reordered, or that gains one, is still read right, and anything ambiguous or missing stops the
# script instead of explaining the wrong statement.
rust_sql() {
  perl -e '
    my ($file, $fn, $which) = @ARGV;
    open my $fh, "<", $file or die "$file: $!\n";
    my $src = do { local $/; <$fh> };
    $src =~ /\bfn\s+\Q$fn\E\s*[(<]/g or die "query-plans: no fn $fn in $file\n";
    my $from = pos $src;
    my $body = substr $src, $from;
    $body = substr $body, 0, $-[0] if $body =~ /\bfn\s+\w+\s*[(<]/;
    my @sql;
    while ($body =~ /\bsqlx::query(?:_as|_scalar)?!\s*\(\s*(?:[A-Za-z_]\w*\s*,\s*)?(?:r#"(.*?)"#|"((?:[^"\\]|\\.)*)")/gs) {
      my $sql;
      if (defined $1) { $sql = $1 }
      else { ($sql = $2) =~ s/\\\n\s*//g; $sql =~ s/\\n/\n/g; $sql =~ s/\\(["\\])/$1/g }
      push @sql, $sql;
    }
    @sql or die "query-plans: fn $fn in $file has no sqlx query macro\n";
    if ($which =~ /^\d+$/) {
      $which <= @sql or die "query-plans: fn $fn in $file has fewer than $which queries\n";
      print $sql[$which - 1];
    } else {
      my @hit = grep { /$which/s } @sql;
      @hit == 1 or die sprintf "query-plans: %d statements of fn %s in %s match /%s/ (expected one)\n",
        scalar @hit, $fn, $file, $which;
      print $hit[0];
    }' "$1" "$2" "${3:-1}" | dedent
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "query-plans: cannot read $2 from $1" >&2; kill -TERM $$; exit 1; }
}

# The statement that deletes old locations inside cleanup_old_locations() (what
# src/db/locations.rs: cleanup_old_batch calls), read from the function as the migrations left it
# in the scratch database (pg_proc), so whichever migration redefined it last is the one shown;
# its PL/pgSQL variables become the $n parameters PL/pgSQL binds them as (and `cutoff`, the
# variable migration 0013 computes from retention_days, its expression).
retention_sql() {
  sql -c "SELECT prosrc FROM pg_proc WHERE proname = 'cleanup_old_locations'" | perl -0777 -e '
    my $src = <STDIN>;
    $src =~ /^\s*((?:WITH\b.*?)?DELETE FROM locations\b.*?);/ms
      or die "query-plans: no DELETE FROM locations in cleanup_old_locations()\n";
    (my $sql = $1) =~ s/\bcutoff\b/(now() - make_interval(days => retention_days))/g;
    $sql =~ s/\bretention_days\b/\$1/g;
    $sql =~ s/\bbatch_size\b/\$2/g;
    print $sql;' | dedent
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
-- Every other device holds a device token (stored as the service stores it: SHA-256 hex).
INSERT INTO devices (device_id, display_name, group_id, platform, fcm_token, active, last_seen_at,
                     created_at, token_hash, token_issued_at)
SELECT md5('device-' || i)::uuid,
       'Phone ' || lpad(i::text, 5, '0'),
       'group-' || lpad(((i - 1) % 1000 + 1)::text, 4, '0'),
       (CASE WHEN i % 3 = 0 THEN 'ios' ELSE 'android' END)::platform,
       CASE WHEN i % 4 = 0 THEN NULL ELSE 'fcm:' || md5('token-' || i) END,
       i % 7 <> 0,
       CASE WHEN i % 70 = 0 THEN now() - interval '45 days'
            WHEN i % 7 = 0 THEN now() - interval '20 days'
            ELSE now() - make_interval(secs => i % 3600) END,
       now() - interval '90 days' + make_interval(secs => i * 60),
       CASE WHEN i % 2 = 1 THEN encode(sha256(convert_to('device-token-' || i, 'UTF8')), 'hex') END,
       CASE WHEN i % 2 = 1 THEN now() - interval '30 days' END
FROM generate_series(1, 10000) i;

-- Locations in insertion order over the last 40 days (so 10 days are past the 30-day
-- retention): :locations spread evenly, 100 per device (the n-th goes to device n * 7919 mod
-- 10,000), and, evenly interleaved with them (row m is one when m * heavy / total steps up),
-- :heavy more of device 1, so that its rows lie all over the table as they would in production.
-- Each fix captured up to 5 minutes before it was stored. Inserted into `locations`, the table
-- the service writes, so this works whether it is one table or partitioned (rows are routed).
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

# The unique index on (device_id, captured_at) every per-device query of locations walks (its
# name from the catalogue: on a partitioned table, the partitions' indexes have their own).
device_index="$(sql -c "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                        WHERE i.indrelid = 'locations'::regclass AND i.indisunique
                          AND pg_get_indexdef(i.indexrelid) ~ '\\(device_id, captured_at\\)'
                        ORDER BY c.relname LIMIT 1")"
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
# The arrays insert_batch binds, as SQL literals: fixes of the composite type `fix` (the n-th
# request's are its device's most recent max_batch_size instants, 10 s apart), and the request
# number of each (max_batch_size fixes per request).
fix_array() {
  sql -c "SELECT quote_literal(ARRAY(
            SELECT ROW(date_trunc('second', now()) - make_interval(secs => ((g - 1) % $max_batch) * 10 + 5),
                       48.85 + g * 0.0001, 2.35 + g * 0.0001, 8 + g % 5,
                       CASE WHEN g % 5 = 0 THEN NULL ELSE 35 + g * 0.1 END, g * 7 % 360, g % 3 * 1.5,
                       (ARRAY['gps', 'fused'])[1 + g % 2], (90 - g % $max_batch / 10)::int2,
                       CASE WHEN g % 10 = 0 THEN NULL ELSE 'wifi' END)::fix
            FROM generate_series(1, $1) g)::text)"
}
fix_requests() {
  sql -c "SELECT quote_literal(ARRAY(SELECT (g - 1) / $max_batch + 1 FROM generate_series(1, $1) g)::text)"
}
# A keyed upload: one request of max_batch_size fixes from the member, with a new key.
keyed_args="'{1}', '{$member}', $(fix_requests "$max_batch"), $(fix_array "$max_batch"), '{1}', '{$key_id}', '{$new_key}', '{$new_request}'"
# A group commit: as many unkeyed requests of max_batch_size fixes, from as many active devices,
# as fill one statement (ingest.max_rows_per_statement rows).
rows_per_statement="$(config max_rows_per_statement)"; rows_per_statement="${rows_per_statement:-1000}"
commit_requests=$((rows_per_statement / max_batch))
commit_devices="$(sql -c "SELECT string_agg(device_id::text, ',' ORDER BY id) FROM (SELECT id, device_id FROM devices WHERE active ORDER BY id LIMIT $commit_requests) d")"
commit_args="'{$(seq -s, 1 "$commit_requests")}', '{$commit_devices}', $(fix_requests "$rows_per_statement"), $(fix_array "$rows_per_statement"), '{}', '{}', '{}', '{}'"
insert_batch_types="int4[], uuid[], int4[], fix[], int4[], int8[], text[], text[]"
taken_record="$(sql -c "SELECT id FROM idempotency_keys WHERE key_hash = '$taken_key'")"
device_token="$(sql -c "SELECT token_hash FROM devices WHERE device_id = '$member'")"
[[ -n $device_token ]] || device_token="$(sql -c "SELECT token_hash FROM devices WHERE token_hash IS NOT NULL ORDER BY id LIMIT 1")"

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
  perl -pe 's/\x27\{("\((?:[^"\\]|\\.)*\)"(?:,"\((?:[^"\\]|\\.)*\)")*)\}\x27/my $n = () = $1 =~ m{"\(}g; sprintf "\x27{…}\x27 (%d fixes)", $n/ge;
            s/\x27\{([^}]{60,})\}\x27/my @e = split m{,}, $1; sprintf "\x27{%s,…}\x27 (%d elements)", join(",", @e[0..2]), scalar @e/ge'
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
explain find_by_token "Device token lookup" "src/db/devices.rs: find_by_token" read \
  "text" "'$device_token'" "$(rust_sql src/db/devices.rs find_by_token)" \
  "a request with device credentials (\`src/domain/credentials.rs\`) instead of an API key"

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
  "uuid, text, text, platform, text, text" "'$member', 'Phone renamed', '$group', NULL, 'fcm:new-token', NULL" \
  "$(rust_sql src/db/devices.rs upsert)" "the \`ON CONFLICT … DO UPDATE\` path"
explain upsert_new "Upsert, first registration of a new device" "src/db/devices.rs: upsert" write \
  "uuid, text, text, platform, text, text" "'$new_device', 'New phone', '$group', 'ios', NULL, '$new_key'" \
  "$(rust_sql src/db/devices.rs upsert)" "the plain insert path"

section "Group listing"
explain list_active_in_group "Active members with their last location" \
  "src/db/devices.rs: list_active_in_group" read "text" "'$group'" \
  "$(rust_sql src/db/devices.rs list_active_in_group)" \
  "through the \`devices_with_last_location\` view (one \`LIMIT 1\` probe per member)"

section "Location upload (group commit)" \
  "\`src/infra/ingest.rs\`: writer tasks take the uploads waiting in the queue and store them with ONE statement, \`insert_batch\` (it also claims the \`Idempotency-Key\` of keyed uploads), then \`set_answers\` stores the claimed keys' answers in the same transaction; a replayed key reads its record with \`stored_response\`; \`touch_last_seen\` runs afterwards, off the request path."
explain insert_batch_keyed "Keyed upload of $max_batch fixes" "src/db/locations.rs: insert_batch" write \
  "$insert_batch_types" "$keyed_args" "$(rust_sql src/db/locations.rs insert_batch)" \
  "one request with an \`Idempotency-Key\` (a new one: claimed, then its fixes inserted), alone in its statement, the quiet-server case"
explain insert_batch "Group-committed insert of $commit_requests uploads ($rows_per_statement fixes)" "src/db/locations.rs: insert_batch" write \
  "$insert_batch_types" "$commit_args" "$(rust_sql src/db/locations.rs insert_batch)" \
  "a full statement (\`ingest.max_rows_per_statement\` = $rows_per_statement): $commit_requests unkeyed uploads of $max_batch fixes from $commit_requests devices"
explain set_answers "Idempotency answer stored" "src/db/idempotency.rs: set_answers" write \
  "int8[], jsonb[]" "'{$taken_record}', ARRAY['{\"success\": true, \"processed_count\": $max_batch}']::jsonb[]" \
  "$(rust_sql src/db/idempotency.rs set_answers)"
explain stored_response "Idempotency record of a taken key (replay)" "src/db/idempotency.rs: stored_response" \
  read "int8, text" "$key_id, '$taken_key'" "$(rust_sql src/db/idempotency.rs stored_response)" \
  "runs only when the upload's key is held by a live record"
explain touch_last_seen "Device last-seen bookkeeping" "src/db/devices.rs: touch_last_seen" write \
  "uuid[]" "'{$commit_devices}'" "$(rust_sql src/db/devices.rs touch_last_seen)" \
  "the devices of one group-committed statement"

# ---------------------------------------------------------------------------------------------
# History (src/domain/history.rs): pages, counts, downloads; page 1 against page 500
# ---------------------------------------------------------------------------------------------
# history.rs turns `from`/`to` (inclusive, milliseconds) into the bounds [lower, upper) that
# db::locations::page binds: lower = from, upper = to + 1 µs on the first page; a desc cursor
# makes upper the captured_at of the previous page's last fix (lower stays `from`). It asks for
# limit + 1 rows: the extra one only tells whether there is a next page.
page_limit=$((100 + 1))
hist_to="$(sql -c "SELECT date_trunc('milliseconds', now())")"
hist_upper="$(sql -c "SELECT '$hist_to'::timestamptz + interval '1 microsecond'")"
hist_week="$(sql -c "SELECT '$hist_to'::timestamptz - interval '7 days'")"
# The whole trail of the heavy device: from midnight of the day of its oldest fix.
hist_from="$(sql -c "SELECT date_trunc('day', min(captured_at)) FROM locations WHERE device_id = '$heavy'")"
week_count="$(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM locations WHERE device_id = '$heavy' AND captured_at >= '$hist_week' AND captured_at < '$hist_upper'")"
page_desc_sql="$(rust_sql src/db/locations.rs page 'ORDER BY captured_at DESC')"
page_asc_sql="$(rust_sql src/db/locations.rs page 'ORDER BY captured_at(?!\s+DESC)\s+LIMIT')"
history_types="uuid, timestamptz, timestamptz, int8"

section "History" \
  "\`GET /api/v1/devices/{id}/locations\` (\`src/domain/history.rs\`), after the access check (\`find\`, above). Shown for the heavy device \`$heavy_name\` ($heavy_locations_n fixes) over the last 7 days ($week_count fixes): \`from\` = $hist_week, \`to\` = $hist_to, so the bounds are \`[from, to + 1 µs)\`; a page asks for \`limit + 1\` = $page_limit rows (the extra row only says whether a next page exists)."
explain page_desc "History page, newest first (the default order)" "src/db/locations.rs: page (Order::Desc)" read \
  "$history_types" "'$heavy', '$hist_week', '$hist_upper', $page_limit" "$page_desc_sql" \
  "first page, default page size of 100"
explain page_asc "History page, oldest first" "src/db/locations.rs: page (Order::Asc)" read \
  "$history_types" "'$heavy', '$hist_week', '$hist_upper', $page_limit" "$page_asc_sql" \
  "\`order=asc\`, first page"
explain count_range "Fixes in the range (before simplifying)" "src/db/locations.rs: count_range" read \
  "uuid, timestamptz, timestamptz" "'$heavy', '$hist_week', '$hist_upper'" \
  "$(rust_sql src/db/locations.rs count_range)" \
  "\`tolerance=…\`: the range is counted first, to refuse one too large to simplify"
NO_SORT=1 SETUP="SET LOCAL enable_sort = off" explain stream_range "Download (GeoJSON, GPX) of the whole trail, newest first" \
  "src/db/locations.rs: stream_range (Order::Desc)" read "uuid, timestamptz, timestamptz" \
  "'$heavy', '$hist_from', '$hist_upper'" "$(rust_sql src/db/locations.rs stream_range 'ORDER BY captured_at DESC')" \
  "\`Accept: application/geo+json\` or \`application/gpx+xml\`: streamed, so its order must come from the index, never a sort"

# Page 1 against page 500 of the heavy device's whole trail, newest first: page 500's cursor is
# the captured_at of the 49,900th newest fix (the last one of page 499), which becomes `upper`.
skip=$(( (500 - 1) * (page_limit - 1) ))
page500_upper="$(sql -c "SELECT captured_at FROM locations WHERE device_id = '$heavy' ORDER BY captured_at DESC OFFSET $((skip - 1)) LIMIT 1")"
newer="$(sql -c "SELECT count(*) FROM locations WHERE device_id = '$heavy' AND captured_at >= '$page500_upper'")"
# The keyset page 500 starts exactly where OFFSET 49,900 would: same first row.
same_start="$(sql -c "SELECT (SELECT id FROM locations WHERE device_id = '$heavy' AND captured_at >= '$hist_from' AND captured_at < '$page500_upper' ORDER BY captured_at DESC LIMIT 1)
                           = (SELECT id FROM locations WHERE device_id = '$heavy' AND captured_at >= '$hist_from' AND captured_at < '$hist_upper' ORDER BY captured_at DESC OFFSET $skip LIMIT 1)")"
[[ $newer == "$skip" && $same_start == t ]] || { echo "query-plans: page 500's cursor does not start after $skip fixes ($newer, $same_start)" >&2; exit 1; }
section "History: page 1 vs page 500" \
  "Keyset pagination: page N is one range scan that starts at its cursor, so it costs what page 1 costs. The same statement (\`page\`, newest first, $page_limit rows) over the whole trail of \`$heavy_name\` ($heavy_locations_n fixes among $(sql -c "SELECT to_char(count(*), 'FM9,999,999') FROM locations") rows; \`from\` = $hist_from, \`to\` = $hist_to): page 1 has no cursor (\`upper\` = \`to\` + 1 µs); page 500's cursor is the \`captured_at\` of the device's $(commas <<<"$skip")th newest fix (the last of page 499), computed in SQL, which becomes \`upper\`. Checked: exactly $(commas <<<"$newer") fixes are at or after it, and page 500's first row is the row \`OFFSET $(commas <<<"$skip")\` would give."
explain page_1 "History page 1 (no cursor)" "src/db/locations.rs: page (Order::Desc)" read \
  "$history_types" "'$heavy', '$hist_from', '$hist_upper', $page_limit" "$page_desc_sql" \
  "\`upper\` = \`to\` + 1 µs"
p1_plan=$last_plan p1_ms=$last_exec_ms
explain page_500 "History page 500 (cursor after $(commas <<<"$skip") fixes)" "src/db/locations.rs: page (Order::Desc)" read \
  "$history_types" "'$heavy', '$hist_from', '$page500_upper', $page_limit" "$page_desc_sql" \
  "\`upper\` = the cursor: \`captured_at\` of the $(commas <<<"$skip")th newest fix"
p500_plan=$last_plan p500_ms=$last_exec_ms

# For contrast only: the same page reached with OFFSET, derived from the same statement text.
offset_sql="$(perl -0777 -pe 's/\bLIMIT \$4\s*\z/OFFSET \$5 LIMIT \$4/ or die "query-plans: page does not end with LIMIT \$4\n"' <<<"$page_desc_sql")"
say "explaining page_offset (contrast)"
offset_plan="$(sql <<SQL
PREPARE page_offset ($history_types, int8) AS
$offset_sql;
\\o /dev/null
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) EXECUTE page_offset ('$heavy', '$hist_from', '$hist_upper', $page_limit, $skip);
\\o
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) EXECUTE page_offset ('$heavy', '$hist_from', '$hist_upper', $page_limit, $skip);
SQL
)"
offset_ms="$(ms 'Execution Time' <<<"$offset_plan")"
# "hit+read" of a plan's top node (its first Buffers line: the whole execution, planning apart).
buffers_of() { perl -ne 'if (/Buffers: shared (.*)/) { my $t = 0; $t += $1 while /(?:hit|read)=(\d+)/g; print $t; exit }'; }
# What a plan scans, as one phrase: each scan kind with its index and relation (several
# partitions, if the table is partitioned, are counted), whether it sorts, and the rows read.
scans_of() {
  perl -ne '
    if (/((?:Index Only Scan|Index Scan|Bitmap Heap Scan|Seq Scan)(?: Backward)?)(?: using (\S+))? on (\S+)(?: \w+)? \(actual time=\S+ rows=(\d+) loops=(\d+)\)/) {
      my $k = $2 ? "$1 on $2" : "$1 of $3"; $n{$k}++; push @k, $k if $n{$k} == 1; $rows += $4 * $5; $loops = $5 }
    $removed += $1 * ($loops // 1) if /Rows Removed by (?:Index Recheck|Filter): (\d+)/;
    $sort = 1 if /^\s*(?:->\s+)?(?:Incremental )?Sort /;
    END { my $read = ($rows // 0) + ($removed // 0); 1 while $read =~ s/^(\d+)(\d{3})/$1,$2/; 1 while $removed =~ s/^(\d+)(\d{3})/$1,$2/;
          print join(" + ", map { $n{$_} > 1 ? "$n{$_} × $_" : $_ } @k), $sort ? ", then a Sort" : ", no Sort",
                ", $read rows read", $removed ? " ($removed of them removed by the filter)" : "" }'
}
# sqlx caches the statement per connection; after 5 executions PostgreSQL may switch to the
# generic plan, which cannot see the bounds. Measure both pages with it too.
generic_analyze() {
  sql <<SQL
PREPARE g ($history_types) AS
$page_desc_sql;
SET plan_cache_mode = force_generic_plan;
\\o /dev/null
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) EXECUTE g ($1);
\\o
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) EXECUTE g ($1);
SQL
}
say "explaining page 1 and page 500 with the generic plan"
g1_plan="$(generic_analyze "'$heavy', '$hist_from', '$hist_upper', $page_limit")"
g500_plan="$(generic_analyze "'$heavy', '$hist_from', '$page500_upper', $page_limit")"
g1_ms="$(ms 'Execution Time' <<<"$g1_plan")" g500_ms="$(ms 'Execution Time' <<<"$g500_plan")"
g1_buf="$(buffers_of <<<"$g1_plan")" g500_buf="$(buffers_of <<<"$g500_plan")"
g1_scan="$(scans_of <<<"$g1_plan")" g500_scan="$(scans_of <<<"$g500_plan")"
p1_buf="$(buffers_of <<<"$p1_plan")" p500_buf="$(buffers_of <<<"$p500_plan")" offset_buf="$(buffers_of <<<"$offset_plan")"
p1_scan="$(scans_of <<<"$p1_plan")" p500_scan="$(scans_of <<<"$p500_plan")" offset_scan="$(scans_of <<<"$offset_plan")"
{
  printf '**Not what the service does — for contrast only:** the same page reached with `OFFSET %s` (the statement above with `OFFSET $5` added; no code runs this):\n\n' "$(commas <<<"$skip")"
  printf '```sql\n%s\n```\n\n' "$offset_sql"
  printf 'Run as `EXECUTE page_offset (%s)`:\n\n' "'$heavy', '$hist_from', '$hist_upper', $page_limit, $skip"
  printf '```\n%s\n```\n\n' "$offset_plan"
  printf 'The same two pages with the *generic* plan (`plan_cache_mode = force_generic_plan`: what a connection may run once sqlx has executed the cached statement five times; it cannot see the bounds):\n\n'
  printf '<details><summary>Generic plans of page 1 and page 500</summary>\n\nPage 1:\n\n```\n%s\n```\n\nPage 500:\n\n```\n%s\n```\n\n</details>\n\n' "$g1_plan" "$g500_plan"
  printf '| Page | Plan | Execution time | Buffers (hit + read) | Scan |\n|---|---|---:|---:|---|\n'
  printf '| 1 | custom | %s ms | %s | %s |\n| 500 | custom | %s ms | %s | %s |\n' "$p1_ms" "$p1_buf" "$p1_scan" "$p500_ms" "$p500_buf" "$p500_scan"
  printf '| 1 | generic | %s ms | %s | %s |\n| 500 | generic | %s ms | %s | %s |\n' "$g1_ms" "$g1_buf" "$g1_scan" "$g500_ms" "$g500_buf" "$g500_scan"
  printf '| 500 via `OFFSET %s` (**not what the service does**) | custom | %s ms | %s | %s |\n\n' "$(commas <<<"$skip")" "$offset_ms" "$offset_buf" "$offset_scan"
  printf '**Conclusion.** Page 1: %s ms, %s buffers; page 500: %s ms, %s buffers; both one %s (generic plan, %s: page 1 %s ms / %s buffers, page 500 %s ms / %s buffers).\n' \
    "$p1_ms" "$p1_buf" "$p500_ms" "$p500_buf" "$(sed 's/, no Sort.*//' <<<"$p1_scan")" "$(sed 's/, no Sort.*//' <<<"$g1_scan")" "$g1_ms" "$g1_buf" "$g500_ms" "$g500_buf"
  printf 'The cost does not grow with the page number, because the cursor becomes the scan'\''s bound; the same page reached with OFFSET reads every skipped row: %s ms, %s buffers.\n\n' \
    "$offset_ms" "$offset_buf"
} >>"$body"

section "Device deactivation"
explain deactivate "Soft delete" "src/db/devices.rs: deactivate" write "uuid" "'$member'" \
  "$(rust_sql src/db/devices.rs deactivate)"

section "Data export (privacy)" \
  "\`src/domain/privacy.rs: export\`: the device is read and the export audited in one transaction; then its locations are streamed, in \`captured_at\` order, from a read-only REPEATABLE READ snapshot and written out as they arrive (never collected). Shown for \`$member_name\` ($member_locations locations, like every seeded device but one) and for the heavy device \`$heavy_name\` ($heavy_locations_n locations)."
explain find "Device record" "src/db/devices.rs: find" read "uuid" "'$member'" \
  "$(rust_sql src/db/devices.rs find)" "also the first step of a reactivation and of every history request (access check)"
explain insert "Audit entry" "src/db/audit.rs: insert" write "int8, uuid, text, text, text, jsonb, text" \
  "$admin_key_id, NULL, 'device.data_export', 'device', '$member', '{}', '203.0.113.7'" \
  "$(rust_sql src/db/audit.rs insert)" \
  "every audited operation (export, erasure, reactivation, purge) writes one in its transaction" \
  "none needed (an insert; the foreign-key check of \`api_key_id\` probes \`pk_api_keys\`)"
# The export runs in a transaction where src/db/locations.rs: prefer_index_order has set
# enable_sort = off; explain it the same way.
NO_SORT=1 SETUP="SET LOCAL enable_sort = off" explain stream_for_device "Export of a typical device's locations, oldest first" \
  "src/db/locations.rs: stream_for_device" read "uuid" "'$member'" \
  "$(rust_sql src/db/locations.rs stream_for_device)" \
  "$member_locations locations; streamed, in the export's transaction (\`SET LOCAL enable_sort = off\`, \`prefer_index_order\`), so the order comes from \`$device_index\` (device, capture time), without a sort"
stream_problem=$last_problem
NO_SORT=1 SETUP="SET LOCAL enable_sort = off" explain stream_for_device_heavy "Export of the heavy device's locations, oldest first" \
  "src/db/locations.rs: stream_for_device" read "uuid" "'$heavy'" \
  "$(rust_sql src/db/locations.rs stream_for_device)" \
  "the same statement for \`$heavy_name\` and its $heavy_locations_n locations"
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
explain stats "Dashboard figures" "src/db/devices.rs: stats" read "" "" "$(rust_sql src/db/devices.rs stats)" \
  "\`GET /admin/stats\`: exact device counts, group figures from the materialized view, the location count estimated"
if [[ -n $last_problem ]]; then
  stats_plan=$last_plan stats_ms=$last_exec_ms
  cat >>"$notes" <<EOF

**The dashboard figures.** \`stats\` ($stats_ms ms here): ${last_problem}.
EOF
  if [[ -n $(big_only "$(seq_scans_in <<<"$stats_plan")") ]] \
     && ! sql -c "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'locations'::regclass" | grep -q '(created_at)'; then
    cat >>"$notes" <<EOF
The sequential scan of \`locations\` is \`min(created_at)\`/\`max(created_at)\`: no index of
\`locations\` starts with \`created_at\` (migration 0010 replaced \`idx_locations_created_at\` with
\`idx_locations_captured_at\`), so both aggregates read the whole table. Fix (a query change, not
applied): report the oldest and newest *capture* times, \`min(captured_at)\`/\`max(captured_at)\`,
which \`idx_locations_captured_at\` answers with one index probe each (or index \`created_at\` again).
EOF
  fi
  cat >>"$notes" <<EOF
The device counts are exact on purpose (the table is small): no index makes an exact count of a
whole table cheap (an index-only scan still reads every entry); if devices grow, sum
\`group_member_counts\` instead, as the statement already does for the group figures.
EOF
fi
audit_types="text, text, text, int8, timestamptz, timestamptz, int8, int8"
explain list "Audit log, first page" "src/db/audit.rs: list" read "$audit_types" \
  "NULL, NULL, NULL, NULL, NULL, NULL, NULL, 50" "$(rust_sql src/db/audit.rs list)" \
  "\`GET /admin/audit\` without filters, the default page size of 50"
explain list_filtered "Audit log of one device, second page" "src/db/audit.rs: list" read "$audit_types" \
  "NULL, NULL, '$member', NULL, NULL, NULL, $cursor, 50" "$(rust_sql src/db/audit.rs list)" \
  "\`GET /admin/audit?resource_id=…&cursor=…\`: the entries of \`$member_name\` ($member_audit in all) older than the cursor of the first page"
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
  "cleanup_old_locations() (as the migrations define it last)" write "int4, int4" \
  "$retention_days, $delete_batch" "$(retention_sql)" \
  "PL/pgSQL binds \`retention_days\` and \`batch_size\` as the parameters \$1 and \$2"
explain delete_expired "Idempotency expiry batch" "src/db/idempotency.rs: delete_expired" write \
  "int8" "$delete_batch" "$(rust_sql src/db/idempotency.rs delete_expired)"
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
SELECT '| `' || t || '` | ' || to_char(c, 'FM9,999,999,999') || ' | ' || pg_size_pretty((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(t::regclass))) || ' |'
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
