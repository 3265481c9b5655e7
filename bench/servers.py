#!/usr/bin/env python3
"""Server export benchmark: ferry-export reading PostgreSQL and MariaDB against the
servers' own dump tools writing the same tables, in one run.

    bench/servers.py [USERS ...]        (default: 1000000 2000000)

For each size: generates (once, cached in bench/out/) a core-v3 fixture with about five
claims per user and copies it (once) into the databases `ferry_bench_USERS` on the
machine's PostgreSQL (127.0.0.1:5432, user postgres) and MariaDB (127.0.0.1:3306, root)
with `ferry-fixtures --from`. Then, alternating which goes first, it times:

- `psql -c "\\copy (SELECT * FROM table) TO file CSV HEADER"` of each table ferry reads
  (users, claims, logins, tokens, memberships, passkeys, roles, role claims), one psql
  per table as a script would run them, against `ferry-export --source postgres://…`
  (both without TLS: the cost measured is reading, not encryption);
- `mariadb --batch -e "SELECT * FROM table"` of the same tables to files, against
  `ferry-export --source mysql://…`.

The dump tools write the tables as they lie, unordered and unjoined; ferry reads them as
they lie too, puts every table into key order with its external sort (MariaDB: the tables
beside the users; the users are ordered on the server) and joins them into one record per
user. It prints wall
time (median), peak RSS (largest seen) and the ratios. Release builds.
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
ROUNDS = 3

TABLES = IDENTITY_TABLES


def pg_url(db):
    return f"postgres://postgres@127.0.0.1:5432/{db}?sslmode=disable"


def my_url(db):
    return f"mysql://root@127.0.0.1:3306/{db}"


def users_in(engine, db):
    """The number of users in the server database, or None when it or its table is missing."""
    if engine == "postgres":
        cmd = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", 'SELECT COUNT(*) FROM "AspNetUsers"']
    else:
        cmd = ["mariadb", "-h", "127.0.0.1", "-u", "root", "-N", "-e", "SELECT COUNT(*) FROM AspNetUsers", db]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return int(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip().isdigit() else None


def load(engine, db, fixture, users):
    if users_in(engine, db) == users:
        return
    if engine == "postgres":
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db}"], check=True)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", f"CREATE DATABASE {db}"], check=True)
        url = pg_url(db)
    else:
        subprocess.run(["mariadb", "-h", "127.0.0.1", "-u", "root", "-e", f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"], check=True)
        url = my_url(db)
    print(f"copying {users} users into {engine} {db} (once)", flush=True)
    subprocess.run([os.path.join(TARGET, "ferry-fixtures"), "--from", fixture, "--out", url], check=True)


def dump_script(engine, db, out):
    """One shell script running the dump tool once per table, as an operator would."""
    lines = []
    for t in TABLES:
        f = os.path.join(out, t + (".csv" if engine == "postgres" else ".tsv"))
        if engine == "postgres":
            lines.append(f"psql '{pg_url(db)}' -qc '\\copy (SELECT * FROM \"{t}\") TO '\"'{f}'\"' CSV HEADER'")
        else:
            lines.append(f"mariadb -h 127.0.0.1 -u root --batch --quick -e 'SELECT * FROM {t}' {db} > '{f}'")
    return " && ".join(lines)


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 2_000_000]
    for tool in ("psql", "mariadb"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: it is the baseline")
    subprocess.run(["cargo", "build", "--release", "-p", "ferry-export", "-p", "ferry-fixtures"], cwd=ROOT, check=True)
    os.makedirs(OUT, exist_ok=True)
    print(f"{ROUNDS} rounds each, medians of wall time; peak RSS is the largest seen")
    print(f"{'users':>10} {'tool':<36} {'seconds':>8} {'peak RSS':>10} {'output':>10}")
    for users in sizes:
        fixture = os.path.join(OUT, f"identity-{users}.db")
        if not os.path.exists(fixture):
            subprocess.run([os.path.join(TARGET, "ferry-fixtures"), "--users", str(users), "--out", fixture], check=True)
        db = f"ferry_bench_{users}"
        for engine, baseline, url in (("postgres", "psql \\copy … CSV (8 tables)", pg_url(db)), ("mysql", "mariadb --batch (8 tables)", my_url(db))):
            load(engine, db, fixture, users)
            runs = {"dump": [], "ferry": []}
            out_bytes = {}
            for r in range(ROUNDS):
                for tool in (["dump", "ferry"] if r % 2 == 0 else ["ferry", "dump"]):
                    out = os.path.join(OUT, f"servers-{tool}")
                    shutil.rmtree(out, ignore_errors=True)
                    if tool == "dump":
                        os.makedirs(out)
                        cmd = ["sh", "-c", dump_script(engine, db, out)]
                    else:
                        cmd = [os.path.join(TARGET, "ferry-export"), "--source", url, "--out", out]
                    secs, rss, _cpu = measure(cmd)
                    runs[tool].append((secs, rss))
                    out_bytes[tool] = folder_bytes(out)
                    shutil.rmtree(out)
            med = {t: statistics.median(s for s, _ in v) for t, v in runs.items()}
            rss = {t: max(m for _, m in v) for t, v in runs.items()}
            print(f"{users:>10} {baseline:<36} {med['dump']:>8.2f} {rss['dump']:>8.0f}MB {out_bytes['dump'] / 1e6:>8.0f}MB")
            print(f"{users:>10} {'ferry-export --source ' + engine + '://…':<36} {med['ferry']:>8.2f} {rss['ferry']:>8.0f}MB {out_bytes['ferry'] / 1e6:>8.0f}MB")
            print(f"{'':>10} ratio: ferry is {med['dump'] / med['ferry']:.2f}x the dump tool's speed, its peak RSS {rss['ferry'] / rss['dump']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
