#!/usr/bin/env bash
# Load test of the Phone Manager service: seeds a fresh database, runs each endpoint
# alone at maximum throughput and then the spec's mix at a fixed offered rate over many open
# connections, samples the server's memory and the database connections, and writes
# docs/load-test-results.md.
#
#   scripts/load/run.sh [--with-bench] [--scenarios upload,upload_key,list,history,register,batch,mix] [--help]
#
# Quick run:  LOAD_DURATION=30 SCENARIO_DURATION=10 scripts/load/run.sh
#
# Needs: wrk (apt-get install wrk), psql, curl, a reachable PostgreSQL (DATABASE_URL names the
# server, default postgres://postgres@127.0.0.1:5432/postgres; the role must be able to create
# databases), and the release binary (built here when missing or older than the sources;
# LOAD_BUILD=never uses whatever is there, PM_BIN=path another binary).
#
# Knobs (environment):
#   SCENARIO_DURATION=30      seconds of each solo (closed-loop, maximum throughput) scenario
#   SCENARIO_CONNECTIONS=64   connections of the solo scenarios
#   LOAD_DURATION=300         seconds of the mix
#   LOAD_RATE=1000            offered req/s of the mix (open loop, paced in Lua)
#   LOAD_CONNECTIONS=10000    open connections of the mix
#   LOAD_THREADS=$(nproc)     wrk threads
#   LOAD_WARMUP               seconds at the start of the mix left out of its "steady" figures
#                             (default: connections / rate + 2, at most half the run: every
#                             connection's first request, which also waits for its handshake)
#   LOAD_WINDOW=10            seconds per row of the mix's timeline
#   LOAD_BATCH_SIZE=50        fixes per request of the solo batch scenario (and its direct SQL twin)
#   LOAD_MIX_BATCH_SIZE=25    fixes per batch request in the mix (the spec's batch of 25)
#   LOAD_GROUPS=1000 LOAD_PER_GROUP=10 LOAD_LOCATIONS=1000000 LOAD_DAYS=6   the data set
#   LOAD_DB_POOL=20           the service's PM__DATABASE__MAX_CONNECTIONS
#   LOAD_HEADER_READ_TIMEOUT=60  the service's PM__SERVER__HEADER_READ_TIMEOUT_SECS (see the
#                             report's limits: hyper applies it to idle keep-alive connections)
#   LOAD_WRK_TIMEOUT=40s      wrk --timeout (slower responses count as timeouts)
#   LOAD_PORT                 the service's port (default: the first free one from 18080)
#   LOAD_REPORT=docs/load-test-results.md   where the report goes
#   LOAD_OUT=/tmp/pm-load-<id>  raw outputs (wrk output, samples, server logs); kept
#   LOAD_KEEP_DB=1            keep the database afterwards (default: dropped)
#   LOAD_NOTE='...'           a paragraph put at the top of the report (e.g. machine state)
#   --with-bench runs `cargo bench --bench throughput` after the scenarios (its own knobs:
#   BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_BATCHES, BENCH_CONCURRENCY) and pastes its tables.
#
# Each scenario gets a freshly started server (so its peak RSS and pool size are its own); the
# database is shared, so later scenarios see the rows earlier ones wrote. Cleanup (server,
# sampler, wrk, database) runs on every exit, including failures and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
script_dir="$root/scripts/load"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

with_bench=0
scenarios="upload,upload_key,list,register,batch,mix"
while (($#)); do
  case "$1" in
    --with-bench) with_bench=1 ;;
    --scenarios) scenarios="${2:?--scenarios needs a list}"; shift ;;
    --scenarios=*) scenarios="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
invocation="scripts/load/run.sh"
((with_bench)) && invocation+=" --with-bench"
[[ "$scenarios" != "upload,upload_key,list,register,batch,mix" ]] && invocation+=" --scenarios $scenarios"

SCENARIO_DURATION="${SCENARIO_DURATION:-30}"
SCENARIO_CONNECTIONS="${SCENARIO_CONNECTIONS:-64}"
LOAD_DURATION="${LOAD_DURATION:-300}"
LOAD_RATE="${LOAD_RATE:-1000}"
LOAD_CONNECTIONS="${LOAD_CONNECTIONS:-10000}"
LOAD_THREADS="${LOAD_THREADS:-$(nproc)}"
LOAD_WINDOW="${LOAD_WINDOW:-10}"
if [[ -z "${LOAD_WARMUP:-}" ]]; then
  LOAD_WARMUP=$(((LOAD_CONNECTIONS + LOAD_RATE - 1) / LOAD_RATE + 2))
  ((LOAD_WARMUP > LOAD_DURATION / 2)) && LOAD_WARMUP=$((LOAD_DURATION / 2))
fi
LOAD_BATCH_SIZE="${LOAD_BATCH_SIZE:-50}"
LOAD_MIX_BATCH_SIZE="${LOAD_MIX_BATCH_SIZE:-25}"
LOAD_GROUPS="${LOAD_GROUPS:-1000}"
LOAD_PER_GROUP="${LOAD_PER_GROUP:-10}"
LOAD_LOCATIONS="${LOAD_LOCATIONS:-1000000}"
LOAD_DAYS="${LOAD_DAYS:-6}"
LOAD_DB_POOL="${LOAD_DB_POOL:-20}"
LOAD_HEADER_READ_TIMEOUT="${LOAD_HEADER_READ_TIMEOUT:-60}"
LOAD_WRK_TIMEOUT="${LOAD_WRK_TIMEOUT:-40s}"
LOAD_REPORT="${LOAD_REPORT:-docs/load-test-results.md}"
LOAD_BUILD="${LOAD_BUILD:-auto}"
server_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base_url="${server_url%/*}"
run_id="$(date -u +%Y%m%d%H%M%S)_$$"
db="pm_load_${run_id}"
db_url="$base_url/$db"
out="${LOAD_OUT:-/tmp/pm-load-$run_id}"
mkdir -p "$out"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
psql_server() { psql -X -q -At -v ON_ERROR_STOP=1 "$server_url" "$@"; }
psql_db() { psql -X -q -At -v ON_ERROR_STOP=1 "$db_url" "$@"; }

# ---------------------------------------------------------------------------------------------
# Cleanup: only what this script started, by pid.
# ---------------------------------------------------------------------------------------------
server_pid="" sampler_pid="" pg_sampler_pid="" wrk_pid="" snap_pid="" db_created=0
stop_pid() { # pid [grace seconds]
  local pid="$1" grace="${2:-10}"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n "$wrk_pid" ]] && stop_pid "$wrk_pid" 2
  [[ -n "$sampler_pid" ]] && { touch "$out/.stop-sampler" 2>/dev/null; stop_pid "$sampler_pid" 3; }
  [[ -n "$pg_sampler_pid" ]] && stop_pid "$pg_sampler_pid" 2
  [[ -n "$snap_pid" ]] && stop_pid "$snap_pid" 1
  [[ -n "$server_pid" ]] && stop_pid "$server_pid" 10
  if ((db_created)); then
    if [[ -n "${LOAD_KEEP_DB:-}" ]]; then
      say "kept the database: psql $db_url"
    else
      psql_server -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 \
        || echo "run.sh: could not drop $db" >&2
    fi
  fi
  ((rc)) && echo "run.sh: failed (exit $rc); raw outputs in $out" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------------------------
for tool in wrk psql pgbench curl; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install wrk postgresql-client curl)"
done
IFS=, read -r -a scenario_list <<<"$scenarios"
for s in "${scenario_list[@]}"; do
  [[ -f "$script_dir/$s.lua" ]] || die "unknown scenario $s (upload, upload_key, list, history, register, batch, mix)"
done

# 10k connections need ~10k descriptors in wrk and in the server each (the limit is per process).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit="$(ulimit -n)"
max_conns="$SCENARIO_CONNECTIONS"
[[ ",$scenarios," == *,mix,* ]] && ((LOAD_CONNECTIONS > max_conns)) && max_conns="$LOAD_CONNECTIONS"
if [[ "$fd_limit" != unlimited ]] && ((fd_limit < max_conns + 512)); then
  die "ulimit -n is $fd_limit: $max_conns connections need at least $((max_conns + 512))"
fi

bin="${PM_BIN:-$root/target/release/phone-manager}"
if [[ -z "${PM_BIN:-}" && "$LOAD_BUILD" != never ]]; then
  stale=""
  [[ -x "$bin" ]] || stale="missing"
  [[ -z "$stale" ]] && stale="$(find src migrations config Cargo.toml Cargo.lock -newer "$bin" -print -quit)"
  if [[ -n "$stale" || "$LOAD_BUILD" == always ]]; then
    say "building the release binary (${stale:+$stale is newer}; takes minutes)"
    cargo build --release --bin phone-manager >&2
  fi
fi
[[ -x "$bin" ]] || die "no binary at $bin"

free_port() {
  local p
  for ((p = 18080; p < 18200; p++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  die "no free port in 18080-18199"
}
port="${LOAD_PORT:-$(free_port)}"

# ---------------------------------------------------------------------------------------------
# Database: create, migrate, seed, key
# ---------------------------------------------------------------------------------------------
export PM_CONFIG_DIR=/nonexistent
pm() { PM__DATABASE__URL="$db_url" PM__LOGGING__LEVEL=warn "$bin" "$@"; }

say "creating $db"
psql_server -c "CREATE DATABASE $db" >/dev/null
db_created=1
pm migrate >"$out/migrate.log" 2>&1 || { cat "$out/migrate.log" >&2; die "migrate failed"; }

say "seeding $LOAD_GROUPS groups, $((LOAD_GROUPS * LOAD_PER_GROUP)) devices, $LOAD_LOCATIONS locations over $LOAD_DAYS days"
seed_started=$SECONDS
psql_db -v groups="$LOAD_GROUPS" -v per_group="$LOAD_PER_GROUP" -v locations="$LOAD_LOCATIONS" \
  -v days="$LOAD_DAYS" -f "$script_dir/seed.sql" >/dev/null
seed_secs=$((SECONDS - seed_started))
read -r n_devices n_groups n_locations oldest newest < <(psql_db -F ' ' -c "
  SELECT (SELECT count(*) FROM devices), (SELECT count(DISTINCT group_id) FROM devices),
         (SELECT count(*) FROM locations),
         (SELECT round(extract(epoch FROM now() - min(captured_at)) / 86400, 2) FROM locations),
         (SELECT round(extract(epoch FROM now() - max(captured_at)) / 60, 1) FROM locations)")
say "seeded in ${seed_secs}s: $n_devices devices in $n_groups groups, $n_locations locations (oldest ${oldest} d, newest ${newest} min ago)"

# The scripts pick from what is really in the database.
devices_file="$out/devices.tsv"
psql_db -F $'\t' -c "SELECT id, device_id, group_id, display_name FROM devices ORDER BY id" >"$devices_file"

api_key="$(pm keys create --name load --json 2>"$out/key.log" | sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')"
[[ -n "$api_key" ]] || { cat "$out/key.log" >&2; die "could not create an API key"; }

# ---------------------------------------------------------------------------------------------
# Server and sampling
# ---------------------------------------------------------------------------------------------
start_server() { # connections log
  local conns="$1" log="$2" max_req=1024
  ((conns + 64 > max_req)) && max_req=$((conns + 64))
  PM__SERVER__HOST=127.0.0.1 \
    PM__SERVER__PORT="$port" \
    PM__SERVER__MAX_CONCURRENT_REQUESTS="$max_req" \
    PM__SERVER__HEADER_READ_TIMEOUT_SECS="$LOAD_HEADER_READ_TIMEOUT" \
    PM__SERVER__SHUTDOWN_GRACE_SECS=5 \
    PM__DATABASE__URL="$db_url" \
    PM__DATABASE__MAX_CONNECTIONS="$LOAD_DB_POOL" \
    PM__SECURITY__RATE_LIMIT_PER_MINUTE=100000000 \
    PM__SECURITY__ADMIN_RATE_LIMIT_PER_MINUTE=100000000 \
    PM__JOBS__ENABLED=false \
    PM__LOGGING__LEVEL=warn \
    "$bin" serve >"$log" 2>&1 &
  server_pid=$!
  for ((i = 0; i < 600; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/api/health/ready" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; die "the server exited at start-up"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "the server was not ready after 60 s"
}

cpu_ticks() { # pid -> utime+stime in clock ticks
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
  stat="${stat##*) }"
  awk '{ print $12 + $13 }' <<<"$stat"
}
# CPU ticks (utime + stime) of every process, one "pid ticks label" line each; PostgreSQL
# processes are told apart by their title: this run's database, its autovacuum, other
# databases (someone else's tests), and the server's background processes.
cpu_snapshot() { # file
  local d stat rest label cmd
  local -a f
  for d in /proc/[0-9]*; do
    { read -r stat <"$d/stat"; } 2>/dev/null || continue
    label="${stat#*(}"
    label="${label%)*}"
    rest="${stat##*) }"
    read -r -a f <<<"$rest"
    if [[ "$label" == postgres ]]; then
      cmd="$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" || cmd=""
      case "$cmd" in
        *autovacuum*"$db"*) label="postgres-autovacuum-test-db" ;;
        *" $db "*) label="postgres-test-db" ;;
        *"("*")"*) label="postgres-other-dbs" ;;
        *) label="postgres-background" ;;
      esac
    fi
    echo "${d#/proc/} $((f[11] + f[12])) ${label// /_}"
  done >"$1"
}

# The kernel's count of connections dropped because an accept queue was full (all sockets).
listen_overflows() {
  awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 } else print $c + 0 }' /proc/net/netstat
}
machine_ticks() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }

# Once a second: the server's RSS (kB), its pool as the service reports it (/metrics: open
# connections, in use) and how many compiler processes share the machine (a hint of how noisy
# the figures are). "NA" where a reading failed.
sampler() { # pid file
  local pid="$1" file="$2"
  while [[ ! -e "$out/.stop-sampler" ]] && kill -0 "$pid" 2>/dev/null; do
    local rss pool rustc
    rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || rss=""
    pool="$(curl -s -m 2 "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '
      /^database_connections_active / { a = $2 } /^database_connections_idle / { i = $2 }
      END { if (a == "" || i == "") print "NA NA"; else print a + i, a }')" || pool=""
    rustc="$(pgrep -c -x rustc 2>/dev/null)" || rustc=0
    echo "$(date +%s) ${rss:-NA} ${pool:-NA NA} ${rustc:-0}" >>"$file"
    sleep 1
  done
}

# Once a second, over one connection to the maintenance database (so it is not counted): the
# client connections of the test database in pg_stat_activity, all and those not idle.
pg_sampler() { # file
  psql -X -At -F ' ' "$server_url" >"$1" 2>"$1.err" <<SQL &
SELECT extract(epoch FROM now())::bigint, count(*), count(*) FILTER (WHERE state <> 'idle')
FROM pg_stat_activity WHERE datname = '$db' AND backend_type = 'client backend' \watch 1
SQL
  pg_sampler_pid=$!
}

# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------
declare -A wrk_cmd
run_scenario() { # name
  local name="$1" conns duration rate track
  if [[ "$name" == mix ]]; then
    conns="$LOAD_CONNECTIONS" duration="$LOAD_DURATION" rate="$LOAD_RATE" track=1
  else
    conns="$SCENARIO_CONNECTIONS" duration="$SCENARIO_DURATION" rate=0 track=0
  fi
  local threads="$LOAD_THREADS" batch_size="$LOAD_BATCH_SIZE"
  ((threads > conns)) && threads="$conns"
  [[ "$name" == mix ]] && batch_size="$LOAD_MIX_BATCH_SIZE"
  say "scenario $name: $conns connections, ${duration}s$( ((rate > 0)) && echo ", offered $rate req/s")"
  start_server "$conns" "$out/$name.server.log"

  local samples="$out/$name.samples" pg_samples="$out/$name.pg" result="$out/$name.result"
  : >"$samples"
  rm -f "$out/.stop-sampler" "$result"
  echo 5 >"/proc/$server_pid/clear_refs" 2>/dev/null || true # reset VmHWM (peak RSS)
  local srv0 m0 loadavg lo0
  cpu_snapshot "$out/$name.cpu0"
  lo0="$(listen_overflows)"
  srv0="$(cpu_ticks "$server_pid")"
  m0="$(machine_ticks)"
  loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
  sampler "$server_pid" "$samples" &
  sampler_pid=$!
  pg_sampler "$pg_samples"

  local cmd=(wrk -t "$threads" -c "$conns" -d "${duration}s" --timeout "$LOAD_WRK_TIMEOUT" --latency
    -s "scripts/load/$name.lua" "http://127.0.0.1:$port")
  wrk_cmd[$name]="LOAD_RATE=$rate LOAD_THREADS=$threads LOAD_TRACK=$track LOAD_BATCH_SIZE=$batch_size"
  [[ "$track" == 1 ]] && wrk_cmd[$name]+=" LOAD_WARMUP=$LOAD_WARMUP LOAD_WINDOW=$LOAD_WINDOW"
  wrk_cmd[$name]+=" ${cmd[*]}"
  LOAD_API_KEY="$api_key" LOAD_DEVICES_FILE="$devices_file" LOAD_RATE="$rate" \
    LOAD_THREADS="$threads" LOAD_TRACK="$track" LOAD_BATCH_SIZE="$batch_size" \
    LOAD_WARMUP="$LOAD_WARMUP" LOAD_WINDOW="$LOAD_WINDOW" \
    LOAD_RESULT_FILE="$result" LOAD_TIMELINE_FILE="$out/$name.timeline" \
    /usr/bin/time -f '%U %S %M' -o "$out/$name.wrk.time" "${cmd[@]}" >"$out/$name.wrk.txt" 2>&1 &
  wrk_pid=$!
  # The CPU-by-process window ends 1 s before wrk does: when wrk stops, the requests still in
  # flight are cancelled and the server may close the database connections they held, and a
  # process that is gone at the second snapshot cannot be told apart from a short-lived one.
  local cpu_window=$((duration > 1 ? duration - 1 : 1))
  (
    sleep "$cpu_window"
    cpu_snapshot "$out/$name.cpu1"
    machine_ticks >"$out/$name.m1"
  ) &
  snap_pid=$!
  local wrk_rc=0
  wait "$wrk_pid" || wrk_rc=$?
  wrk_pid=""

  local srv1 m1 hwm lo1
  wait "$snap_pid" 2>/dev/null || true
  snap_pid=""
  lo1="$(listen_overflows)"
  srv1="$(cpu_ticks "$server_pid")"
  m1="$(machine_ticks)"
  hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo 0)"
  touch "$out/.stop-sampler"
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  stop_pid "$pg_sampler_pid" 2
  pg_sampler_pid=""
  stop_pid "$server_pid" 15
  server_pid=""
  if ((wrk_rc)) || [[ ! -s "$result" ]]; then
    cat "$out/$name.wrk.txt" >&2
    die "wrk failed for $name (exit $wrk_rc)"
  fi

  local tck wrk_user wrk_sys wrk_maxrss
  tck="$(getconf CLK_TCK)"
  read -r wrk_user wrk_sys wrk_maxrss <"$out/$name.wrk.time" || true
  {
    echo "CONNECTIONS=$conns"
    echo "THREADS=$threads"
    echo "LOADAVG_BEFORE='$loadavg'"
    echo "PEAK_RSS_KB=${hwm:-0}"
    # Peaks over the readings that worked; a column with none at all reports NA.
    awk 'function peak(i) { if ($i != "NA") { if (!n[i]++ || $i + 0 > m[i]) m[i] = $i + 0 } }
         function out(k, i) { printf "%s=%s\n", k, (n[i] ? m[i] : "NA") }
         { peak(2); peak(3); peak(4); peak(5) }
         END { out("SAMPLED_RSS_KB", 2); out("PEAK_POOL", 3); out("PEAK_POOL_BUSY", 4); out("MAX_RUSTC", 5)
               printf "SAMPLES=%d\n", NR }' "$samples"
    awk 'NF == 3 { if ($2 > c) c = $2; if ($3 > a) a = $3; n++ }
         END { printf "PEAK_DB_CONNS=%s\nPEAK_DB_BUSY=%s\nPG_SAMPLES=%d\n", (n ? c : "NA"), (n ? a : "NA"), n }' "$pg_samples"
    read -r mb0 mt0 <<<"$m0"
    read -r mb1 mt1 <<<"$m1"
    awk -v s0="$srv0" -v s1="$srv1" -v mb0="$mb0" -v mt0="$mt0" -v mb1="$mb1" -v mt1="$mt1" \
      -v tck="$tck" -v cores="$(nproc)" -v wu="${wrk_user:-0}" -v ws="${wrk_sys:-0}" -v secs="$duration" '
      BEGIN {
        wall = (mt1 - mt0) / cores / tck; if (wall <= 0) wall = secs
        printf "SERVER_CPU_PCT=%.0f\n", (s1 - s0) / tck / wall * 100
        printf "WRK_CPU_PCT=%.0f\n", (wu + ws) / secs * 100
        printf "MACHINE_BUSY_PCT=%.0f\n", (mb1 - mb0) / (mt1 - mt0) * 100
      }'
    echo "WRK_MAXRSS_KB=${wrk_maxrss:-0}"
    echo "LISTEN_OVERFLOWS=$((lo1 - lo0))"
    # CPU by process group over the run (core-seconds), largest first; what no process alive at
    # the end accounts for (processes that came and went, e.g. compiler runs) is "short-lived".
    local mw1
    read -r mw1 _ <"$out/$name.m1" || mw1="$mb1"
    awk -v tck="$tck" -v mb0="$mb0" -v mb1="$mw1" \
      -v wrk="$(awk -v u="${wrk_user:-0}" -v s="${wrk_sys:-0}" -v w="$cpu_window" -v d="$duration" 'BEGIN { print (u + s) * w / d }')" '
      FNR == NR { start[$1] = $2; next }
      { d = $2 - ($1 in start ? start[$1] : 0); if (d > 0) { g[$3] += d; total += d } }
      END {
        # wrk is a child of /usr/bin/time: its time comes from there, prorated to the window.
        g["wrk"] = wrk * tck; total += wrk * tck
        rest = (mb1 - mb0) - total
        if (rest > 0) g["short-lived"] = rest
        n = 0
        for (k in g) if (g[k] / tck >= 0.1) line[++n] = sprintf("%.1f %s", g[k] / tck, k)
        # sort by seconds, descending
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (line[j] + 0 > line[i] + 0) { t = line[i]; line[i] = line[j]; line[j] = t }
        out = ""
        for (i = 1; i <= n && i <= 8; i++) { split(line[i], p, " "); out = out (i > 1 ? ", " : "") p[2] " " p[1] }
        printf "CPU_BY_PROCESS='"'"'%s'"'"'\n", out
      }' "$out/$name.cpu0" "$out/$name.cpu1"
    echo "SERVER_WARNINGS=$(grep -c -E ' (WARN|ERROR) ' "$out/$name.server.log" || true)"
  } >>"$result"
  (
    # shellcheck disable=SC1090
    source "$result"
    say "  $REQUESTS requests, $(printf '%.0f' "$RPS") req/s, p99 ${LAT_P99_MS} ms, errors $ERRORS, peak RSS $((PEAK_RSS_KB / 1024)) MiB, peak DB conns $PEAK_DB_CONNS (pool $PEAK_POOL)"
  )
}

# ---------------------------------------------------------------------------------------------
# Direct SQL twins (the ratios): right after the upload, batch and list scenarios, the same
# statements run straight against the same database by pgbench, over as many connections as
# the service's pool, for as long: a raw single-row INSERT, a raw multi-row INSERT of
# LOAD_BATCH_SIZE rows, and the listing's SELECT for a random group. Service / direct is the
# share of PostgreSQL's own rate the service delivers through HTTP, JSON, auth and validation.
# ---------------------------------------------------------------------------------------------
declare -A direct_cmd
direct_runs=0
direct_sql() { # name -> pgbench script on stdout
  local row="(md5('device-' || :n)::uuid, random() * 120 - 60, random() * 340 - 170, 3 + random() * 47, now() - random() * interval '1 hour')"
  local cols="INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at) VALUES"
  case "$1" in
    upload) printf '\\set n random(1, %s)\n%s %s;\n' "$n_devices" "$cols" "$row" ;;
    batch)
      printf '\\set n random(1, %s)\n%s\n' "$n_devices" "$cols"
      for ((i = 1; i <= LOAD_BATCH_SIZE; i++)); do printf '  %s%s\n' "$row" "$( ((i < LOAD_BATCH_SIZE)) && echo , || echo ';')"; done ;;
    list)
      printf '\\set g random(1, %s)\n' "$n_groups"
      printf '%s\n' "SELECT device_id, display_name, platform, last_seen_at, last_location FROM devices_with_last_location WHERE group_id = 'g-' || :g AND active ORDER BY display_name, device_id;" ;;
    history)
      printf '\\set n random(1, %s)\n' "$n_devices"
      printf '%s\n' "SELECT captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider, battery_level, network_type, created_at FROM locations WHERE device_id = md5('device-' || :n)::uuid AND captured_at >= now() - interval '7 days' AND captured_at < now() + interval '5 minutes' ORDER BY captured_at DESC LIMIT 101;" ;;
  esac
}
run_direct() { # name
  local name="$1" script="$out/$1.direct.sql"
  direct_sql "$name" >"$script"
  local cmd=(pgbench -n -M prepared -c "$LOAD_DB_POOL" -j "$LOAD_THREADS" -T "$SCENARIO_DURATION" -f "$script" "$db_url")
  direct_cmd[$name]="${cmd[*]}"
  direct_runs=$((direct_runs + 1))
  say "direct SQL twin of $name: pgbench, $LOAD_DB_POOL connections, ${SCENARIO_DURATION}s"
  "${cmd[@]}" >"$out/$name.pgbench.txt" 2>&1 || { cat "$out/$name.pgbench.txt" >&2; die "pgbench failed for $name"; }
  local tps lat
  tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out/$name.pgbench.txt")"
  lat="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out/$name.pgbench.txt")"
  printf 'DIRECT_TPS=%s\nDIRECT_LAT_MS=%s\n' "${tps:-0}" "${lat:-0}" >"$out/$name.direct"
  say "  $(printf '%.0f' "${tps:-0}") statements/s, mean latency ${lat:-?} ms"
}

started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
for s in "${scenario_list[@]}"; do
  run_scenario "$s"
  case "$s" in upload | batch | list | history) run_direct "$s" ;; esac
done

bench_out=""
if ((with_bench)); then
  say "cargo bench --bench throughput (compiles the bench profile first)"
  bench_out="$out/bench.md"
  DATABASE_URL="$server_url" cargo bench --bench throughput >"$bench_out" 2>"$out/bench.log" \
    || { tail -20 "$out/bench.log" >&2; die "cargo bench failed"; }
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
say "writing $LOAD_REPORT"
pg_version="$(psql_server -c 'SHOW server_version')"
pg_settings="$(psql_server -F ' ' -c "SELECT current_setting('max_connections'), current_setting('shared_buffers')")"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null || true)"
bin_time="$(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC')"
cpu_model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
mem_gib="$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
wrk_version="$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }')"
overrides=""
for v in SCENARIO_DURATION SCENARIO_CONNECTIONS LOAD_DURATION LOAD_RATE LOAD_CONNECTIONS LOAD_THREADS LOAD_WINDOW \
  LOAD_BATCH_SIZE LOAD_MIX_BATCH_SIZE LOAD_GROUPS LOAD_PER_GROUP LOAD_LOCATIONS LOAD_DAYS LOAD_DB_POOL \
  LOAD_HEADER_READ_TIMEOUT LOAD_WRK_TIMEOUT LOAD_WARMUP; do
  [[ -n "$(printenv "$v")" ]] && overrides+="$v=$(printenv "$v") "
done

label() {
  case "$1" in
    upload) echo "single upload (\`POST /api/v1/locations\`)" ;;
    upload_key) echo "single upload with an \`Idempotency-Key\`" ;;
    list) echo "group listing (\`GET /api/v1/devices?group_id=\`)" ;;
    history) echo "history, first page of 100 (\`GET /api/v1/devices/{id}/locations\`)" ;;
    register) echo "re-registration (\`POST /api/v1/devices/register\`)" ;;
    batch) echo "batch of $LOAD_BATCH_SIZE (\`POST /api/v1/locations/batch\`)" ;;
    mix) echo "mix at $LOAD_RATE req/s offered (batches of $LOAD_MIX_BATCH_SIZE)" ;;
  esac
}
f1() { printf '%.1f' "$1"; }
f0() { printf '%.0f' "$1"; }

{
  cat <<EOF
# Load test results

Generated by \`scripts/load/run.sh\` on $started_at. Regenerate with the command below; the
file is overwritten by every run.
EOF
  [[ -n "${LOAD_NOTE:-}" ]] && printf '\n> %s\n' "$LOAD_NOTE"
  cat <<EOF

## Method

- **Data set** (fresh database \`$db\`, seeded set-based by \`scripts/load/seed.sql\` in ${seed_secs} s):
  $n_groups groups, $n_devices active devices ($LOAD_PER_GROUP per group, \`device_id = md5('device-' || n)::uuid\`),
  $n_locations locations spread over the last $LOAD_DAYS days (oldest $oldest days, newest $newest minutes
  before the run), \`last_seen_at\` set, tables vacuumed and analysed. One API key from
  \`phone-manager keys create\`.
- **Server**: the release binary, restarted for every scenario (so each one's peak RSS and pool
  size are its own; the database is shared, so later scenarios also see the rows earlier ones
  wrote), with rate limits at 100,000,000/min, jobs off, log level warn, a pool of
  $LOAD_DB_POOL connections, \`max_concurrent_requests\` = max(1024, connections + 64) and
  \`header_read_timeout_secs\` = $LOAD_HEADER_READ_TIMEOUT (default 10: see the limits below).
- **Load**: \`wrk\` $wrk_version with the Lua scenarios in \`scripts/load/\`; every request picks
  a random seeded device or group (read from the seeded database, not guessed). Solo scenarios
  are closed-loop over $SCENARIO_CONNECTIONS connections (maximum throughput: each connection
  sends as soon as its previous answer arrives). The mix is open-loop: $LOAD_RATE req/s offered
  over $LOAD_CONNECTIONS open keep-alive connections, paced by the scripts' \`delay()\` hook
  (each wrk thread hands out send slots on a fixed schedule of rate/threads per second; a free
  connection takes the next slot and waits for it). Request types are drawn at random with the
  weights 40/30/20/10; re-registration sends a seeded device with its own group and name, so
  the 20-per-group limit never trips.
- **Latency**: solo scenarios use wrk's histogram (send of the request to its last response
  byte; p95 from \`latency:percentile(95)\` in \`done()\`; wrk adds its own coordinated-omission
  correction for outliers above twice the mean per-connection interval). The mix tags each
  request with \`X-Request-Id\` (the service echoes it) and the scripts time every response per
  request type with a monotonic clock. **Errors** = responses with status >= 400 plus socket
  errors (connect, read, write, and timeouts > $LOAD_WRK_TIMEOUT).
- **Sampling**, once a second: the server's RSS (the peak is VmHWM, reset through
  \`/proc/PID/clear_refs\` when the load starts); the client connections of the test database
  in \`pg_stat_activity\` (all, and those not idle; one \`psql \\watch 1\` on the maintenance
  database); the service's own pool gauges from \`/metrics\` (open, in use). CPU: server and
  wrk process time over the run, machine busy share from \`/proc/stat\`.

## Machine

| | |
|---|---|
| CPU | $(nproc) × $cpu_model |
| memory | $mem_gib GiB |
| kernel | $(uname -r) |
| PostgreSQL | $pg_version (max_connections $(cut -d' ' -f1 <<<"$pg_settings"), shared_buffers $(cut -d' ' -f2 <<<"$pg_settings")), same machine |
| load generator | wrk $wrk_version, $LOAD_THREADS threads, same machine |
| open files | ulimit -n $fd_limit (per process) |
| service build | commit $commit${dirty:+ + uncommitted changes in src/}, binary built $bin_time |

## Commands

\`\`\`sh
${overrides}${invocation}
\`\`\`

Each scenario's wrk command (run with \`LOAD_API_KEY\`, \`LOAD_DEVICES_FILE\` and
\`LOAD_RESULT_FILE\` set by the script):

\`\`\`sh
EOF
  for s in "${scenario_list[@]}"; do echo "${wrk_cmd[$s]}"; done
  cat <<EOF
\`\`\`

## Results

| scenario | conns | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | peak RSS MiB | peak DB conns (busy) | peak pool (in use) | server CPU | machine busy |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
  for s in "${scenario_list[@]}"; do
    (
      # shellcheck disable=SC1090
      source "$out/$s.result"
      row() {
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s %% | %s %% |\n' \
          "$1" "$CONNECTIONS" "$(f0 "$2")" "$(f1 "$3")" "$(f1 "$4")" "$(f1 "$5")" "$(f1 "$6")" "$7" \
          "$((PEAK_RSS_KB / 1024))" "$PEAK_DB_CONNS" "$PEAK_DB_BUSY" "$PEAK_POOL" "$PEAK_POOL_BUSY" \
          "$SERVER_CPU_PCT" "$MACHINE_BUSY_PCT"
      }
      if [[ "$s" == mix ]]; then
        row "$(label "$s"), whole run" "$RPS" "$LAT_P50_MS" "$LAT_P95_MS" "$LAT_P99_MS" "$LAT_MAX_MS" "$ERRORS"
        row "$(label "$s"), after the first $WARMUP_S s" "$STEADY_RPS" "$STEADY_P50_MS" "$STEADY_P95_MS" \
          "$STEADY_P99_MS" "$STEADY_MAX_MS" "$((STEADY_N - STEADY_OK))"
      else
        row "$(label "$s")" "$RPS" "$LAT_P50_MS" "$LAT_P95_MS" "$LAT_P99_MS" "$LAT_MAX_MS" "$ERRORS"
      fi
    )
  done
  cat <<EOF

Durations: solo scenarios ${SCENARIO_DURATION} s each, the mix ${LOAD_DURATION} s. The mix's second row
leaves out the requests sent in its first ${LOAD_WARMUP} s (every connection's first request, which
also waits for its TCP handshake in the connection storm; LOAD_WARMUP) and in its last, partial
second; its req/s are the responses to the rest per second of it, its errors their non-2xx
responses. Peak RSS, connections and CPU are over the whole run. Server CPU is the
share of one core (200 % = both cores of a 2-core machine).

### Errors and run details

| scenario | requests | status >= 400 | connect | read | write | timeout | mean ms | p75 ms | p90 ms | p99.9 ms | server log warn/error lines | accept-queue overflows | wrk CPU | load avg before | compilers seen |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|
EOF
  for s in "${scenario_list[@]}"; do
    (
      # shellcheck disable=SC1090
      source "$out/$s.result"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s %% | %s | %s |\n' \
        "$s" "$REQUESTS" "$ERR_STATUS" "$ERR_CONNECT" "$ERR_READ" "$ERR_WRITE" "$ERR_TIMEOUT" \
        "$(f1 "$LAT_MEAN_MS")" "$(f1 "$LAT_P75_MS")" "$(f1 "$LAT_P90_MS")" "$(f1 "$LAT_P99_9_MS")" \
        "$SERVER_WARNINGS" "$LISTEN_OVERFLOWS" "$WRK_CPU_PCT" "$LOADAVG_BEFORE" "$MAX_RUSTC"
    )
  done
  echo
  echo
  echo "CPU by process during each run (up to 1 s before its end), in core-seconds (the machine has $(nproc)"
  echo "cores; \`short-lived\`: processes that were gone by the end of the window, such as compiler jobs or"
  echo "database connections the server closed; \`postgres-*\`: this run's database, its autovacuum, other"
  echo "databases on the same server, the server's background writers):"
  echo
  for s in "${scenario_list[@]}"; do
    (
      # shellcheck disable=SC1090
      source "$out/$s.result"
      echo "- $s: $CPU_BY_PROCESS"
    )
  done
  echo
  # shellcheck disable=SC2016
  echo '"compilers seen": the most `rustc` processes running at once during the scenario (other builds sharing the cores). "accept-queue overflows": the kernel'"'"'s ListenOverflows counter over the run (every socket on the machine; on loopback the client retries the handshake).'

  if [[ -f "$out/mix.result" ]]; then
    (
      # shellcheck disable=SC1090,SC1091
      source "$out/mix.result"
      cat <<EOF

### The mix

Offered $TARGET_RATE req/s over $CONNECTIONS connections for ${LOAD_DURATION} s: requests were written at
$(f1 "$SENT_PER_SEC_MEAN") req/s on average (per wall-clock second, first and last second left out:
min $SENT_PER_SEC_MIN, max $SENT_PER_SEC_MAX over $SENT_SECONDS s); $(f0 "$RPS") responses/s completed.
Schedule adherence (how long after its slot each request was written): $LATE_LE_1MS within 1 ms,
$LATE_LE_10MS within 10 ms, $LATE_LE_100MS within 100 ms, $LATE_GT_100MS later; the latest $(f1 "$MAX_LATE_MS") ms
($SLOTS slots handed out). Latency is measured from the write, so a late request's wait for its
slot is not in the figures below (coordinated omission): they hold as long as the late counts
stay small.

Per request type, after the first $WARMUP_S s (the last two columns: the whole run). Latency runs from
the request's write to its response, per request, on a monotonic clock:

| type | responses | 2xx | status codes | p50 ms | p95 ms | p99 ms | max ms | whole run: p99 ms | whole run: status codes |
|---|---:|---:|---|---:|---:|---:|---:|---:|---|
EOF
      for t in upload list register batch all; do
        U="${t^^}"
        n="${U}_S_N" ok="${U}_S_OK" codes="${U}_S_CODES" p50="${U}_S_P50_MS" p95="${U}_S_P95_MS"
        p99="${U}_S_P99_MS" mx="${U}_S_MAX_MS" wp99="${U}_P99_MS" wcodes="${U}_CODES"
        if [[ "$t" == all ]]; then
          t="**all**" n=STEADY_N ok=STEADY_OK codes=STEADY_CODES p50=STEADY_P50_MS p95=STEADY_P95_MS
          p99=STEADY_P99_MS mx=STEADY_MAX_MS
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "${!n}" "${!ok}" "${!codes}" \
          "$(f1 "${!p50}")" "$(f1 "${!p95}")" "$(f1 "${!p99}")" "$(f1 "${!mx}")" "$(f1 "${!wp99}")" "${!wcodes}"
      done
      echo
      echo "Responses without a known request id (none expected): $UNMATCHED."
      echo
      echo "Timeline (by send time, ${LOAD_WINDOW}-s windows from the first request; server RSS, pool and"
      echo "database figures are the highest once-a-second samples in the window):"
      echo
      echo "| from s | to s | sent/s | responses | non-2xx | p50 ms | p99 ms | max ms | server RSS MiB | pool in use | DB conns busy |"
      echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      t0="$(awk 'NR == 1 { print $1 }' "$out/mix.timeline")"
      while read -r from to sent resp non2xx p50 p99 mx; do
        read -r rss busy < <(awk -v a="$from" -v b="$to" '$1 >= a && $1 < b {
            if ($2 != "NA" && (r == "" || $2 + 0 > r)) r = $2 + 0; if ($4 != "NA" && (p == "" || $4 + 0 > p)) p = $4 + 0 }
          END { printf "%s %s\n", (r == "" ? "NA" : int(r / 1024)), (p == "" ? "NA" : p) }' "$out/mix.samples")
        dbb="$(awk -v a="$from" -v b="$to" '$1 >= a && $1 < b && NF == 3 { if (!n++ || $3 + 0 > m) m = $3 + 0 }
          END { print (n ? m : "NA") }' "$out/mix.pg")"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$((from - t0))" "$((to - t0))" \
          "$(awk -v s="$sent" -v a="$from" -v b="$to" 'BEGIN { printf "%.0f", s / (b - a) }')" \
          "$resp" "$non2xx" "$p50" "$p99" "$mx" "$rss" "$busy" "$dbb"
      done <"$out/mix.timeline"
    )
  fi

  if ((direct_runs)); then
    cat <<EOF

## Ratios in this run: the service vs the same SQL run directly

Each HTTP scenario above beside its direct SQL twin, run right after it against the same
database by \`pgbench\` over $LOAD_DB_POOL connections (the service's pool) for
$SCENARIO_DURATION s: the statement the request ends in, without HTTP, JSON, authentication,
validation or the service's own checks (the service's insert also checks that the device is
registered and active). Rows/s for the inserts, requests or queries/s for the listing.

| scenario | service | direct SQL | service / direct |
|---|---:|---:|---:|
EOF
    for s in upload batch list; do
      [[ -f "$out/$s.direct" ]] || continue
      (
        # shellcheck disable=SC1090
        source "$out/$s.result"
        # shellcheck disable=SC1090
        source "$out/$s.direct"
        per=1 what="req/s" dwhat="INSERT/s"
        [[ "$s" == batch ]] && per="$LOAD_BATCH_SIZE" what="rows/s" dwhat="rows/s"
        [[ "$s" == list ]] && dwhat="queries/s"
        printf '| %s | %s %s | %s %s | **%s** |\n' "$(label "$s")" \
          "$(awk -v r="$RPS" -v p="$per" 'BEGIN { printf "%.0f", r * p }')" "$what" \
          "$(awk -v r="$DIRECT_TPS" -v p="$per" 'BEGIN { printf "%.0f", r * p }')" "$dwhat" \
          "$(awk -v a="$RPS" -v b="$DIRECT_TPS" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
      )
    done
    echo
    echo "pgbench commands (scripts in the raw outputs, \`<scenario>.direct.sql\`):"
    echo
    echo '```sh'
    for s in upload batch list; do [[ -n "${direct_cmd[$s]:-}" ]] && echo "${direct_cmd[$s]}"; done
    echo '```'
  fi

  cat <<'EOF'

## Ratios (`cargo bench --bench throughput`)

EOF
  if [[ -n "$bench_out" ]]; then
    # The bench prints markdown; its headings go one level down to fit in here.
    # (BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_BATCHES, BENCH_CONCURRENCY reach it unchanged.)
    sed -n '/^# /,$p' "$bench_out" | sed -e 's/^# /### /' -e 's/^## /\n#### /'
  else
    echo "Not measured in this run: \`scripts/load/run.sh --with-bench\` runs the bench after the load"
    echo "scenarios and pastes its tables here (authenticated endpoint vs bare axum, batch insert vs"
    echo "raw INSERT, tracing on vs off)."
  fi

  # What each tuning step changed: kept by hand beside the harness, pasted in as it is.
  if [[ -f "$script_dir/tuning.md" ]]; then
    echo
    cat "$script_dir/tuning.md"
  fi

  cat <<EOF

## Limits of the harness

- **Everything shares the machine**: PostgreSQL, the server and wrk run on the same
  $(nproc) cores (and here also whatever else was running: see "machine busy", "load avg before",
  "compilers seen" and the CPU by process). Throughput is the machine's, not the service's
  alone; wrk itself takes a visible share of the CPU (the "wrk CPU" column: with 10,000
  connections about a quarter of the machine).
- **Offered-rate accuracy**: no wrk2 is packaged (Debian has wrk 4.1 only), so the mix is paced
  in Lua with wrk's \`delay()\` hook. Slots follow a fixed per-thread schedule, so the rate does
  not drift, but a request can go out up to 1 ms early (wrk's timers have millisecond
  resolution) and late whenever no connection is free or the wrk thread is busy: the "schedule
  adherence" counts measure that (each request is matched with the oldest outstanding slot,
  which is exact while no connection has to reconnect: wrk's reconnects skip \`delay()\`).
  With $LOAD_CONNECTIONS connections at $LOAD_RATE req/s every connection sends about once every
  $(awk -v c="$LOAD_CONNECTIONS" -v r="$LOAD_RATE" 'BEGIN { printf "%.0f", c / r }') s, so connections only run out if responses take that long; what delays sends
  in practice is wrk's own event loop on a busy machine. Latency in the mix is measured from the
  actual send, so late sends would hide queueing in the client (coordinated omission).
  Requests still unanswered when wrk stops are not counted anywhere.
- **Idle connections and \`header_read_timeout_secs\`**: hyper (1.12) applies the header read
  timeout to keep-alive connections waiting for their next request, so with the default of
  10 s a connection idle for 10 s is closed by the server. At 1,000 req/s over 10,000
  connections each connection is idle about 10 s between requests, so the harness raises the
  timeout to $LOAD_HEADER_READ_TIMEOUT s (LOAD_HEADER_READ_TIMEOUT); with the default, expect read errors and
  reconnections in wrk.
- **10,000 connections on $(nproc) cores**: wrk opens all connections at once at the start, so
  the first seconds are a connection storm (the service's accept backlog is tokio's 1024; the
  "accept-queue overflows" column shows whether handshakes had to be retried); the mix's
  "after the first N s" figures leave that out. wrk and the server use one descriptor per
  connection each (the harness raises \`ulimit -n\` to the hard limit, $fd_limit here, and refuses
  to run if it is below connections + 512).
  Ephemeral ports (32768-60999) allow about 28,000 client connections to one port, including
  the previous runs' TIME_WAIT sockets.
- **Closed-loop solo scenarios** measure capacity at $SCENARIO_CONNECTIONS connections, not latency
  at a given rate: their latency is mostly queueing for the pool of $LOAD_DB_POOL database
  connections.
- **Sampling** is once a second: the busy-connection peak can miss short bursts (the RSS peak
  cannot: it is VmHWM).
EOF
} >"$LOAD_REPORT.tmp"
# The sections other scripts own (phones.sh, growth.sh, partitions.sh: between their
# `<!-- name:begin -->` and `<!-- name:end -->` markers) stay as they were.
if [[ -f "$LOAD_REPORT" ]]; then
  perl -0777 -ne 'print "\n$1\n" while /(<!-- ([\w-]+):begin -->.*?<!-- \2:end -->)/sg' "$LOAD_REPORT" >>"$LOAD_REPORT.tmp"
fi
mv "$LOAD_REPORT.tmp" "$LOAD_REPORT"
say "done: $LOAD_REPORT (raw outputs in $out)"
