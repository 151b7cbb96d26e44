#!/usr/bin/env python3
"""Writes the spec the Kotlin generator reads: openapi/v1.json adapted to what the generator
can express. The contract itself is not changed.

    kotlin_input.py SPEC OUT

1. Every extensible enum becomes an `enum`. The contract lists the values of an open set (the
   `error` codes) as `x-extensible-enum` (and `examples`), not as `enum`, because `enum` is a
   closed list: adding a value would be a breaking change for strict clients. openapi-generator
   ignores the extension and would give Kotlin a plain String. Our Kotlin options
   (kotlin-client.yaml) give every enum an UNKNOWN_DEFAULT_OPEN_API case that any value not
   listed decodes to, which is exactly an open set; so the app gets an enum it can `when` over
   that does not break on a code a newer server adds (docs/decisions.md, 35).

2. Every operation whose success answer is only `text/event-stream` (the group's live stream)
   is left out: its generated call would read the endless body into one String and never
   return. (Marking it `x-internal` does not work: the FILTER normalizer that selects the phone
   tags overwrites that mark.) Apps consume the stream with an SSE client (Ktor's SSE
   plugin, okhttp-sse) and decode each event's `data` with the client's models, which stay in
   the client because the operation names them in `x-event-data` (scripts/generate-clients.sh
   selects the models of the phone operations from the unchanged spec).
"""

import json
import sys

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def open_enums(node):
    if isinstance(node, dict):
        values = node.get("x-extensible-enum")
        if isinstance(values, list) and "enum" not in node:
            node["enum"] = list(values)
        for value in node.values():
            open_enums(value)
    elif isinstance(node, list):
        for value in node:
            open_enums(value)


def only_event_stream(operation):
    media_types = {
        media_type
        for status, response in operation.get("responses", {}).items()
        if status.startswith("2")
        for media_type in response.get("content", {})
    }
    return media_types == {"text/event-stream"}


def skip_event_streams(spec):
    paths = spec.get("paths", {})
    for path, item in list(paths.items()):
        for method in METHODS:
            operation = item.get(method)
            if operation is not None and only_event_stream(operation):
                del item[method]
        if not any(method in item for method in METHODS):
            del paths[path]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: kotlin_input.py SPEC OUT")
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    open_enums(spec)
    skip_event_streams(spec)
    with open(sys.argv[2], "w") as f:
        json.dump(spec, f, indent=2)


if __name__ == "__main__":
    main()
