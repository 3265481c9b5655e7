#!/usr/bin/env python3
"""Load benchmark: ferry-import load against a plain SQLite bulk insert of the same rows.

    bench/load.py [USERS] [TWO_FACTOR_USERS] [ROUNDS]   (defaults: 1000000 100000 1;
                                                         TWO_FACTOR_USERS 0 skips step 3)

1. A core-v3 fixture of USERS users without 2FA is exported, its one role whose name
   cannot be a role id ("Billing Manager") is fixed by hand and sealed, and the bundle is
   loaded into a fresh store by `ferry-import load`; so is one of a tenth of the users
   first, to show that peak RSS does not grow with the users.
2. The baseline inserts exactly the rows ferry wrote (every table of the finished store)
   into a fresh store with the same schema, indexes and page size, with one `INSERT … SELECT` per
   table in a single transaction: SQLite's plain bulk insert, no checks, no mapping.
ROUNDS > 1 repeats steps 1 (the full load) and 2 in turn and reports the median of each
and their ratio: single runs of either scatter by 10-30% on a small machine.

3. Separately, TWO_FACTOR_USERS users of whom 5% carry TOTP and 10 recovery codes are
   loaded, and the CPU utilisation of the run is reported (recovery codes are hashed
   with PBKDF2-HMAC-SHA512, 10,000 iterations each, in parallel).
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
TARGET = os.path.join(ROOT, "target", "release")
SCHEMA = os.path.join(ROOT, "schemas", "scim-user.json")


def tool(name):
    return os.path.join(TARGET, name)


def bundle_for(users, two_factor):
    db = os.path.join(OUT, f"identity-{users}-2fa{two_factor}.db")
    bundle = os.path.join(OUT, f"bundle-{users}-2fa{two_factor}")
    if not os.path.exists(db):
        subprocess.run([tool("ferry-fixtures"), "--users", str(users), "--two-factor-percent", str(two_factor), "--out", db], check=True)
    if not os.path.exists(os.path.join(bundle, "manifest.json")):
        subprocess.run([tool("ferry-export"), "--source", db, "--out", bundle, "--force"], check=True, stderr=subprocess.DEVNULL)
        roles = os.path.join(bundle, "roles.ndjson")
        with open(roles) as f:
            text = f.read()
        with open(roles, "w") as f:
            f.write(text.replace('"Billing Manager"', '"Billing-Manager"'))
        subprocess.run([tool("ferry-import"), "seal", bundle], check=True, stderr=subprocess.DEVNULL)
    return bundle


def fresh(path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def raw_insert(store):
    """Inserts every row of the finished `store` into a fresh store of the same schema."""
    raw = os.path.join(OUT, "raw.db")
    fresh(raw)
    schema = subprocess.run(["sqlite3", store, ".schema"], capture_output=True, text=True, check=True).stdout
    schema = "\n".join(l for l in schema.splitlines() if "sqlite_sequence" not in l)
    page_size = subprocess.run(["sqlite3", store, "PRAGMA page_size"], capture_output=True, text=True, check=True).stdout.strip()
    setup = f"PRAGMA page_size = {page_size};\nPRAGMA journal_mode = WAL;\n"
    subprocess.run(["sqlite3", raw], input=setup + schema, text=True, check=True, capture_output=True)
    tables = ["roles", "users", "unique_keys", "passwords", "otp_addresses", "external_logins", "passkeys",
              "totp_devices", "recovery_codes", "memberships", "import_runs", "import_results"]
    script = os.path.join(OUT, "raw.sql")
    with open(script, "w") as f:
        f.write("PRAGMA synchronous = NORMAL;\nPRAGMA cache_size = -131072;\n")
        f.write(f"ATTACH '{store}' AS src;\nBEGIN;\n")
        for t in tables:
            f.write(f"INSERT INTO main.{t} SELECT * FROM src.{t};\n")
        f.write("COMMIT;\n")
    return measure(["sqlite3", "-init", script, raw, ".quit"])


def main():
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    tf_users = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if shutil.which("sqlite3") is None:
        raise SystemExit("sqlite3 is not installed (apt-get install sqlite3): it runs the baseline")
    subprocess.run(["cargo", "build", "--release", "-p", "ferry-export", "-p", "ferry-import", "-p", "ferry-fixtures"], cwd=ROOT, check=True)
    os.makedirs(OUT, exist_ok=True)

    store = os.path.join(OUT, "store.db")
    # A tenth of the users first: peak RSS must not grow with the users.
    small = max(users // 10, 1)
    fresh(store)
    s_s, s_rss, _ = measure([tool("ferry-import"), "load", bundle_for(small, 0), "--schema", SCHEMA, "--target", store], ok_codes=(0, 1))

    bundle = bundle_for(users, 0)
    ferry_runs, raw_runs = [], []
    for _ in range(rounds):
        fresh(store)
        ferry_runs.append(measure([tool("ferry-import"), "load", bundle, "--schema", SCHEMA, "--target", store], ok_codes=(0, 1)))
        raw_runs.append(raw_insert(store))
    loaded = int(subprocess.run(["sqlite3", store, "SELECT COUNT(*) FROM users"], capture_output=True, text=True, check=True).stdout)
    f_s, f_rss = statistics.median(r[0] for r in ferry_runs), max(r[1] for r in ferry_runs)
    r_s, r_rss = statistics.median(r[0] for r in raw_runs), max(r[1] for r in raw_runs)

    print(f"{'':<34} {'users':>9} {'seconds':>8} {'users/s':>9} {'peak RSS':>9}")
    print(f"{'ferry-import load, a tenth':<34} {small:>9} {s_s:>8.2f} {small / s_s:>9.0f} {s_rss:>7.0f}MB")
    if rounds > 1:
        for i, (f, r) in enumerate(zip(ferry_runs, raw_runs), 1):
            print(f"{f'round {i}: ferry-import load':<34} {users:>9} {f[0]:>8.2f} {users / f[0]:>9.0f} {f[1]:>7.0f}MB")
            print(f"{f'round {i}: raw insert':<34} {users:>9} {r[0]:>8.2f} {users / r[0]:>9.0f} {r[1]:>7.0f}MB  ({f[0] / r[0]:.1f}x)")
    median = " (median)" if rounds > 1 else ""
    print(f"{'ferry-import load' + median:<34} {users:>9} {f_s:>8.2f} {users / f_s:>9.0f} {f_rss:>7.0f}MB  ({loaded} users created)")
    print(f"{'sqlite3 INSERT…SELECT' + median:<34} {users:>9} {r_s:>8.2f} {users / r_s:>9.0f} {r_rss:>7.0f}MB")
    print(f"ratio: ferry-import load takes {f_s / r_s:.1f}x the time of the raw insert")

    if tf_users == 0:
        return
    tf_bundle = bundle_for(tf_users, 5)
    fresh(store)
    t_s, t_rss, t_cpu = measure([tool("ferry-import"), "load", tf_bundle, "--schema", SCHEMA, "--target", store], ok_codes=(0, 1))
    codes = int(subprocess.run(["sqlite3", store, "SELECT COUNT(*) FROM recovery_codes"], capture_output=True, text=True, check=True).stdout)
    cores = os.cpu_count()
    print(f"{'load, 5% with TOTP + 10 codes':<34} {tf_users:>9} {t_s:>8.2f} {tf_users / t_s:>9.0f} {t_rss:>7.0f}MB  "
          f"({codes} recovery codes hashed; CPU {t_cpu:.1f}s = {100 * t_cpu / (t_s * cores):.0f}% of {cores} cores)")


if __name__ == "__main__":
    main()
