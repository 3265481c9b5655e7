#!/usr/bin/env python3
"""PBKDF2 benchmark: ferry's PBKDF2 against OpenSSL's PKCS5_PBKDF2_HMAC (Python's
hashlib.pbkdf2_hmac calls it), for the three ASP.NET parameter sets, in one run.

    bench/pbkdf2.py

Reports verifications per second per core: ferry on one thread and on two threads
(each in one process run), OpenSSL on one thread, and the ratios.
"""
import hashlib
import os
import ssl
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ferry-bench-pbkdf2")

CASES = [
    # Counts sized for about five seconds per measurement: shorter runs understate the
    # two-core scaling (thread start-up, frequency ramps).
    ("V2", "SHA1", "sha1", 1000, 20_000),
    ("V3 SHA256", "SHA256", "sha256", 10_000, 4_000),
    ("V3 SHA512", "SHA512", "sha512", 100_000, 60),
]


def openssl(name, iterations, count):
    started = time.perf_counter()
    for i in range(count):
        hashlib.pbkdf2_hmac(name, b"my password", bytes([i % 256]) * 16, iterations, 32)
    return count / (time.perf_counter() - started)


def ferry(prf, iterations, count, threads):
    out = subprocess.run([BIN, prf, str(iterations), str(count), str(threads)], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main():
    subprocess.run(["cargo", "build", "--release", "-p", "ferry-bench"], cwd=ROOT, check=True)
    print(f"OpenSSL: {ssl.OPENSSL_VERSION}; {os.cpu_count()} cores")
    print(f"{'case':<11} {'iterations':>10} {'OpenSSL 1 core':>15} {'ferry 1 core':>13} {'ratio':>6} {'ferry 2 cores':>14} {'scaling':>8}")
    for label, prf, name, iterations, count in CASES:
        o = openssl(name, iterations, count)
        f1 = ferry(prf, iterations, count, 1)
        f2 = ferry(prf, iterations, count * 2, 2)
        print(f"{label:<11} {iterations:>10} {o:>13.1f}/s {f1:>11.1f}/s {f1 / o:>5.2f}x {f2:>12.1f}/s {f2 / f1:>7.2f}x")


if __name__ == "__main__":
    main()
