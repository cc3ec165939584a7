"""The machine and its noise: what it is, how much CPU other jobs use, and
repeating runs that other jobs disturbed. Also the process helpers the
measurements share (/proc readers, ports, timed child processes)."""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..log import log
from .records import Measured, Meta, QuietCheck

CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(cmd: str) -> str:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
    return (p.stdout + p.stderr).strip()


def machine_info() -> Meta:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return Meta(
        cpu=model,
        cores=os.cpu_count() or 0,
        mem_gib=round(mem_kb / 1024 / 1024, 1),
        kernel=platform.release(),
        os=sh('. /etc/os-release && echo "$PRETTY_NAME"'),
        virtualization=sh("systemd-detect-virt 2>/dev/null || echo unknown"),
        tools={
            "nginx": sh("nginx -v 2>&1").replace("nginx version: ", ""),
            "wrk": sh("wrk -v 2>&1 | head -n 1").split(" [")[0],
            "h2load": sh("h2load --version 2>&1 | head -n 1"),
            "ab": sh("ab -V 2>&1 | head -n 1").replace("This is ", "").split(" <")[0],
            "openssl": sh("openssl version 2>&1").split(" (")[0],
            "go": sh("go version"),
            "rustc": sh("rustc --version 2>/dev/null || echo unknown"),
            "systemd (container)": "",
        },
    )


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_busy_jiffies() -> int:
    """All CPUs' busy time (not idle, not iowait) so far, in clock ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]


def proc_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def tree_cpu_ticks(root: int) -> int:
    """CPU time of `root` and every process below it, including children
    that already exited and were reaped (cutime/cstime): everything this
    benchmark runs (servers, load generators, the container) is below it."""
    total = 0
    for pid in proc_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total


class Foreign:
    """Measures the CPU that everything outside this benchmark used (other
    jobs on a shared machine, kernel threads) between start and cores()."""

    def __init__(self) -> None:
        self.busy0, self.ours0, self.t0 = cpu_busy_jiffies(), tree_cpu_ticks(os.getpid()), time.monotonic()

    def cores(self) -> float:
        busy, ours, wall = cpu_busy_jiffies(), tree_cpu_ticks(os.getpid()), time.monotonic() - self.t0
        return round(max(0.0, (busy - self.busy0) - (ours - self.ours0)) / CLK_TCK / max(wall, 1e-3), 3)


def wait_calm(limit: float, max_wait_s: float = 60.0) -> float:
    """Wait (at most max_wait_s) until other jobs use less than `limit`
    cores over a 1 s sample; returns the last sample."""
    deadline = time.monotonic() + max_wait_s
    while True:
        f = Foreign()
        time.sleep(1.0)
        c = f.cores()
        if c < limit or time.monotonic() > deadline:
            return c
        time.sleep(2.0)


M = TypeVar("M", bound=Measured)


def retried(label: str, a: argparse.Namespace, attempt: Callable[[], list[M]]) -> tuple[list[M], int]:
    """Run attempt() again while other jobs used more than --noise-limit
    cores during it (the most any of its runs saw), at most --noise-retries
    times, and only while the run's --noise-budget (seconds spent on repeats
    and waiting) lasts; returns (runs, repeats). Runs kept although noisy
    are marked so."""
    i = 0
    while True:
        t0 = time.monotonic()
        res = attempt()
        other = max(r.other_cores for r in res)
        if other <= a.noise_limit:
            return res, i
        if i == a.noise_retries or a.noise_budget <= 0:
            log(
                f"{label}: kept although other jobs used {other:.2f} cores during it "
                f"({i} repeats; noise budget left {max(0, a.noise_budget):.0f}s)"
            )
            for r in res:
                r.noisy = True
            return res, i
        log(f"{label}: other jobs used {other:.2f} cores (> {a.noise_limit}); waiting for calm and repeating")
        t1 = time.monotonic()
        wait_calm(a.noise_limit, max_wait_s=min(60.0, a.noise_budget))
        a.noise_budget -= (time.monotonic() - t1) + (t1 - t0)
        i += 1


def wait_quiet(limit_s: float, threshold: float) -> QuietCheck:
    t0 = time.monotonic()
    la = loadavg()
    while la[0] >= threshold and time.monotonic() - t0 < limit_s:
        log(f"machine busy (load {la[0]:.2f} >= {threshold}); waiting ({time.monotonic() - t0:.0f}s of {limit_s:.0f}s)")
        time.sleep(min(20.0, max(1.0, limit_s - (time.monotonic() - t0))))
        la = loadavg()
    return QuietCheck(waited_s=round(time.monotonic() - t0), load=la, quiet=la[0] < threshold)


# --- processes ---------------------------------------------------------------


def proc_cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of the whole thread group, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def run_timed(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run a load generator (with `env`, or this process' environment);
    return its output and its own CPU seconds."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    out = b""
    try:
        assert p.stdout is not None
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {p.returncode}:\n{out.decode(errors='replace')}")
    return out.decode(errors="replace"), ru.ru_utime + ru.ru_stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]
