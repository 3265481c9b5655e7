"""Run a command and measure its wall time, peak resident memory and CPU time."""
import os
import subprocess
import tempfile
import time


def measure(cmd, stdout=subprocess.DEVNULL, env=None, ok_codes=(0,)):
    """Returns (seconds, peak RSS in MiB, CPU seconds (user + system)) of `cmd`.

    The page cache is synced first. Standard error goes to a temporary file, not a pipe: a pipe read only after the
    command ends would fill up and stall a command that writes a lot of warnings."""
    # Dirty pages of earlier runs (a deleted store is still being written back) would
    # otherwise compete with this one for the disk.
    os.sync()
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code not in ok_codes:
            err.seek(0)
            text = err.read().decode(errors="replace")
            raise SystemExit(f"{' '.join(map(str, cmd))} failed ({code}):\n{text[-4000:]}")
    return seconds, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


# The tables ferry reads, as every baseline dumps them.
IDENTITY_TABLES = [
    "AspNetUsers",
    "AspNetUserClaims",
    "AspNetUserLogins",
    "AspNetUserTokens",
    "AspNetUserRoles",
    "AspNetUserPasskeys",
    "AspNetRoles",
    "AspNetRoleClaims",
]
