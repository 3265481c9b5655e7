#!/usr/bin/env python3
"""A/B benchmark: two builds of ferry, side by side on the same data, rounds alternating.

    bench/ab.py BEFORE_DIR AFTER_DIR [USERS] [ROUNDS]     (defaults: 1000000 3)

BEFORE_DIR and AFTER_DIR each hold a ferry-export and a ferry-import (e.g. copies of
target/release from two commits). For USERS users (a core-v3 fixture without 2FA, generated
once into bench/out/ by AFTER's ferry-fixtures), each round exports the fixture with both
builds and loads the bundle into a fresh store with both, alternating which goes first; it
reports the median wall time and CPU time (user + system), the peak RSS of each and the
ratios AFTER / BEFORE. This is the
check that a change which should not change speed did not: on a small machine whose speed
drifts by 10-30% within minutes, only alternating rounds compare two builds fairly.
"""
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from measure import measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
SCHEMA = os.path.join(ROOT, "schemas", "scim-user.json")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    builds = {"before": sys.argv[1], "after": sys.argv[2]}
    users = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    os.makedirs(OUT, exist_ok=True)
    db = os.path.join(OUT, f"ab-{users}.db")
    if not os.path.exists(db):
        fixtures = os.path.join(builds["after"], "ferry-fixtures")
        subprocess.run([fixtures, "--users", str(users), "--two-factor-percent", "0", "--out", db], check=True)
    results = {(b, step): [] for b in builds for step in ("export", "load")}
    for r in range(rounds):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for b in order:
            bundle = os.path.join(OUT, f"ab-bundle-{b}")
            secs, rss, cpu = measure([os.path.join(builds[b], "ferry-export"), "--source", db, "--out", bundle, "--force"])
            results[(b, "export")].append((secs, rss, cpu))
        for b in order:
            bundle = os.path.join(OUT, f"ab-bundle-{b}")
            store = os.path.join(OUT, f"ab-store-{b}.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(store + suffix):
                    os.remove(store + suffix)
            # Duplicate e-mails fail a few records: exit 1 is a finished load.
            secs, rss, cpu = measure([os.path.join(builds[b], "ferry-import"), "load", bundle, "--schema", SCHEMA, "--target", store], ok_codes=(0, 1))
            results[(b, "load")].append((secs, rss, cpu))
        print(f"round {r + 1}: " + ", ".join(f"{b} {s} {results[(b, s)][-1][0]:.2f}s" for s in ("export", "load") for b in order), flush=True)
    print(f"\n{users} users, {rounds} rounds, medians:")
    print(f"{'step':<8} {'before':>9} {'after':>9} {'ratio':>6} {'CPU before':>11} {'CPU after':>10} {'ratio':>6} {'RSS before':>11} {'RSS after':>10}")
    for step in ("export", "load"):
        def med(b, i):
            return statistics.median(r[i] for r in results[(b, step)])
        before, after = med("before", 0), med("after", 0)
        cpu_b, cpu_a = med("before", 2), med("after", 2)
        rss_b = max(r[1] for r in results[("before", step)])
        rss_a = max(r[1] for r in results[("after", step)])
        print(f"{step:<8} {before:>8.2f}s {after:>8.2f}s {after / before:>5.2f}x {cpu_b:>10.2f}s {cpu_a:>9.2f}s {cpu_a / cpu_b:>5.2f}x {rss_b:>9.0f}MB {rss_a:>8.0f}MB")
    for b in builds:
        shutil.rmtree(os.path.join(OUT, f"ab-bundle-{b}"), ignore_errors=True)


if __name__ == "__main__":
    main()
