"""Run a command and measure its wall time and peak resident memory (of that process)."""
import os
import subprocess
import time


def measure(cmd, stdout=subprocess.DEVNULL, env=None, ok_codes=(0,)):
    """Returns (seconds, peak RSS in MiB, CPU seconds (user + system)) of `cmd`."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in ok_codes:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({code}):\n{err}")
    return seconds, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime
