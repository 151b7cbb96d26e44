#!/usr/bin/env python3
"""Applies the reviewed exceptions of contract/accepted-breaks.json to the two documents that
contract/breaking-check.sh is about to compare (copies; the committed contract is never touched).

    accepted_breaks.py LIST BASE HEAD

An exception exists for a change that optic reports as breaking although no client can break
on it (e.g. `null` dropped from an optional header's type: a header is present or absent, it
cannot carry JSON null). Each entry of LIST names exactly one transition, and applies only while
the baseline still has the old form and the head the new one, so it lapses by itself once the
baseline has moved past the change, and a later change of the same place is checked again:

    {"what": "...", "why": "...", "decision": "docs/decisions.md, 34",
     "rule": "<optic rule name>",                   # what optic may report there
     "exempt": "<JSON pointer into HEAD>",          # where optic reads x-optic-exemptions
     "baseline": ["<JSON pointer>", <value>],       # the old form, in BASE
     "head": ["<JSON pointer>", <value>]}           # the new form, in HEAD

or, for a baseline that is not a valid document (optic cannot read it at all):

    {"what": "...", "why": "...", "decision": "...",
     "baseline_lacks_schema": "<name>"}             # BASE refers to it without defining it:
                                                    # HEAD's definition is added to BASE

Prints one line per applied entry. A missing LIST means no exceptions.
"""

import json
import os
import sys


def pointer(document, path):
    """The value at a JSON pointer (RFC 6901), or a sentinel when there is none."""
    node = document
    for raw in path.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _MISSING
    return node


_MISSING = object()


def refers_to(node, target):
    if isinstance(node, dict):
        return node.get("$ref") == target or any(refers_to(v, target) for v in node.values())
    if isinstance(node, list):
        return any(refers_to(v, target) for v in node)
    return False


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: accepted_breaks.py LIST BASE HEAD")
    list_path, base_path, head_path = sys.argv[1:]
    if not os.path.exists(list_path):
        return
    with open(list_path) as f:
        entries = json.load(f)["accepted"]
    with open(base_path) as f:
        base = json.load(f)
    with open(head_path) as f:
        head = json.load(f)

    for entry in entries:
        label = f"accepted ({entry['decision']}): {entry['what']}"
        name = entry.get("baseline_lacks_schema")
        if name is not None:
            schemas = base.setdefault("components", {}).setdefault("schemas", {})
            target = f"#/components/schemas/{name}"
            defined_in_head = pointer(head, f"/components/schemas/{name}")
            if name not in schemas and refers_to(base, target) and defined_in_head is not _MISSING:
                schemas[name] = defined_in_head
                print(label)
            continue
        (base_at, base_value), (head_at, head_value) = entry["baseline"], entry["head"]
        if pointer(base, base_at) != base_value or pointer(head, head_at) != head_value:
            continue
        node = pointer(head, entry["exempt"])
        if not isinstance(node, dict):
            sys.exit(f"{entry['what']}: nothing to exempt at {entry['exempt']} in the head document")
        exemptions = node.setdefault("x-optic-exemptions", [])
        if entry["rule"] not in exemptions:
            exemptions.append(entry["rule"])
        print(label)

    with open(base_path, "w") as f:
        json.dump(base, f, indent=2)
    with open(head_path, "w") as f:
        json.dump(head, f, indent=2)


if __name__ == "__main__":
    main()
