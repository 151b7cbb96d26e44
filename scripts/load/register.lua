-- wrk scenario: POST /api/v1/devices/register: a random seeded device re-registers in its own group.
-- Run through scripts/load/run.sh (see common.lua for the environment it needs).
SCENARIO = "register"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
