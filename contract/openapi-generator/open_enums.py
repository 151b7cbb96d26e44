#!/usr/bin/env python3
"""Writes the spec the Kotlin generator reads: openapi/v1.json with every extensible enum made
an `enum`.

    open_enums.py SPEC OUT

The contract lists the values of an open set (the `error` codes) as `x-extensible-enum` (and
`examples`), not as `enum`, because `enum` is a closed list: adding a value would be a breaking
change for strict clients. openapi-generator ignores the extension and would give Kotlin a plain
String. Our Kotlin options (kotlin-client.yaml) give every enum an UNKNOWN_DEFAULT_OPEN_API case
that any value not listed decodes to, which is exactly an open set; so for this generator only,
`x-extensible-enum` becomes `enum`, and the app gets an enum it can `when` over that does not
break on a code a newer server adds. The contract itself is not changed.
"""

import json
import sys


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


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: open_enums.py SPEC OUT")
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    open_enums(spec)
    with open(sys.argv[2], "w") as f:
        json.dump(spec, f, indent=2)


if __name__ == "__main__":
    main()
