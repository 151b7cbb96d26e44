-- wrk scenario: POST /api/v1/locations, one fix for a random seeded device.
-- Run through scripts/load/run.sh (see common.lua for the environment it needs).
SCENARIO = "upload"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
