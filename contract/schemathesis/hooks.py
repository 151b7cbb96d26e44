"""Schemathesis hooks for the Phone Manager API (loaded by contract/fuzz.sh).

They only touch requests schemathesis generated as *valid* (positive); negative requests are
sent exactly as generated, so invalid data must still be rejected. Each adjustment works around
a gap between what JSON Schema (or the fuzzer) can express and what the API correctly enforces;
none switches a check off:

1. Location timestamps must lie between 7 days ago and 60 s from now *at request time*. JSON
   Schema cannot express a window that moves with the clock, so the spec says `integer (int64)`
   and its static examples go stale. The hook moves the timestamps of valid location bodies
   into the window [run start - 6 days, run start], deterministically, so a request that is
   sent again is sent identically.

2. JSON Schema counts `3600.0` as an integer; the service's JSON parser (serde) accepts only
   `3600` for integer fields, as do most typed servers, and the generated clients always send
   integers. The hook writes integral floats of valid bodies as integers.

3. An `Idempotency-Key` sent again with a *different* body is refused with 422 (correctly, and
   documented). Schemathesis reuses a few key values (above all the spec's example) for
   hundreds of different bodies, so most valid uploads would stop at that 422 and never reach
   validation or storage. The hook appends a digest of the operation and body to a valid key:
   a different body gets a different key, while an identical request still carries the same
   key, so the replay path stays exercised. (Key reuse with another body is covered by
   contract/kotlin-smoke.)

4. The audit listing refuses `since` >= `until` (400 "must be after since"), a relation
   between two parameters that JSON Schema cannot state. The hook orders a valid pair (and
   drops `until` when both are equal).
"""

from datetime import datetime

import hashlib
import json
import time

import schemathesis
from schemathesis.core.parameters import ParameterLocation

LOCATION_PATHS = {"/api/v1/locations", "/api/v1/locations/batch"}
AUDIT_PATH = "/api/v1/admin/audit"
SIX_DAYS_MS = 6 * 24 * 3600 * 1000
RUN_START_MS = int(time.time() * 1000)
MAX_SAFE_INTEGER = 2**53


def _integral_floats_to_ints(value):
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_to_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_to_ints(item) for key, item in value.items()}
    return value


def _move_timestamp(fix):
    if isinstance(fix, dict):
        ts = fix.get("timestamp")
        if isinstance(ts, int) and not isinstance(ts, bool):
            fix["timestamp"] = RUN_START_MS - (abs(ts) % SIX_DAYS_MS)


def _is_negative(case, location):
    meta = case.meta
    return meta is not None and meta.is_negative_at(location)


def _bind_idempotency_key_to_body(case):
    headers = case.headers or {}
    name = next((h for h in headers if h.lower() == "idempotency-key"), None)
    key = headers.get(name) if name else None
    if not isinstance(key, str) or not key or _is_negative(case, ParameterLocation.HEADER):
        return
    payload = json.dumps([case.operation.path, case.body], sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    # Stays within the API's 1-255 visible ASCII characters when the key itself was valid.
    headers[name] = f"{key[:242]}-{digest}"


def _parse_time(value):
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _order_time_window(case):
    query = case.query
    if not isinstance(query, dict) or _is_negative(case, ParameterLocation.QUERY):
        return
    since, until = _parse_time(query.get("since")), _parse_time(query.get("until"))
    if since is None or until is None or since.tzinfo is None or until.tzinfo is None:
        return
    if since == until:
        del query["until"]
    elif since > until:
        query["since"], query["until"] = query["until"], query["since"]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.operation.path == AUDIT_PATH:
        _order_time_window(case)
    if isinstance(case.body, (dict, list)) and not _is_negative(case, ParameterLocation.BODY):
        case.body = _integral_floats_to_ints(case.body)
        if case.operation.path in LOCATION_PATHS and isinstance(case.body, dict):
            _move_timestamp(case.body)
            locations = case.body.get("locations")
            if isinstance(locations, list):
                for fix in locations:
                    _move_timestamp(fix)
    if case.operation.path in LOCATION_PATHS:
        _bind_idempotency_key_to_body(case)
