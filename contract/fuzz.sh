#!/usr/bin/env bash
# Contract fuzzing: schemathesis generates valid and invalid requests for every operation of
# the document the server serves (openapi/v1.json with the clock filled in: the bound on a fix's
# timestamp and current examples, see src/http/docs.rs), sends them to a running server and runs all its checks on the answers (no
# 5xx, documented status codes, content types, headers and response schemas, valid data
# accepted, invalid data rejected, auth enforced, stateful links).
#
#   contract/fuzz.sh BASE_URL API_KEY
#
# Settings: contract/schemathesis/schemathesis.toml and the hooks it loads (each adjustment
# with its reason; no check is off). Budget: CONTRACT_FUZZ_EXAMPLES examples per operation and phase (default 200),
# CONTRACT_FUZZ_SEED (default fixed, so a run is reproducible; set another to explore),
# CONTRACT_FUZZ_TIMEOUT seconds (default 420). Reports (JUnit, HAR with every request and
# response) land in contract/.work/fuzz/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

if [ $# -ne 2 ]; then
  echo "usage: $0 BASE_URL API_KEY" >&2
  exit 64
fi
base_url="$1"
api_key="$2"

ensure_python_tools

out="$WORK_DIR/fuzz"
rm -rf "$out"
mkdir -p "$out"
export HYPOTHESIS_STORAGE_DIRECTORY="$WORK_DIR/hypothesis"

# A registered device for the generated requests to find (see schemathesis.toml); derived from
# the seed, so a run stays reproducible (each run has a fresh database).
device_id=$(python3 -c 'import sys, uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "phone-manager-contract-fuzz-" + sys.argv[1]))' "${CONTRACT_FUZZ_SEED:-1}")
curl -fsS -o /dev/null -X POST "$base_url/api/v1/devices/register" \
  -H "X-API-Key: $api_key" -H 'Content-Type: application/json' \
  -d "{\"device_id\": \"$device_id\", \"display_name\": \"Fuzz target\", \"group_id\": \"contract-fuzz\"}"
printf '"%s"\n' "$device_id" >"$out/registered-device.dict"

set +e
timeout --kill-after=10 "${CONTRACT_FUZZ_TIMEOUT:-420}" \
  "$VENV/bin/st" --config-file "$CONTRACT_DIR/schemathesis/schemathesis.toml" --no-color \
  run "$base_url/api-docs/openapi.json" \
  --url "$base_url" \
  --header "X-API-Key: $api_key" \
  --max-examples "${CONTRACT_FUZZ_EXAMPLES:-200}" \
  --seed "${CONTRACT_FUZZ_SEED:-1}" \
  --workers 2 \
  --continue-on-failure \
  --report junit,har \
  --report-dir "$out" \
  2>&1 | tee "$out/output.txt"
status=${PIPESTATUS[0]}
set -e
[ "$status" -ne 124 ] || echo "schemathesis did not finish within ${CONTRACT_FUZZ_TIMEOUT:-420}s" >&2
exit "$status"
