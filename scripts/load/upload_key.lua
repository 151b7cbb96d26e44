-- wrk scenario: POST /api/v1/locations with a fresh Idempotency-Key on every request (the
-- transactional path: key claim, row and stored answer in one transaction of their own).
-- Run through scripts/load/run.sh (see common.lua for the environment it needs).
SCENARIO = "upload_key"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
