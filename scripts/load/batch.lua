-- wrk scenario: POST /api/v1/locations/batch, LOAD_BATCH_SIZE (default 25) fixes for a random seeded device.
-- Run through scripts/load/run.sh (see common.lua for the environment it needs).
SCENARIO = "batch"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
