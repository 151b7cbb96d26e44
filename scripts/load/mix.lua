-- wrk scenario: the spec's mix: 40 % upload, 30 % group listing, 20 % registration, 10 % batch of 25.
-- Run through scripts/load/run.sh (see common.lua for the environment it needs).
SCENARIO = "mix"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
