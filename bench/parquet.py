#!/usr/bin/env python3
"""Parquet export benchmark: `ferry-export --format parquet` against DuckDB exporting the
same tables from the same SQLite file to Parquet, in one run.

    bench/parquet.py [USERS ...]        (default: 1000000 2000000)

For each size: generates (once, cached in bench/out/) a core-v3 fixture with about five
claims per user. Then it times, alternating which goes first:

- DuckDB (`duckdb` from PyPI with its sqlite_scanner extension, also from PyPI) attaching
  the file read-only and running `COPY table TO 'table.parquet' (FORMAT parquet,
  COMPRESSION zstd)` for each of the tables ferry reads (users, claims, logins, tokens,
  memberships, passkeys, roles, role claims), on every core;
- `ferry-export --format parquet` writing a bundle.

It prints wall time, peak RSS, output size and the ratios. DuckDB and the extension are
installed into bench/out/pydeps the first time. Release builds.
"""
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from measure import IDENTITY_TABLES, measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
TARGET = os.path.join(ROOT, "target", "release")
PYDEPS = os.path.join(OUT, "pydeps")
DUCKDB = "1.5.5"
ROUNDS = 3

TABLES = IDENTITY_TABLES

DUCKDB_SCRIPT = """
import glob, os, sys
import duckdb
db, out = sys.argv[1], sys.argv[2]
ext = glob.glob(os.path.join(sys.argv[3], "duckdb_extension_sqlite_scanner", "extensions", "*", "sqlite_scanner.duckdb_extension"))[0]
c = duckdb.connect()
c.execute(f"LOAD '{ext}'")
c.execute(f"ATTACH '{db}' AS src (TYPE sqlite, READ_ONLY)")
for t in sys.argv[4:]:
    c.execute(f"COPY src.{t} TO '{os.path.join(out, t)}.parquet' (FORMAT parquet, COMPRESSION zstd)")
"""


def install_duckdb():
    probe = subprocess.run([sys.executable, "-c", "import duckdb, duckdb_extension_sqlite_scanner"], env={**os.environ, "PYTHONPATH": PYDEPS}, capture_output=True)
    if probe.returncode == 0:
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", PYDEPS,
         f"duckdb=={DUCKDB}", f"duckdb-extension-sqlite-scanner=={DUCKDB}"],
        check=True,
    )


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 2_000_000]
    subprocess.run(["cargo", "build", "--release", "-p", "ferry-export", "-p", "ferry-fixtures"], cwd=ROOT, check=True)
    os.makedirs(OUT, exist_ok=True)
    install_duckdb()
    env = {**os.environ, "PYTHONPATH": PYDEPS}
    print(f"{ROUNDS} rounds each, medians of wall time; peak RSS is the largest seen")
    print(f"{'users':>10} {'tool':<26} {'seconds':>8} {'peak RSS':>10} {'output':>10}")
    for users in sizes:
        db = os.path.join(OUT, f"identity-{users}.db")
        if not os.path.exists(db):
            subprocess.run([os.path.join(TARGET, "ferry-fixtures"), "--users", str(users), "--out", db], check=True)
        runs = {"duckdb": [], "ferry": []}
        sizes_out = {}
        for r in range(ROUNDS):
            for tool in (["duckdb", "ferry"] if r % 2 == 0 else ["ferry", "duckdb"]):
                out = os.path.join(OUT, f"parquet-{tool}")
                shutil.rmtree(out, ignore_errors=True)
                if tool == "duckdb":
                    os.makedirs(out)
                    cmd = [sys.executable, "-c", DUCKDB_SCRIPT, db, out, PYDEPS, *TABLES]
                else:
                    cmd = [os.path.join(TARGET, "ferry-export"), "--source", db, "--out", out, "--format", "parquet"]
                secs, rss, _cpu = measure(cmd, env=env)
                runs[tool].append((secs, rss))
                sizes_out[tool] = folder_bytes(out)
                shutil.rmtree(out)
        med = {t: statistics.median(s for s, _ in v) for t, v in runs.items()}
        rss = {t: max(m for _, m in v) for t, v in runs.items()}
        print(f"{users:>10} {'duckdb COPY (sqlite_scanner)':<26} {med['duckdb']:>8.2f} {rss['duckdb']:>8.0f}MB {sizes_out['duckdb'] / 1e6:>8.0f}MB")
        print(f"{users:>10} {'ferry-export --format parquet':<26} {med['ferry']:>8.2f} {rss['ferry']:>8.0f}MB {sizes_out['ferry'] / 1e6:>8.0f}MB")
        print(f"{'':>10} ratio: ferry is {med['duckdb'] / med['ferry']:.2f}x DuckDB's speed, its output {sizes_out['ferry'] / sizes_out['duckdb']:.2f}x DuckDB's size, its peak RSS {rss['ferry'] / rss['duckdb']:.2f}x")


if __name__ == "__main__":
    main()
