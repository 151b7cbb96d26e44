#!/usr/bin/env bash
# Regenerates the committed OpenAPI document (openapi/v1.json) and its insta snapshot
# (snapshots/openapi_v1.snap) from the code. Review the diff before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_OPENAPI=1 INSTA_UPDATE=always INSTA_FORCE_PASS=1 cargo test --quiet --test api contract::
echo "openapi/v1.json and snapshots/openapi_v1.snap regenerated"
