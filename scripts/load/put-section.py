#!/usr/bin/env python3
"""Puts a section into a report between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.

    scripts/load/put-section.py NAME SECTION_FILE REPORT

Replaces the section if the report has its markers, else appends it (creating the report).
scripts/load/run.sh keeps every such section when it rewrites the rest of the report, so each
load script owns its section of docs/load-test-results.md.
"""
import os
import sys

name, section_file, report = sys.argv[1:4]
section = open(section_file).read().rstrip("\n") + "\n"
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(report).read() if os.path.exists(report) else ""
if begin in text and end in text:
    a, b = text.index(begin), text.index(end)
    text = text[:a] + begin + "\n" + section + text[b:]
else:
    text = text.rstrip("\n") + "\n\n" + begin + "\n" + section + end + "\n"
open(report, "w").write(text)
