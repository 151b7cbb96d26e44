"""Schemathesis hooks for the Phone Manager API (loaded by contract/fuzz.sh).

They only touch requests schemathesis generated as *valid* (positive); negative requests are
sent exactly as generated, so invalid data must still be rejected. Each hook works around a
gap between what JSON Schema can say and what the API (correctly) enforces:

1. Location timestamps must lie between 7 days ago and 60 s from now *at request time*. JSON
   Schema cannot express a window that moves with the clock, so the spec says `integer (int64)`
   and its static examples go stale. The hook moves the timestamps of valid location bodies
   into the window just before sending (deterministically, keeping distinct values distinct).

2. JSON Schema counts `3600.0` as an integer; the service's JSON parser (serde) accepts only
   `3600` for integer fields, as do most typed servers, and the generated clients always send
   integers. The hook writes integral floats of valid bodies as integers.
"""

import time

import schemathesis
from schemathesis.core.parameters import ParameterLocation

LOCATION_PATHS = {"/api/v1/locations", "/api/v1/locations/batch"}
SIX_DAYS_MS = 6 * 24 * 3600 * 1000
MAX_SAFE_INTEGER = 2**53


def _integral_floats_to_ints(value):
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_to_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_to_ints(item) for key, item in value.items()}
    return value


def _recent(value, now_ms):
    # Deterministic per generated value, always inside [now - 6 days, now].
    return now_ms - (abs(value) % SIX_DAYS_MS)


def _move_timestamp(fix, now_ms):
    if isinstance(fix, dict):
        ts = fix.get("timestamp")
        if isinstance(ts, int) and not isinstance(ts, bool):
            fix["timestamp"] = _recent(ts, now_ms)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if not isinstance(case.body, (dict, list)):
        return
    meta = case.meta
    if meta is not None and meta.is_negative_at(ParameterLocation.BODY):
        return
    case.body = _integral_floats_to_ints(case.body)
    if case.operation.path in LOCATION_PATHS and isinstance(case.body, dict):
        now_ms = int(time.time() * 1000)
        _move_timestamp(case.body, now_ms)
        locations = case.body.get("locations")
        if isinstance(locations, list):
            for fix in locations:
                _move_timestamp(fix, now_ms)
