#!/usr/bin/env python3
"""Load benchmark: ferry-import load against a plain SQLite bulk insert of the same rows.

    bench/load.py [USERS] [TWO_FACTOR_USERS] [ROUNDS]   (defaults: 1000000 100000 1;
                                                         TWO_FACTOR_USERS 0 skips step 3)

1. A core-v3 fixture of USERS users without 2FA is exported, its one role whose name
   cannot be a role id ("Billing Manager") is fixed by hand and sealed, and the bundle is
   loaded into a fresh store by `ferry-import load`; so is one of a tenth of the users
   first, to show that peak RSS does not grow with the users.
2. The raw insert inserts exactly the rows ferry wrote (every table of the finished store)
   into a fresh store with the same schema, indexes and page size, in a single transaction,
   in the order ferry wrote them: one `INSERT … SELECT … ORDER BY` per table, so SQLite
   inserts row after row into each table and index, with no checks and no mapping. That is
   SQLite's plain bulk insert, what any loader of these rows pays at the least.
   Beside it, the B-tree copy runs the same statements without ORDER BY. SQLite then takes
   its transfer optimisation: it copies each table and each index of the finished store in
   key order, appending pages, and inserts no row. It needs the finished store to copy from,
   so no loader can do it; it is reported to show how far below a row insert it is.
ROUNDS > 1 repeats steps 1 (the full load) and 2 in turn and reports the median of each
and the ratios: single runs of either scatter by 10-30% on a small machine.

3. Separately, TWO_FACTOR_USERS users of whom 5% carry TOTP and 10 recovery codes are
   loaded twice, with the CPU utilisation of each run: once with the codes hashed one at a
   time (FERRY_PBKDF2_KERNEL=scalar) and once in SIMD lanes, many codes at once (the
   default). Recovery codes are hashed with PBKDF2-HMAC-SHA512, 10,000 iterations each,
   on every core.
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


def bundle_for(users, two_factor, part_size=None):
    """The fixture of `users` users (`two_factor` percent with 2FA) exported and sealed, its
    role named "Billing Manager" fixed by hand; in parts of `part_size` users if given."""
    db = os.path.join(OUT, f"identity-{users}-2fa{two_factor}.db")
    bundle = os.path.join(OUT, f"bundle-{users}-2fa{two_factor}" + (f"-parts{part_size}" if part_size else ""))
    if not os.path.exists(db):
        subprocess.run([tool("ferry-fixtures"), "--users", str(users), "--two-factor-percent", str(two_factor), "--out", db], check=True)
    if not os.path.exists(os.path.join(bundle, "manifest.json")):
        parts = ["--part-size", str(part_size)] if part_size else []
        subprocess.run([tool("ferry-export"), "--source", db, "--out", bundle, "--force"] + parts, check=True, stderr=subprocess.DEVNULL)
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


# The order ferry writes each table's rows in: rowid tables by rowid, the WITHOUT ROWID ones
# by the user (or result) they were written for.
WRITE_ORDER = {
    "roles": "rowid", "users": "rowid", "unique_keys": "user_id", "passwords": "rowid",
    "otp_addresses": "rowid", "external_logins": "user_id", "passkeys": "rowid",
    "totp_devices": "user_id", "recovery_codes": "rowid", "memberships": "user_id",
    "import_runs": "rowid", "import_results": "run_id, seq",
}


def copy_store(store, ordered):
    """Inserts every row of the finished `store` into a fresh store of the same schema.

    `ordered`: row by row in write order (the raw insert); otherwise SQLite's transfer
    optimisation copies each table and index B-tree in key order (the B-tree copy)."""
    raw = os.path.join(OUT, "raw.db")
    fresh(raw)
    schema = subprocess.run(["sqlite3", store, ".schema"], capture_output=True, text=True, check=True).stdout
    schema = "\n".join(l for l in schema.splitlines() if "sqlite_sequence" not in l)
    page_size = subprocess.run(["sqlite3", store, "PRAGMA page_size"], capture_output=True, text=True, check=True).stdout.strip()
    setup = f"PRAGMA page_size = {page_size};\nPRAGMA journal_mode = WAL;\n"
    subprocess.run(["sqlite3", raw], input=setup + schema, text=True, check=True, capture_output=True)
    script = os.path.join(OUT, "raw.sql")
    with open(script, "w") as f:
        f.write("PRAGMA synchronous = NORMAL;\nPRAGMA cache_size = -131072;\n")
        f.write(f"ATTACH '{store}' AS src;\nBEGIN;\n")
        for table, order in WRITE_ORDER.items():
            f.write(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
            f.write(f" ORDER BY {order};\n" if ordered else ";\n")
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
    ferry_runs, raw_runs, copy_runs = [], [], []
    for _ in range(rounds):
        fresh(store)
        ferry_runs.append(measure([tool("ferry-import"), "load", bundle, "--schema", SCHEMA, "--target", store], ok_codes=(0, 1)))
        raw_runs.append(copy_store(store, ordered=True))
        copy_runs.append(copy_store(store, ordered=False))
    loaded = int(subprocess.run(["sqlite3", store, "SELECT COUNT(*) FROM users"], capture_output=True, text=True, check=True).stdout)
    f_s, f_rss = statistics.median(r[0] for r in ferry_runs), max(r[1] for r in ferry_runs)
    r_s, r_rss = statistics.median(r[0] for r in raw_runs), max(r[1] for r in raw_runs)
    c_s, c_rss = statistics.median(r[0] for r in copy_runs), max(r[1] for r in copy_runs)

    def row(label, seconds, rss, note=""):
        print(f"{label:<40} {users:>9} {seconds:>8.2f} {users / seconds:>9.0f} {rss:>7.0f}MB{note}")

    print(f"{'':<40} {'users':>9} {'seconds':>8} {'users/s':>9} {'peak RSS':>9}")
    print(f"{'ferry-import load, a tenth':<40} {small:>9} {s_s:>8.2f} {small / s_s:>9.0f} {s_rss:>7.0f}MB")
    if rounds > 1:
        for i, (f, r, c) in enumerate(zip(ferry_runs, raw_runs, copy_runs), 1):
            row(f"round {i}: ferry-import load", f[0], f[1])
            row(f"round {i}: raw insert", r[0], r[1], f"  ({f[0] / r[0]:.1f}x)")
            row(f"round {i}: B-tree copy", c[0], c[1], f"  ({f[0] / c[0]:.1f}x)")
    median = " (median)" if rounds > 1 else ""
    row("ferry-import load" + median, f_s, f_rss, f"  ({loaded} users created)")
    row("raw insert, rows in write order" + median, r_s, r_rss)
    row("B-tree copy, no row inserted" + median, c_s, c_rss)
    print(f"ratio: ferry-import load takes {f_s / r_s:.1f}x the time of the raw insert "
          f"({f_s / c_s:.1f}x that of the B-tree copy)")

    if tf_users == 0:
        return
    tf_bundle = bundle_for(tf_users, 5)
    cores = os.cpu_count()
    runs = {}
    # The recovery codes hashed one at a time (the scalar kernel pinned: what load did
    # before the SIMD lanes), then in lanes with the widest kernel the CPU has.
    for label, kernel in (("one at a time", "scalar"), ("in SIMD lanes", None)):
        fresh(store)
        env = dict(os.environ)
        env.pop("FERRY_PBKDF2_KERNEL", None)
        if kernel:
            env["FERRY_PBKDF2_KERNEL"] = kernel
        t_s, t_rss, t_cpu = measure([tool("ferry-import"), "load", tf_bundle, "--schema", SCHEMA, "--target", store], ok_codes=(0, 1), env=env)
        codes = int(subprocess.run(["sqlite3", store, "SELECT COUNT(*) FROM recovery_codes"], capture_output=True, text=True, check=True).stdout)
        runs[label] = t_s
        print(f"{'load, 5% with TOTP + 10 codes, ' + label:<40} {tf_users:>9} {t_s:>8.2f} {tf_users / t_s:>9.0f} {t_rss:>7.0f}MB  "
              f"({codes} recovery codes hashed; CPU {t_cpu:.1f}s = {100 * t_cpu / (t_s * cores):.0f}% of {cores} cores)")
    print(f"ratio: the 2FA load in SIMD lanes is {runs['one at a time'] / runs['in SIMD lanes']:.2f}x as fast as one code at a time")

if __name__ == "__main__":
    main()
