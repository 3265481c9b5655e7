#!/usr/bin/env python3
"""PBKDF2 benchmark: ferry's PBKDF2, one derivation at a time (scalar) and many at once in
SIMD lanes (AVX2, AVX-512), against OpenSSL's PKCS5_PBKDF2_HMAC (Python's
hashlib.pbkdf2_hmac calls it), for the three ASP.NET parameter sets and ferry's recovery
codes, per core and on all cores, in one run.

    bench/pbkdf2.py [SECONDS]     (about SECONDS per measurement; default 4)

Reports derivations per second (32-byte output, 16-byte salt, an 11-byte password: the
length of a recovery code) and each one's ratio to OpenSSL on the same number of cores.
A kernel the CPU lacks is reported as such.
"""
import hashlib
import multiprocessing
import os
import ssl
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ferry-bench-pbkdf2")

CASES = [
    # label, ferry PRF, hashlib name, iterations
    ("V3 SHA512", "SHA512", "sha512", 100_000),
    ("V3 SHA256", "SHA256", "sha256", 10_000),
    ("V2 SHA1", "SHA1", "sha1", 1000),
    ("recovery codes", "SHA512", "sha512", 10_000),
]
KERNELS = ["scalar", "avx2", "avx512"]


def openssl_worker(args):
    name, iterations, count, offset = args
    for i in range(count):
        hashlib.pbkdf2_hmac(name, b"my password", bytes([(i + offset) % 256]) * 16, iterations, 32)


def openssl(name, iterations, count, processes):
    started = time.perf_counter()
    if processes == 1:
        openssl_worker((name, iterations, count, 0))
    else:
        with multiprocessing.Pool(processes) as pool:
            pool.map(openssl_worker, [(name, iterations, count // processes, p) for p in range(processes)])
    return count / (time.perf_counter() - started)


def ferry(prf, iterations, count, threads, kernel):
    out = subprocess.run([BIN, prf, str(iterations), str(count), str(threads), kernel],
                         capture_output=True, text=True, check=True).stdout.strip()
    return None if out == "unavailable" else float(out)


def count_for(rate, seconds):
    return max(16, int(rate * seconds))


def cpu_features():
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    wanted = ["sha_ni", "avx2", "avx512f", "avx512vl"]
    return model, " ".join(f"{w}{'+' if w in flags else '-'}" for w in wanted)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    subprocess.run(["cargo", "build", "--release", "-p", "ferry-bench"], cwd=ROOT, check=True)
    cores = os.cpu_count()
    model, features = cpu_features()
    print(f"OpenSSL: {ssl.OPENSSL_VERSION}; {cores} cores; {model}; {features}")
    print(f"{'case':<15} {'iterations':>10} {'implementation':<15} {'1 core':>11} {'vs OpenSSL':>10} {f'{cores} cores':>11} {'vs OpenSSL':>10}")
    for label, prf, name, iterations in CASES:
        # Calibrate on a short run so each measurement takes about `seconds`.
        probe = openssl(name, iterations, 8, 1)
        o1 = openssl(name, iterations, count_for(probe, seconds), 1)
        on = openssl(name, iterations, count_for(probe * cores, seconds), cores)
        rows = [("OpenSSL", o1, on)]
        for kernel in KERNELS:
            probe_k = ferry(prf, iterations, 64, 1, kernel)
            if probe_k is None:
                rows.append((kernel, None, None))
                continue
            f1 = ferry(prf, iterations, count_for(probe_k, seconds), 1, kernel)
            fn = ferry(prf, iterations, count_for(probe_k * cores, seconds), cores, kernel)
            rows.append((f"ferry {kernel}", f1, fn))
        for impl, r1, rn in rows:
            if r1 is None:
                print(f"{label:<15} {iterations:>10} {'ferry ' + impl:<15} {'(this CPU lacks it)':>11}")
                continue
            print(f"{label:<15} {iterations:>10} {impl:<15} {r1:>9.1f}/s {r1 / o1:>9.2f}x {rn:>9.1f}/s {rn / on:>9.2f}x")


if __name__ == "__main__":
    main()
