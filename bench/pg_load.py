#!/usr/bin/env python3
"""PostgreSQL store benchmark: ferry-import load with 1, 2 and 4 processes against a raw
COPY of the same rows into the same tables and indexes.

    bench/pg_load.py [USERS] [ROUNDS]   (defaults: 1000000 1)

1. A core-v3 fixture of USERS users without 2FA is exported in parts of 50,000 users (so
   that 4 shares get 5 parts each), its one role whose name cannot be a role id is fixed by
   hand and sealed.
2. For P = 1, 2, 4 the bundle is loaded into a new database of the machine's PostgreSQL
   (127.0.0.1:5432, user postgres) by P `ferry-import load --parts K/P` processes at once:
   the wall time from the first start to the last end, and each process's peak RSS.
3. The raw COPY: every table of the store the 1-process load wrote is dumped with psql
   `\\copy … TO … (FORMAT binary)`, and copied back with `\\copy … FROM …` into a new
   database whose store schema ferry created (the same tables, indexes, foreign keys), in
   one transaction, by one psql. That is what the server pays to take these rows at the
   least: no lookups, no decisions, no mapping.
ROUNDS > 1 repeats 2 and 3 and reports medians. Users/s and the ratios are printed.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from load import bundle_for, tool  # noqa: E402
from measure import measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
SCHEMA = os.path.join(ROOT, "schemas", "scim-user.json")
SERVER = "postgres://postgres@127.0.0.1:5432"
DB = "ferry_bench_store"

# In the order the foreign keys need.
TABLES = ["settings", "roles", "users", "claims", "passwords", "otp_addresses", "external_logins",
          "passkeys", "totp_devices", "recovery_codes", "memberships", "import_runs", "import_results"]


def psql(sql, db="test"):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{SERVER}/{db}", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def fresh_db():
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB}")
    return f"{SERVER}/{DB}?sslmode=disable"


def load(bundle, processes):
    """P loaders at once into a new database: (wall seconds, peak RSS MiB of each)."""
    target = fresh_db()
    os.sync()
    started = time.perf_counter()
    procs = []
    for k in range(1, processes + 1):
        cmd = [tool("ferry-import"), "load", bundle, "--schema", SCHEMA, "--target", target, "--json"]
        if processes > 1:
            cmd += ["--parts", f"{k}/{processes}"]
        err = tempfile.TemporaryFile()
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err), err))
    rss = []
    for proc, err in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            err.seek(0)
            raise SystemExit(f"load failed ({code}):\n{err.read().decode(errors='replace')[-4000:]}")
        rss.append(usage.ru_maxrss / 1024.0)
    return time.perf_counter() - started, rss


def dump(folder):
    """Dumps every table of the store just loaded, in binary COPY format."""
    script = "".join(f"\\copy ferry.{t} TO '{folder}/{t}.bin' (FORMAT binary)\n" for t in TABLES)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{SERVER}/{DB}"], input=script.encode(), check=True)


def raw_copy(bundle, folder):
    """COPY of the dumped rows into a new store made by ferry (one user loaded, then
    emptied): wall seconds."""
    target = fresh_db()
    subprocess.run([tool("ferry-import"), "load", bundle, "--schema", SCHEMA, "--target", target, "--limit", "1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    psql("TRUNCATE " + ", ".join(f"ferry.{t}" for t in TABLES) + " RESTART IDENTITY CASCADE", DB)
    script_path = os.path.join(folder, "copy.sql")
    with open(script_path, "w") as f:
        f.write("".join(f"\\copy ferry.{t} FROM '{folder}/{t}.bin' (FORMAT binary)\n" for t in TABLES))
    seconds, _, _ = measure(["psql", "-q", "-1", "-v", "ON_ERROR_STOP=1", f"{SERVER}/{DB}", "-f", script_path])
    return seconds


def main():
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    os.makedirs(OUT, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "ferry-import", "-p", "ferry-export",
                    "-p", "ferry-fixtures"], check=True, cwd=ROOT)
    bundle = bundle_for(users, 0, part_size=50_000)
    folder = tempfile.mkdtemp(prefix="ferry-pg-copy-")
    os.chmod(folder, 0o755)
    times = {1: [], 2: [], 4: []}
    rss = {1: [], 2: [], 4: []}
    raw = []
    try:
        for r in range(rounds):
            for p in (1, 2, 4):
                seconds, peaks = load(bundle, p)
                times[p].append(seconds)
                rss[p].append(max(peaks))
                print(f"round {r + 1}: {p} process(es): {seconds:.2f} s, {users / seconds:,.0f} users/s, "
                      f"peak RSS {', '.join(f'{m:.0f}' for m in peaks)} MB", flush=True)
                if p == 1 and r == 0:
                    dump(folder)
            seconds = raw_copy(bundle, folder)
            raw.append(seconds)
            print(f"round {r + 1}: raw COPY of the same rows: {seconds:.2f} s, {users / seconds:,.0f} users/s",
                  flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    copy = statistics.median(raw)
    print(f"\n{users:,} users, medians of {rounds} round(s):")
    print(f"  raw COPY            {copy:7.2f} s  {users / copy:10,.0f} users/s")
    for p in (1, 2, 4):
        t = statistics.median(times[p])
        print(f"  ferry, {p} process(es) {t:7.2f} s  {users / t:10,.0f} users/s  "
              f"{t / copy:4.2f}x raw COPY's time  peak RSS {max(rss[p]):.0f} MB")


if __name__ == "__main__":
    main()
