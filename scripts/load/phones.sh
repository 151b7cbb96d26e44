#!/usr/bin/env bash
# Phones benchmark (issue 19): how many phones of the real Android app this machine serves.
#
#   scripts/load/phones.sh [--steps 50000,100000,200000] [--maps stream,poll]
#
# Seeds a fresh database with the largest step's phones (groups of 10, each device with a device
# token) and LOAD_LOCATIONS fixes, creates one `app` key (the one every install ships), then for
# every step and map mode starts the release service (a second replica when the open streams
# would not fit one process's descriptors) and runs loadgen/ (the phone simulator: see its
# doc comment for the behaviour) for PHONES_DURATION seconds. Measured per run: upload, listing
# and registration latency and errors (loadgen), live events received, the service's fan-out
# latency (its sse_fanout_latency_seconds histogram), CPU core-seconds per second of the
# service, PostgreSQL and the generator (/proc), WAL bytes per second (pg_current_wal_lsn),
# the service's peak RSS. A run passes with p99 < 100 ms for uploads and listings and no errors.
#
# Writes the section between the `phones` markers of LOAD_REPORT (docs/load-test-results.md),
# raw outputs in LOAD_OUT.
#
# Knobs: PHONES_DURATION=120 PHONES_WARMUP=30 LOAD_LOCATIONS=1000000 LOAD_DB_POOL=20
#        PHONES_STREAMS_PER_REPLICA=15000 PM_BIN LOAD_BUILD=auto|never LOAD_KEEP_DB=1
#        LOAD_CAPACITY_INPUTS=docs/capacity-inputs.json (the capacity model's inputs, updated)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

steps="50000,100000,200000"
maps="stream,poll"
while (($#)); do
  case "$1" in
    --steps) steps="$2"; shift ;;
    --maps) maps="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "phones.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
IFS=, read -r -a step_list <<<"$steps"
IFS=, read -r -a map_list <<<"$maps"
max_phones=0
for n in "${step_list[@]}"; do ((n > max_phones)) && max_phones=$n; done

PHONES_DURATION="${PHONES_DURATION:-120}"
PHONES_WARMUP="${PHONES_WARMUP:-30}"
LOAD_LOCATIONS="${LOAD_LOCATIONS:-1000000}"
LOAD_DB_POOL="${LOAD_DB_POOL:-20}"
PHONES_STREAMS_PER_REPLICA="${PHONES_STREAMS_PER_REPLICA:-15000}"
LOAD_REPORT="${LOAD_REPORT:-docs/load-test-results.md}"
LOAD_BUILD="${LOAD_BUILD:-auto}"
server_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base_url="${server_url%/*}"
run_id="$(date -u +%Y%m%d%H%M%S)_$$"
db="pm_phones_${run_id}"
db_url="$base_url/$db"
out="${LOAD_OUT:-/tmp/pm-phones-$run_id}"
mkdir -p "$out"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'phones.sh: %s\n' "$*" >&2; exit 1; }
psql_server() { psql -X -q -At -v ON_ERROR_STOP=1 "$server_url" "$@"; }
psql_db() { psql -X -q -At -v ON_ERROR_STOP=1 "$db_url" "$@"; }

server_pids=() db_created=0
stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  server_pids=()
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_servers
  if ((db_created)) && [[ -z "${LOAD_KEEP_DB:-}" ]]; then
    psql_server -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  ((rc)) && echo "phones.sh: failed (exit $rc); raw outputs in $out" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit="$(ulimit -n)"
bin="${PM_BIN:-$root/target/release/phone-manager}"
gen="$root/target/release/loadgen"
if [[ "$LOAD_BUILD" != never ]]; then
  say "building the release service and loadgen"
  [[ -n "${PM_BIN:-}" ]] || cargo build --release --bin phone-manager >&2
  cargo build --release -p loadgen >&2
fi
[[ -x "$bin" && -x "$gen" ]] || die "missing $bin or $gen"

# PHONES_REPORT_ONLY=1 LOAD_OUT=<an earlier run's outputs>: only (re)write the section from its
# results.tsv (e.g. after appending another run's rows).
if [[ -n "${PHONES_REPORT_ONLY:-}" ]]; then
  map_list=() step_list=()
  db_size="${PHONES_DB_SIZE:-as in the run log}"
fi

# ---------------------------------------------------------------------------------------------
# Database: the largest step's phones, each with a device token the generator knows.
# ---------------------------------------------------------------------------------------------
export PM_CONFIG_DIR=/nonexistent
pm() { PM__DATABASE__URL="$db_url" PM__LOGGING__LEVEL=warn "$bin" "$@"; }
if [[ -z "${PHONES_REPORT_ONLY:-}" ]]; then
say "creating $db: $max_phones phones in $((max_phones / 10)) groups, $LOAD_LOCATIONS fixes"
psql_server -c "CREATE DATABASE $db" >/dev/null
db_created=1
pm migrate >"$out/migrate.log" 2>&1 || { cat "$out/migrate.log" >&2; die "migrate failed"; }
seed_started=$SECONDS
psql_db -v groups="$((max_phones / 10))" -v per_group=10 -v locations="$LOAD_LOCATIONS" -v days=6 \
  -f scripts/load/seed.sql >/dev/null
# Device tokens derived from the device id (`pmd_` + base64url of 32 bytes), stored hashed as
# the service stores them.
psql_db <<'SQL' >/dev/null
UPDATE devices SET token_hash = encode(sha256(convert_to(
  'pmd_' || translate(rtrim(encode(sha256(convert_to('tok-' || device_id, 'UTF8')), 'base64'), '='), '+/', '-_'),
  'UTF8')), 'hex');
VACUUM (ANALYZE) devices;
SQL
psql_db -F $'\t' -c "
  SELECT device_id, group_id, display_name,
         'pmd_' || translate(rtrim(encode(sha256(convert_to('tok-' || device_id, 'UTF8')), 'base64'), '='), '+/', '-_')
  FROM devices ORDER BY id" >"$out/phones.tsv"
say "seeded in $((SECONDS - seed_started)) s"
app_key="$(pm keys create --name phones --scope app --json 2>"$out/key.log" | sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')"
[[ -n "$app_key" ]] || { cat "$out/key.log" >&2; die "could not create the app key"; }
db_size="$(psql_db -c "SELECT pg_size_pretty(pg_database_size(current_database()))")"
fi

# ---------------------------------------------------------------------------------------------
# Sampling helpers
# ---------------------------------------------------------------------------------------------
ticks_of() { # pid... -> summed utime+stime ticks
  local t=0 pid stat
  local -a f
  for pid in "$@"; do
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    read -r -a f <<<"${stat##*) }"
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
postgres_ticks() { # every postgres process (backends, WAL writer, checkpointer, autovacuum)
  local t=0 d stat
  local -a f
  for d in /proc/[0-9]*; do
    { read -r stat <"$d/stat"; } 2>/dev/null || continue
    [[ "$stat" == *"(postgres)"* ]] || continue
    read -r -a f <<<"${stat##*) }"
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
wal_lsn() { psql_db -c "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"; }
hz="$(getconf CLK_TCK)"

start_server() { # port log
  PM__SERVER__HOST=127.0.0.1 PM__SERVER__PORT="$1" \
    PM__SERVER__MAX_CONCURRENT_REQUESTS=25000 \
    PM__SERVER__HEADER_READ_TIMEOUT_SECS=60 \
    PM__SERVER__SHUTDOWN_GRACE_SECS=5 \
    PM__DATABASE__URL="$db_url" PM__DATABASE__MAX_CONNECTIONS="$LOAD_DB_POOL" \
    PM__SECURITY__RATE_LIMIT_PER_MINUTE=100000000 \
    PM__SECURITY__ADMIN_RATE_LIMIT_PER_MINUTE=100000000 \
    PM__JOBS__ENABLED=false PM__LOGGING__LEVEL=warn \
    "$bin" serve >"$2" 2>&1 &
  server_pids+=($!)
  for ((i = 0; i < 600; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/api/health/ready" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$2" >&2
  die "the server on port $1 was not ready after 60 s"
}

# p99 of a Prometheus histogram summed over the replicas' /metrics, in ms.
histogram_p99() { # name ports...
  local name="$1"; shift
  local p
  for p in "$@"; do curl -s "http://127.0.0.1:$p/metrics"; done | awk -v n="${name}_bucket" '
    index($0, n "{") == 1 { match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      c[le] += $NF; if (!(le in seen)) { seen[le] = 1; order[++k] = le } }
    END { total = c["+Inf"]; if (total == 0) { print "NA"; exit }
      for (i = 1; i <= k; i++) if (order[i] != "+Inf") les[++m] = order[i] + 0
      asort(les); for (i = 1; i <= m; i++) { key = les[i]; for (l in c) if (l != "+Inf" && l + 0 == key) v = c[l]
        if (v >= 0.99 * total) { printf "%.1f\n", key * 1000; exit } }
      print ">" les[m] * 1000 }'
}

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
results="$out/results.tsv"
[[ -n "${PHONES_REPORT_ONLY:-}" ]] || : >"$results"
for map in "${map_list[@]}"; do
  for n in "${step_list[@]}"; do
    streams=0
    [[ "$map" != none ]] && streams=$(((n + 9) / 10))
    replicas=$(((streams + PHONES_STREAMS_PER_REPLICA - 1) / PHONES_STREAMS_PER_REPLICA))
    ((replicas < 1)) && replicas=1
    ((streams / replicas + 1024 < fd_limit)) || die "ulimit -n $fd_limit is too low for $streams connections"
    say "run: $n phones, map $map ($streams map-open), $replicas replica(s), ${PHONES_DURATION}s"
    ports=() addrs=""
    for ((r = 0; r < replicas; r++)); do
      port=$((18300 + r))
      start_server "$port" "$out/server-$map-$n-$r.log"
      ports+=("$port")
      addrs+="${addrs:+,}127.0.0.1:$port"
      echo 5 >"/proc/${server_pids[-1]}/clear_refs" 2>/dev/null || true
    done
    # One generator process per replica's share of streams (descriptors are per process).
    gens=$replicas
    gen_pids=()
    for ((g = 0; g < gens; g++)); do
      "$gen" --addr "$addrs" --key "$app_key" --phones-file "$out/phones.tsv" --phones "$n" \
        --shard "$g/$gens" --map "$map" --duration "$PHONES_DURATION" --warmup "$PHONES_WARMUP" \
        >"$out/gen-$map-$n-$g.json" 2>"$out/gen-$map-$n-$g.err" &
      gen_pids+=($!)
    done
    # The measured window: CPU and WAL from the end of the warm-up to the end of the run.
    sleep "$PHONES_WARMUP"
    srv0="$(ticks_of "${server_pids[@]}")" pg0="$(postgres_ticks)" gen0="$(ticks_of "${gen_pids[@]}")"
    wal0="$(wal_lsn)" t0=$(date +%s.%N)
    sleep $((PHONES_DURATION - PHONES_WARMUP - 1))
    srv1="$(ticks_of "${server_pids[@]}")" pg1="$(postgres_ticks)" gen1="$(ticks_of "${gen_pids[@]}")"
    wal1="$(wal_lsn)" t1=$(date +%s.%N)
    rss=0
    for pid in "${server_pids[@]}"; do
      r="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")"
      rss=$((rss + r))
    done
    for pid in "${gen_pids[@]}"; do wait "$pid" || die "loadgen failed: $(cat "$out"/gen-"$map"-"$n"-*.err)"; done
    fanout="$(histogram_p99 sse_fanout_latency_seconds "${ports[@]}")"
    stop_servers
    secs="$(echo "$t1 - $t0" | bc -l)"
    python3 - "$results" "$map" "$n" "$replicas" "$secs" "$hz" "$((srv1 - srv0))" "$((pg1 - pg0))" \
      "$((gen1 - gen0))" "$((wal1 - wal0))" "$rss" "$fanout" "$out"/gen-"$map"-"$n"-*.json <<'PY'
import json, sys
(results, mp, n, replicas, secs, hz, srv, pg, gen, wal, rss, fanout), files = sys.argv[1:13], sys.argv[13:]
secs, hz = float(secs), int(hz)
srv, pg, gen, wal = int(srv), int(pg), int(gen), int(wal)
parts = [json.load(open(f)) for f in files]
def merged(kind_name):
    kind = kind_name
    # Shards run the same schedule over disjoint phones: counts add up; the p99 shown is the
    # largest shard's (an upper bound of the merged p99).
    ks = [p[kind] for p in parts]
    return {"ok": sum(k["ok"] for k in ks), "errors": sum(k["errors"] for k in ks),
            "rate": sum(k["rate_per_s"] for k in ks), "p99": max(k["p99_ms"] for k in ks),
            "kinds": {f"{kind} {e}": sum(k["error_kinds"].get(e, 0) for k in ks) for k in ks for e in k["error_kinds"]}}
up, ls, rg, so = merged("upload"), merged("list"), merged("register"), merged("stream_open")
events = {}
for p in parts:
    for k, v in p["events"].items():
        events[k] = events.get(k, 0) + v
measured = parts[0]["measured_seconds"]
errors = up["errors"] + ls["errors"] + rg["errors"] + so["errors"]
lag = max(p["lag_p99_ms"] for p in parts)
ok = errors == 0 and up["p99"] < 100 and (mp != "poll" or ls["p99"] < 100)
row = dict(map=mp, phones=int(n), replicas=int(replicas), upload_rate=up["rate"], upload_p99=up["p99"],
           list_rate=ls["rate"], list_p99=ls["p99"], register_rate=rg["rate"], register_p99=rg["p99"],
           streams=sum(p["streams_open"] for p in parts), stream_open_p99=so["p99"],
           location_events_per_s=events.get("location", 0) / measured, resyncs=events.get("resync", 0),
           fanout_p99=fanout, errors=errors, error_kinds={**up["kinds"], **ls["kinds"], **rg["kinds"], **so["kinds"]},
           lag_p99=lag, cpu_service=srv / hz / secs, cpu_loadgen=gen / hz / secs,
           # PostgreSQL's processes summed at both ends: backends that exited in between (a
           # pool that dropped connections) make it meaningless, shown as NA.
           cpu_postgres=(pg / hz / secs) if pg >= 0 else None,
           wal_per_s=wal / secs, rss_mib=int(rss) / 1024, passed=ok)
with open(results, "a") as f:
    f.write(json.dumps(row) + "\n")
print(json.dumps(row))
PY
  done
done

# ---------------------------------------------------------------------------------------------
# Report section
# ---------------------------------------------------------------------------------------------
section="$out/section.md"
python3 - "$results" "$max_phones" "$LOAD_LOCATIONS" "$db_size" "$PHONES_DURATION" "$PHONES_WARMUP" "$steps" "$maps" >"$section" <<'PY'
import json, sys, datetime, subprocess
results, max_phones, locs, size, dur, warm, steps, maps = sys.argv[1:9]
rows = [json.loads(l) for l in open(results)]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print("## Phones (issue 19)\n")
print(f"Generated by `scripts/load/phones.sh --steps {steps} --maps {maps}` on "
      f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}; raw outputs and the "
      "generator's JSON are kept in the run's LOAD_OUT.\n")
print(f"Data: {max_phones} phones in groups of 10, each with a device token, one `app` key; {locs} fixes "
      f"seeded ({size}). Each run: {dur} s, the first {warm} s (streams and pollers connecting) left out. "
      "Phones follow the real app (loadgen/src/main.rs): every 15 min a burst of 15 single uploads over a "
      "fresh connection, 10 % of phones with the map open (polling the listing every 15 s over a kept-alive "
      "connection, or one live stream), re-registration once a day. CPU in cores (core-seconds per second "
      "of the measured window): service (all replicas), PostgreSQL (all its processes), generator. "
      "Pass: no errors, p99 < 100 ms for uploads and listings.\n")
print("| map | phones | replicas | uploads/s | upload p99 ms | listings/s | listing p99 ms | streams | location events/s | fan-out p99 ms | resyncs | errors | generator lag p99 ms | CPU service | CPU PostgreSQL | CPU generator | WAL/s | RSS MiB | pass |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    print(f"| {r['map']} | {r['phones']:,} | {r['replicas']} | {r['upload_rate']:,.0f} | {r['upload_p99']:.1f} | "
          f"{r['list_rate']:,.0f} | {r['list_p99']:.1f} | {r['streams']:,} | {r['location_events_per_s']:,.0f} | "
          f"{r['fanout_p99']} | {r['resyncs']} | {r['errors']} | {r['lag_p99']:.1f} | {r['cpu_service']:.2f} | "
          f"{'NA' if r['cpu_postgres'] is None else format(r['cpu_postgres'], '.2f')} | {r['cpu_loadgen']:.2f} | {r['wal_per_s']/1e6:.2f} MB | {r['rss_mib']:.0f} | "
          f"{'yes' if r['passed'] else 'no'} |")
errs = [r for r in rows if r["errors"]]
for r in errs:
    print(f"\nErrors at {r['phones']:,} phones ({r['map']}): " + ", ".join(f"{k}: {v}" for k, v in r["error_kinds"].items()))
for mp in sorted({r["map"] for r in rows}):
    passed = [r["phones"] for r in rows if r["map"] == mp and r["passed"]]
    print(f"\nLargest passing N with map `{mp}`: {max(passed):,} phones" if passed else f"\nNo passing N with map `{mp}`.")
PY
scripts/load/put-section.py phones "$section" "$LOAD_REPORT"
cat "$section"

# The capacity model's inputs (scripts/load/capacity.py): the largest passing run, streams first.
python3 - "$results" "${LOAD_CAPACITY_INPUTS:-docs/capacity-inputs.json}" <<'PY'
import json, os, sys, datetime
results, path = sys.argv[1:3]
rows = [json.loads(l) for l in open(results)]
passed = sorted((r for r in rows if r["passed"]), key=lambda r: (r["map"] == "stream", r["phones"]))
if not passed:
    sys.exit(0)
best = passed[-1]
inputs = json.load(open(path)) if os.path.exists(path) else {}
inputs.update({k: best[k] for k in ("phones", "map", "upload_rate", "cpu_service", "cpu_postgres", "wal_per_s", "rss_mib")})
inputs["source"] = f"scripts/load/phones.sh, {datetime.datetime.now(datetime.UTC):%Y-%m-%d}"
json.dump(inputs, open(path, "w"), indent=2)
open(path, "a").write("\n")
PY
