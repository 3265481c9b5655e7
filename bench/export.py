#!/usr/bin/env python3
"""Export benchmark: ferry-export against `sqlite3 -json` dumping the same rows, in one run.

    bench/export.py [USERS ...]        (default: 1000000 2000000)

For each size: generates (once, cached in bench/out/) a core-v3 fixture with about five
claims per user, then times `sqlite3 -json` writing every row ferry reads (users, claims,
logins, tokens, memberships, passkeys, roles, role claims) to a file, and `ferry-export`
writing a bundle, and prints users/s, peak RSS and the ratio. Release builds.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from measure import measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
TARGET = os.path.join(ROOT, "target", "release")

DUMP_SQL = """.mode json
SELECT * FROM AspNetUsers;
SELECT * FROM AspNetUserClaims;
SELECT * FROM AspNetUserLogins;
SELECT * FROM AspNetUserTokens;
SELECT * FROM AspNetUserRoles;
SELECT * FROM AspNetUserPasskeys;
SELECT * FROM AspNetRoles;
SELECT * FROM AspNetRoleClaims;
"""


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 2_000_000]
    if shutil.which("sqlite3") is None:
        raise SystemExit("sqlite3 is not installed (apt-get install sqlite3): it is the baseline")
    subprocess.run(["cargo", "build", "--release", "-p", "ferry-export", "-p", "ferry-fixtures"], cwd=ROOT, check=True)
    os.makedirs(OUT, exist_ok=True)
    print(f"{'users':>10} {'claims':>10} {'tool':<16} {'seconds':>8} {'users/s':>10} {'peak RSS':>10}")
    for users in sizes:
        db = os.path.join(OUT, f"identity-{users}.db")
        if not os.path.exists(db):
            subprocess.run([os.path.join(TARGET, "ferry-fixtures"), "--users", str(users), "--out", db], check=True)
        claims = subprocess.run(["sqlite3", db, "SELECT COUNT(*) FROM AspNetUserClaims"], capture_output=True, text=True, check=True).stdout.strip()
        dump = os.path.join(OUT, "dump.json")
        with open(dump, "wb") as f:
            p_in = os.path.join(OUT, "dump.sql")
            with open(p_in, "w") as s:
                s.write(DUMP_SQL)
            sq_s, sq_rss, _cpu = measure(["sqlite3", "-init", p_in, db, ".quit"], stdout=f)
        dump_bytes = os.path.getsize(dump)
        os.remove(dump)
        bundle = os.path.join(OUT, "bundle")
        fe_s, fe_rss, _cpu = measure([os.path.join(TARGET, "ferry-export"), "--source", db, "--out", bundle, "--force"])
        bundle_bytes = sum(os.path.getsize(os.path.join(bundle, n)) for n in os.listdir(bundle))
        shutil.rmtree(bundle)
        print(f"{users:>10} {claims:>10} {'sqlite3 -json':<16} {sq_s:>8.2f} {users / sq_s:>10.0f} {sq_rss:>8.1f}MB  ({dump_bytes / 1e6:.0f} MB written)")
        print(f"{users:>10} {claims:>10} {'ferry-export':<16} {fe_s:>8.2f} {users / fe_s:>10.0f} {fe_rss:>8.1f}MB  ({bundle_bytes / 1e6:.0f} MB written)")
        print(f"{'':>10} {'':>10} {'ratio':<16} ferry-export is {sq_s / fe_s:.2f}x the speed of sqlite3 -json")


if __name__ == "__main__":
    main()
