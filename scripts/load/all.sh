#!/usr/bin/env bash
# Every figure of docs/load-test-results.md and docs/capacity.md, in one command (issue 19):
#
#   scripts/load/all.sh
#
# 1. run.sh: each endpoint alone (upload, keyed upload, listing, history, registration, batch)
#    and the spec's mix over 10,000 connections (the memory figure), with direct-SQL twins;
# 2. partitions.sh: expiring a day of 1M fixes by batched DELETE vs dropping its partition;
# 3. growth.sh: upload, listing and history at 10k/100k/1M devices and 1M/10M/50M fixes;
# 4. phones.sh: the phones benchmark, map-open phones on live streams and polling;
# 5. capacity.py: docs/capacity.md's tables re-derived from what 2–4 measured.
# Takes about 90 minutes on 2 cores (the 50M-fix seed is most of it) and ~25 GB of disk.
# Each step's knobs are its own (see each script's --help); ALL_STEPS=run,partitions,growth,phones,capacity
# picks steps. Run it on a quiet machine: the figures are only as good as the machine's idleness.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=",${ALL_STEPS:-run,partitions,growth,phones,capacity},"
cargo build --release --bin phone-manager
cargo build --release -p loadgen
export LOAD_BUILD=never
[[ "$steps" == *,run,* ]] && scripts/load/run.sh --scenarios upload,upload_key,list,history,register,batch,mix
if [[ "$steps" == *,partitions,* ]]; then
  {
    echo "## Partitions: DELETE vs DROP"
    echo
    echo "\`scripts/load/partitions.sh\` (retention's batched DELETE, \`jobs.delete_batch_size\` rows per transaction, against DETACH + DROP):"
    echo
    scripts/load/partitions.sh
  } >/tmp/pm-partitions-section.md
  scripts/load/put-section.py partitions /tmp/pm-partitions-section.md docs/load-test-results.md
fi
[[ "$steps" == *,growth,* ]] && scripts/load/growth.sh
[[ "$steps" == *,phones,* ]] && scripts/load/phones.sh
[[ "$steps" == *,capacity,* ]] && scripts/load/capacity.py --write docs/capacity.md
echo "==> done: docs/load-test-results.md, docs/capacity.md"
