"""Schemathesis hooks for the Phone Manager API (loaded by contract/fuzz.sh).

Adjustments, to requests schemathesis generated as *valid* (positive) only; negative requests
are sent exactly as generated, so invalid data must still be rejected. They work around gaps
between what JSON Schema can express and what the API correctly enforces; no check is off:

- The audit listing refuses `since` >= `until` (400 "must be after since"), a relation between
  two parameters that JSON Schema cannot state. The hook orders a valid pair (and drops `until`
  when both are equal).
- The history (`GET /api/v1/devices/{device_id}/locations`) has three such rules: `from` must not
  be after `to` (the hook orders the pair); `tolerance` answers the whole range at once, so it
  comes without `limit` and `cursor` (400 otherwise; the hook drops those two); and a `cursor`
  is a token the server issued for the previous page (checked; any other string is 400, as
  documented), which a generator cannot produce, so the hook drops it. Real cursors are followed
  by tests/api/history.rs and the Kotlin smoke test.

The uploads need no hook: the served document (`/api-docs/openapi.json`) states the clock's
bound on `timestamp` and carries examples of the current time, integral numbers such as `82.0`
are accepted where an integer is expected, and the 422 of an `Idempotency-Key` reused with
another body is the documented answer (schemathesis.toml).
"""

from datetime import datetime

import schemathesis
from schemathesis.core.parameters import ParameterLocation

AUDIT_PATH = "/api/v1/admin/audit"
HISTORY_PATH = "/api/v1/devices/{device_id}/locations"


def _is_negative(case, location):
    meta = case.meta
    return meta is not None and meta.is_negative_at(location)


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


def _history_rules(case):
    query = case.query
    if not isinstance(query, dict) or _is_negative(case, ParameterLocation.QUERY):
        return
    since, until = query.get("from"), query.get("to")
    if isinstance(since, int) and isinstance(until, int) and since > until:
        query["from"], query["to"] = until, since
    if "tolerance" in query:
        query.pop("limit", None)
    query.pop("cursor", None)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.operation.path == AUDIT_PATH:
        _order_time_window(case)
    elif case.operation.path == HISTORY_PATH:
        _history_rules(case)
