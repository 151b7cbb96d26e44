-- wrk scenario: GET /api/v1/devices/<random seeded device>/locations?limit=100 (history's first page).
-- Run through scripts/load/run.sh (see common.lua for the environment it needs).
SCENARIO = "history"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
