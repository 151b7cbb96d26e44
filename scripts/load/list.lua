-- wrk scenario: GET /api/v1/devices?group_id=<random seeded group> (members with their last location).
-- Run through scripts/load/run.sh (see common.lua for the environment it needs).
SCENARIO = "list"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
