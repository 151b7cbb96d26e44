-- Shared wrk logic for the load scenarios (scripts/load/*.lua set SCENARIO and load this file).
-- Driven by scripts/load/run.sh; everything comes from the environment:
--
--   LOAD_API_KEY        the X-API-Key to send
--   LOAD_DEVICES_FILE   TSV written by run.sh from the seeded database: n, device_id, group_id,
--                       display_name (one device a line), so the script only ever picks rows
--                       that exist
--   LOAD_RATE           total offered req/s over all wrk threads; 0 or unset = closed loop
--                       (every connection sends its next request as soon as the last one is
--                       answered: maximum throughput)
--   LOAD_THREADS        wrk's -t (the offered rate is split evenly over the threads)
--   LOAD_TRACK          1: tag every request (X-Request-Id, which the service echoes) and keep
--                       per-type latencies and status codes in Lua (the mix needs it; it costs
--                       a response() callback per request, so the solo runs leave it off)
--   LOAD_WARMUP         seconds from the first send whose requests the "steady" figures leave
--                       out (LOAD_TRACK=1; default 0): with thousands of connections the first
--                       request of each one also waits for its handshake (connection storm)
--   LOAD_WINDOW         seconds per row of the timeline (LOAD_TRACK=1; default 10)
--   LOAD_RESULT_FILE    where done() writes its figures as KEY=value lines (sourced by run.sh)
--   LOAD_TIMELINE_FILE  where done() writes the timeline (LOAD_TRACK=1): one line per window,
--                       "from_epoch to_epoch sent responses non_2xx p50_ms p99_ms max_ms"
--
-- Request types: upload (POST /api/v1/locations), list (GET /api/v1/devices?group_id=),
-- register (POST /api/v1/devices/register, re-registering an existing device in its own group
-- with its seeded name, so the 20-per-group limit never trips), batch (POST
-- /api/v1/locations/batch with BATCH_SIZE fixes). SCENARIO "mix" draws each request's type at
-- random with MIX_WEIGHTS.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } pm_load_timespec;
  int clock_gettime(int clk_id, pm_load_timespec *tp);
]]
local CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
local tspec = ffi.new("pm_load_timespec")
local function clock_us(clock)
  ffi.C.clock_gettime(clock, tspec)
  return tonumber(tspec.tv_sec) * 1000000 + math.floor(tonumber(tspec.tv_nsec) / 1000)
end
local function mono_us() return clock_us(CLOCK_MONOTONIC) end
local function wall_us() return clock_us(CLOCK_REALTIME) end

SCENARIO = SCENARIO or os.getenv("LOAD_SCENARIO") or "upload"
BATCH_SIZE = tonumber(os.getenv("LOAD_BATCH_SIZE") or "25")
-- The spec's mix: 40 % single upload, 30 % group listing, 20 % registration, 10 % batch.
MIX_WEIGHTS = { { "upload", 40 }, { "list", 30 }, { "register", 20 }, { "batch", 10 } }
TYPES = { "upload", "list", "register", "batch" }

local rate = tonumber(os.getenv("LOAD_RATE") or "0") or 0
local nthreads = tonumber(os.getenv("LOAD_THREADS") or "1") or 1
local track = os.getenv("LOAD_TRACK") == "1"
local api_key = os.getenv("LOAD_API_KEY") or error("LOAD_API_KEY is not set")

-- ---------------------------------------------------------------------------------------------
-- Seeded devices
-- ---------------------------------------------------------------------------------------------

local dev_id, dev_group, dev_name, groups = {}, {}, {}, {}
do
  local path = os.getenv("LOAD_DEVICES_FILE") or error("LOAD_DEVICES_FILE is not set")
  local f = assert(io.open(path, "r"))
  local seen = {}
  for line in f:lines() do
    local _, id, group, name = line:match("^(%d+)\t([%x-]+)\t([^\t]+)\t([^\t]+)$")
    if id then
      dev_id[#dev_id + 1], dev_group[#dev_group + 1], dev_name[#dev_name + 1] = id, group, name
      if not seen[group] then
        seen[group] = true
        groups[#groups + 1] = group
      end
    end
  end
  f:close()
  assert(#dev_id > 0, "no devices in " .. path)
end
local ndev, ngroups = #dev_id, #groups

-- ---------------------------------------------------------------------------------------------
-- Requests
-- ---------------------------------------------------------------------------------------------

local json_headers = { ["X-API-Key"] = api_key, ["Content-Type"] = "application/json" }
local get_headers = { ["X-API-Key"] = api_key }

local function fix_fields(now_ms)
  -- A fix from the last hour (the API takes the last 7 days, at most 60 s ahead).
  return string.format('"timestamp":%.0f,"latitude":%.6f,"longitude":%.6f,"accuracy":%.1f',
    now_ms - math.random(0, 3600000), math.random() * 120 - 60, math.random() * 340 - 170,
    math.random() * 47 + 3)
end

local build = {}
function build.upload(headers)
  local body = string.format('{"device_id":"%s",%s}', dev_id[math.random(ndev)],
    fix_fields(wall_us() / 1000))
  return wrk.format("POST", "/api/v1/locations", headers or json_headers, body)
end
-- A single upload with a key of its own (never a replay): thread, sequence and a random part.
local key_seq = 0
function build.upload_key(headers)
  key_seq = key_seq + 1
  local h = {}
  for k, v in pairs(headers or json_headers) do h[k] = v end
  h["Idempotency-Key"] = string.format("load-%d-%d-%d", thread_id or 0, key_seq, math.random(1, 1000000000))
  return build.upload(h)
end
function build.batch(headers)
  local now_ms = wall_us() / 1000
  local fixes = {}
  for i = 1, BATCH_SIZE do fixes[i] = "{" .. fix_fields(now_ms) .. "}" end
  local body = string.format('{"device_id":"%s","locations":[%s]}', dev_id[math.random(ndev)],
    table.concat(fixes, ","))
  return wrk.format("POST", "/api/v1/locations/batch", headers or json_headers, body)
end
function build.list(headers)
  return wrk.format("GET", "/api/v1/devices?group_id=" .. groups[math.random(ngroups)],
    headers or get_headers, nil)
end
-- History's first page (100 newest fixes of a random seeded device): the key is `full`.
function build.history(headers)
  return wrk.format("GET", "/api/v1/devices/" .. dev_id[math.random(ndev)] .. "/locations?limit=100",
    headers or get_headers, nil)
end
function build.register(headers)
  local n = math.random(ndev)
  local body = string.format('{"device_id":"%s","display_name":"%s","group_id":"%s"}',
    dev_id[n], dev_name[n], dev_group[n])
  return wrk.format("POST", "/api/v1/devices/register", headers or json_headers, body)
end
assert(SCENARIO == "mix" or build[SCENARIO], "unknown SCENARIO " .. tostring(SCENARIO))

local mix_total = 0
for _, w in ipairs(MIX_WEIGHTS) do mix_total = mix_total + w[2] end
local function pick_type()
  if SCENARIO ~= "mix" then return SCENARIO end
  local r = math.random(mix_total)
  for _, w in ipairs(MIX_WEIGHTS) do
    if r <= w[2] then return w[1] end
    r = r - w[2]
  end
end

-- ---------------------------------------------------------------------------------------------
-- Per-thread state. done() runs in another Lua state and reads it with thread:get(), which
-- copies nested tables wrongly (wrk 4.1 pops the Lua stack once too often and crashes), so a
-- thread hands over one string instead: reading the global "pm_dump" serialises the state
-- (done() only runs after every thread has stopped).
-- ---------------------------------------------------------------------------------------------

thread_id = thread_id or 0      -- set by setup() before init()
local sent_per_sec = {}         -- wall-clock second -> requests written in it
local slots = 0                 -- slots handed out by delay()
-- How late requests were written after their slot (rate > 0): counts up to 1 ms, 10 ms,
-- 100 ms and above, and the largest lateness in ms.
local late = { 0, 0, 0, 0 }
local max_late_ms = 0
-- LOAD_TRACK=1: one entry per response, by type: "latency_µs,send_second,status".
local samples = {}
local unmatched = 0             -- responses without a known X-Request-Id
for _, t in ipairs(TYPES) do samples[t] = {} end

local function dump()
  local out = { string.format("N %d %d %.3f %d %d %d %d", slots, unmatched, max_late_ms,
    late[1], late[2], late[3], late[4]) }
  for sec, n in pairs(sent_per_sec) do out[#out + 1] = string.format("S %d %d", sec, n) end
  for _, t in ipairs(TYPES) do
    local l = samples[t]
    for i = 1, #l, 200 do
      out[#out + 1] = "L " .. t .. " " .. table.concat(l, " ", i, math.min(i + 199, #l))
    end
  end
  return table.concat(out, "\n")
end
setmetatable(_G, { __index = function(_, key) if key == "pm_dump" then return dump() end end })

local seq, pending, pending_sec = 0, {}, {}
local tagged = {}
for _, t in ipairs(TYPES) do
  tagged[t] = {}
  for k, v in pairs(t == "list" and get_headers or json_headers) do tagged[t][k] = v end
end

function init(args)
  math.randomseed(thread_id * 7919 + (wall_us() % 1000003))
  for _ = 1, 10 do math.random() end
end

local slot_queue, slot_head, slot_tail = {}, 1, 0

function request()
  if slot_tail >= slot_head then
    -- Slots are handed out in time order and their timers fire in that order, so the oldest
    -- outstanding slot is this request's (to the millisecond).
    local slot = slot_queue[slot_head]
    slot_queue[slot_head] = nil
    slot_head = slot_head + 1
    local late_ms = (mono_us() - slot) / 1000
    local b = late_ms <= 1 and 1 or late_ms <= 10 and 2 or late_ms <= 100 and 3 or 4
    late[b] = late[b] + 1
    if late_ms > max_late_ms then max_late_ms = late_ms end
  end
  local sec = math.floor(wall_us() / 1000000)
  sent_per_sec[sec] = (sent_per_sec[sec] or 0) + 1
  local t = pick_type()
  if not track then return build[t]() end
  seq = seq + 1
  local id = string.format("%s-%d-%d", t, thread_id, seq)
  local h = tagged[t]
  h["X-Request-Id"] = id
  pending[id], pending_sec[id] = mono_us(), sec
  return build[t](h)
end

if track then
  function response(status, headers, body)
    local now = mono_us()
    local id = headers["x-request-id"] or headers["X-Request-Id"]
    local started = id and pending[id]
    if not started then
      unmatched = unmatched + 1
      return
    end
    local sec = pending_sec[id]
    pending[id], pending_sec[id] = nil, nil
    local l = samples[id:match("^(%a+)-")]
    l[#l + 1] = string.format("%d,%d,%d", now - started, sec, status)
  end
end

-- Open-loop pacing: every thread hands out send slots at rate/threads per second, on a fixed
-- schedule that starts when its first connection is ready. A connection asks for the next slot
-- when it is free (after its previous response) and waits until that slot comes, so the
-- offered rate does not depend on response times as long as some connection is free at each
-- slot (rate x latency < connections). wrk's timers have 1 ms resolution. request() measures
-- how late each request really went out (no free connection, or a busy event loop).
if rate > 0 then
  local interval_us = 1000000 * nthreads / rate
  local next_slot
  function delay()
    local now = mono_us()
    next_slot = next_slot or now
    local slot = next_slot
    next_slot = next_slot + interval_us
    slots = slots + 1
    slot_tail = slot_tail + 1
    slot_queue[slot_tail] = slot
    local wait_ms = (slot - now) / 1000
    if wait_ms <= 0 then return 0 end
    return math.floor(wait_ms)
  end
end

-- ---------------------------------------------------------------------------------------------
-- Summary
-- ---------------------------------------------------------------------------------------------

local threads = {}
function setup(thread)
  thread:set("thread_id", #threads + 1)
  threads[#threads + 1] = thread
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  local i = math.ceil(p / 100 * #sorted)
  if i < 1 then i = 1 end
  return sorted[i]
end

function done(summary, latency, requests)
  local out = {}
  local function put(k, v)
    if type(v) == "number" then
      out[#out + 1] = string.format("%s=%s", k, (v == math.floor(v)) and string.format("%.0f", v)
        or string.format("%.3f", v))
    else
      out[#out + 1] = string.format("%s='%s'", k, tostring(v))
    end
  end
  local ms = function(us) return us / 1000 end
  local secs = summary.duration / 1e6
  local e = summary.errors
  put("SCENARIO", SCENARIO)
  put("DURATION_S", secs)
  put("REQUESTS", summary.requests)
  put("RPS", summary.requests / secs)
  put("ERR_STATUS", e.status)
  put("ERR_CONNECT", e.connect)
  put("ERR_READ", e.read)
  put("ERR_WRITE", e.write)
  put("ERR_TIMEOUT", e.timeout)
  put("ERRORS", e.status + e.connect + e.read + e.write + e.timeout)
  put("LAT_MEAN_MS", ms(latency.mean))
  for _, p in ipairs({ 50, 75, 90, 95, 99, 99.9 }) do
    put(("LAT_P%s_MS"):format(tostring(p):gsub("%.", "_")), ms(latency:percentile(p)))
  end
  put("LAT_MAX_MS", ms(latency.max))

  -- Gather the threads' state (see dump()).
  local per_sec, nslots, unm, max_late, lb = {}, 0, 0, 0, { 0, 0, 0, 0 }
  local all = {}   -- { latency µs, send second, status, type }
  for _, t in ipairs(threads) do
    for line in t:get("pm_dump"):gmatch("[^\n]+") do
      local kind, rest = line:match("^(%a) (.*)$")
      if kind == "N" then
        local v = {}
        for x in rest:gmatch("%S+") do v[#v + 1] = tonumber(x) end
        nslots, unm, max_late = nslots + v[1], unm + v[2], math.max(max_late, v[3])
        for i = 1, 4 do lb[i] = lb[i] + v[3 + i] end
      elseif kind == "S" then
        local sec, n = rest:match("^(%d+) (%d+)$")
        sec = tonumber(sec)
        per_sec[sec] = (per_sec[sec] or 0) + tonumber(n)
      elseif kind == "L" then
        local ty, values = rest:match("^(%a+) (.*)$")
        for l, sec, st in values:gmatch("(%d+),(%d+),(%d+)") do
          all[#all + 1] = { tonumber(l), tonumber(sec), tonumber(st), ty }
        end
      end
    end
  end
  local secs_sorted = {}
  for s in pairs(per_sec) do secs_sorted[#secs_sorted + 1] = s end
  table.sort(secs_sorted)
  -- The first and last seconds are partial (and the first one holds wrk's check request).
  local lo, hi, sum, n = math.huge, 0, 0, 0
  for i = 2, #secs_sorted - 1 do
    local v = per_sec[secs_sorted[i]]
    lo, hi, sum, n = math.min(lo, v), math.max(hi, v), sum + v, n + 1
  end
  put("SENT_PER_SEC_MEAN", n > 0 and sum / n or 0)
  put("SENT_PER_SEC_MIN", n > 0 and lo or 0)
  put("SENT_PER_SEC_MAX", hi)
  put("SENT_SECONDS", n)
  put("TARGET_RATE", rate)
  put("SLOTS", nslots)
  put("LATE_LE_1MS", lb[1])
  put("LATE_LE_10MS", lb[2])
  put("LATE_LE_100MS", lb[3])
  put("LATE_GT_100MS", lb[4])
  put("MAX_LATE_MS", max_late)

  if track then
    put("UNMATCHED", unm)
    local t0 = secs_sorted[1] or 0
    local t_end = secs_sorted[#secs_sorted] or 0
    local warmup = tonumber(os.getenv("LOAD_WARMUP") or "0") or 0
    local window = tonumber(os.getenv("LOAD_WINDOW") or "10") or 10
    put("WARMUP_S", warmup)

    -- put_stats(prefix, entries): count, 2xx, status codes and latency percentiles.
    local function put_stats(prefix, entries)
      local lats, codes, ok = {}, {}, 0
      for i, e in ipairs(entries) do
        lats[i] = e[1]
        codes[e[3]] = (codes[e[3]] or 0) + 1
        if e[3] >= 200 and e[3] < 300 then ok = ok + 1 end
      end
      table.sort(lats)
      local list = {}
      for code, c in pairs(codes) do list[#list + 1] = string.format("%d:%d", code, c) end
      table.sort(list)
      put(prefix .. "_N", #lats)
      put(prefix .. "_OK", ok)
      put(prefix .. "_CODES", table.concat(list, " "))
      put(prefix .. "_P50_MS", ms(percentile(lats, 50)))
      put(prefix .. "_P95_MS", ms(percentile(lats, 95)))
      put(prefix .. "_P99_MS", ms(percentile(lats, 99)))
      put(prefix .. "_MAX_MS", ms(lats[#lats] or 0))
    end
    local function filter(pred)
      local r = {}
      for _, e in ipairs(all) do if pred(e) then r[#r + 1] = e end end
      return r
    end
    -- Steady part: sent from t0 + warmup up to the last (partial) second of sending.
    local steady = function(e) return e[2] >= t0 + warmup and e[2] < t_end end
    put_stats("ALL", all)
    local steady_all = filter(steady)
    put_stats("STEADY", steady_all)
    -- Steady-state throughput: responses to the requests sent in that part, per second of it.
    local steady_secs = math.max(1, t_end - t0 - warmup)
    put("STEADY_RPS", #steady_all / steady_secs)
    for _, ty in ipairs(TYPES) do
      put_stats(ty:upper(), filter(function(e) return e[4] == ty end))
      put_stats(ty:upper() .. "_S", filter(function(e) return e[4] == ty and steady(e) end))
    end

    -- Timeline by send time, in windows from the first send.
    local path = os.getenv("LOAD_TIMELINE_FILE")
    if path then
      local f = assert(io.open(path, "w"))
      for from = t0, t_end, window do
        local to = from + window
        local lats, non2xx, sent = {}, 0, 0
        for sec = from, to - 1 do sent = sent + (per_sec[sec] or 0) end
        for _, e in ipairs(all) do
          if e[2] >= from and e[2] < to then
            lats[#lats + 1] = e[1]
            if e[3] < 200 or e[3] >= 300 then non2xx = non2xx + 1 end
          end
        end
        table.sort(lats)
        f:write(string.format("%d %d %d %d %d %.1f %.1f %.1f\n", from, math.min(to, t_end + 1), sent,
          #lats, non2xx, ms(percentile(lats, 50)), ms(percentile(lats, 99)), ms(lats[#lats] or 0)))
      end
      f:close()
    end
  end

  local path = os.getenv("LOAD_RESULT_FILE")
  local text = table.concat(out, "\n") .. "\n"
  if path then
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  else
    io.write(text)
  end
end
