#!/usr/bin/env python3
"""Capacity on paper, from measured figures (issue 19, docs/capacity.md).

    scripts/load/capacity.py [--inputs docs/capacity-inputs.json] [--write docs/capacity.md]

Reads the figures the load harness measured (scripts/load/phones.sh and growth.sh write them to
docs/capacity-inputs.json: per-phone CPU of the service and of PostgreSQL at the largest passing
phones run, WAL bytes per stored fix, bytes per stored fix on disk) and derives, for 1M and 10M
phones: service replicas, PostgreSQL cores, WAL rate, database size over the retention period,
and the phone count at which one PostgreSQL primary of a given size saturates. Prints markdown;
--write replaces the section between the `capacity:begin`/`capacity:end` markers of a file.
Every assumption that is not a measurement is a named constant below, printed with the result.
"""

import argparse
import json
import math
import sys

# Assumptions (not measured): say so where they are used.
FIX_INTERVAL_S = 60          # the app's fix interval while moving (issue 19)
MOVING_SHARE = 1.0           # share of phones moving at any time: 1.0 is the worst case
RETENTION_DAYS = 30          # config/default.toml limits.location_retention_days
REPLICA_CORES = 2            # cores per service replica
TARGET_UTILISATION = 0.6     # plan for 60 % busy cores: headroom for bursts and failover
PRIMARY_SIZES = (8, 16, 32, 64)  # PostgreSQL primary sizes (cores) to report saturation for
TARGETS = (1_000_000, 10_000_000)


def derive(m):
    per_phone_service = m["cpu_service"] / m["phones"]     # cores per phone
    per_phone_postgres = m["cpu_postgres"] / m["phones"]
    wal_per_fix = m["wal_per_s"] / m["upload_rate"]          # bytes
    rss_per_phone = m["rss_mib"] * 2**20 / m["phones"]        # bytes of service memory per phone
    rows = []
    for phones in TARGETS:
        fixes_s = phones * MOVING_SHARE / FIX_INTERVAL_S
        service_cores = phones * per_phone_service
        pg_cores = phones * per_phone_postgres
        replicas = max(2, math.ceil(service_cores / (REPLICA_CORES * TARGET_UTILISATION)))
        stored = phones * MOVING_SHARE * 86_400 / FIX_INTERVAL_S * RETENTION_DAYS
        rows.append(dict(
            phones=phones, fixes_s=fixes_s, service_cores=service_cores, replicas=replicas,
            rss_gib_per_replica=phones * rss_per_phone / replicas / 2**30,
            pg_cores=pg_cores, wal_mb_s=fixes_s * wal_per_fix / 1e6,
            wal_gb_day=fixes_s * wal_per_fix * 86_400 / 1e9,
            stored_fixes=stored, db_tb=stored * m["bytes_per_fix"] / 1e12,
        ))
    saturation = {c: int(c * TARGET_UTILISATION / per_phone_postgres) for c in PRIMARY_SIZES}
    return dict(per_phone_service=per_phone_service, per_phone_postgres=per_phone_postgres,
                wal_per_fix=wal_per_fix, rows=rows, saturation=saturation)


def render(m, d):
    out = []
    p = out.append
    p(f"Inputs (measured, `docs/capacity-inputs.json`, from {m['source']}): the largest passing phones run, "
      f"{m['phones']:,} phones with the map as `{m['map']}`: {m['upload_rate']:,.0f} fixes/s stored, service "
      f"{m['cpu_service']:.2f} cores, PostgreSQL {m['cpu_postgres']:.2f} cores, WAL {m['wal_per_s'] / 1e6:.2f} MB/s, "
      f"service RSS {m['rss_mib']:.0f} MiB; {m['bytes_per_fix']:.0f} bytes per stored fix (table and indexes, "
      f"{m['bytes_source']}).\n")
    p(f"Per phone: service {d['per_phone_service'] * 1e6:.2f} µcores, PostgreSQL {d['per_phone_postgres'] * 1e6:.2f} "
      f"µcores (core-seconds per second); WAL per stored fix {d['wal_per_fix']:,.0f} bytes.\n")
    p(f"Assumptions (not measured): a fix every {FIX_INTERVAL_S} s, {MOVING_SHARE:.0%} of phones moving (worst case), "
      f"{RETENTION_DAYS} days of retention, replicas of {REPLICA_CORES} cores planned at {TARGET_UTILISATION:.0%} busy "
      f"(at least 2), CPU cost linear in phones (the growth table shows where it is not).\n")
    p("| phones | fixes/s | service cores | replicas | RSS per replica | PostgreSQL cores | WAL | WAL per day | fixes stored | database |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in d["rows"]:
        p(f"| {r['phones']:,} | {r['fixes_s']:,.0f} | {r['service_cores']:.1f} | {r['replicas']} | "
          f"{r['rss_gib_per_replica']:.2f} GiB | {r['pg_cores']:.1f} | {r['wal_mb_s']:.1f} MB/s | "
          f"{r['wal_gb_day']:,.0f} GB | {r['stored_fixes'] / 1e9:.1f} bn | {r['db_tb']:.2f} TB |")
    p("")
    p("One PostgreSQL primary saturates (at the planned utilisation) at: " + "; ".join(
        f"{c} cores: {n:,} phones" for c, n in d["saturation"].items()) + ".")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", default="docs/capacity-inputs.json")
    ap.add_argument("--write", help="file whose capacity:begin/end section is replaced")
    a = ap.parse_args()
    m = json.load(open(a.inputs))
    text = render(m, derive(m))
    if a.write:
        doc = open(a.write).read()
        begin, end = "<!-- capacity:begin -->", "<!-- capacity:end -->"
        i, j = doc.index(begin), doc.index(end)
        open(a.write, "w").write(doc[:i] + begin + "\n" + text + doc[j:])
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
