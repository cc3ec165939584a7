"""Cost: exec to READY=1, idle RSS and what it is made of, binary sizes."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..log import log
from .host import free_port, status_kb
from .paths import SERVER_CPU, V1, Paths
from .records import CostResults


def spawn_activated(
    argv: list[str], notify_path: str | None, activated: bool, listener: socket.socket | None
) -> tuple[int, int]:
    """fork + exec like PID 1 does: optional fd 3 with LISTEN_*, optional
    NOTIFY_SOCKET; pinned to the server core. Returns (pid, exec time ns)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.sched_setaffinity(0, {SERVER_CPU})
            env = {"PATH": "/usr/bin:/bin"}
            if notify_path:
                env["NOTIFY_SOCKET"] = notify_path
            if activated and listener is not None:
                os.dup2(listener.fileno(), 3)
                os.set_inheritable(3, True)
                env.update({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "bench"})
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            t = time.monotonic_ns()
            os.write(w, str(t).encode())
            os.close(w)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(w)
    t_exec = int(os.read(r, 64) or b"0")
    os.close(r)
    return pid, t_exec


def rss_breakdown(pid: int) -> dict[str, Any]:
    """What the resident pages are: anonymous (the process' own memory) vs
    file-backed (the binary and shared libraries, mostly shared with other
    processes), per mapped file; and PSS."""
    by_file: dict[str, int] = {}
    out: dict[str, Any] = {"by_file": by_file}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Rss", "Pss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
                out[k] = int(v.split()[0])
    name = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
            elif line.startswith("Rss:"):
                kb = int(line.split()[1])
                if kb:
                    by_file[name] = by_file.get(name, 0) + kb
    return out


def stop_child(pid: int) -> int:
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def cost(a: argparse.Namespace, paths: Paths) -> CostResults:
    hitless = str(paths.hitless(V1))
    work = Path(tempfile.mkdtemp(prefix="hitless-bench-cost-"))
    try:
        ready: dict[str, list[float]] = {"socket": [], "listen": []}
        rss_idle: dict[str, list[int]] = {"socket": [], "listen": []}
        exits: Counter[int] = Counter()
        breakdown: dict[str, Any] = {}
        for i in range(a.ready_runs):
            for kind in ("socket", "listen"):
                npath = str(work / f"notify-{i}-{kind}")
                ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                ns.bind(npath)
                ns.settimeout(10)
                ls = None
                argv = [hitless]
                if kind == "socket":
                    ls = socket.socket()
                    ls.bind(("127.0.0.1", 0))
                    ls.listen(128)
                else:
                    argv += ["--listen", f"127.0.0.1:{free_port()}"]
                pid, t_exec = spawn_activated(argv, npath, kind == "socket", ls)
                try:
                    while True:
                        msg = ns.recv(4096)
                        if b"READY=1" in msg.split(b"\n"):
                            t_ready = time.monotonic_ns()
                            break
                    ready[kind].append((t_ready - t_exec) / 1e6)
                    time.sleep(0.3)
                    rss_idle[kind].append(status_kb(pid, "VmRSS"))
                    if kind == "socket" and i == 0:
                        breakdown = rss_breakdown(pid)
                finally:
                    exits[stop_child(pid)] += 1
                    ns.close()
                    if ls:
                        ls.close()
        # The Go baseline's idle RSS, started the same way (no READY=1: wait).
        baseline_rss = []
        for _ in range(3):
            ls = socket.socket()
            ls.bind(("127.0.0.1", 0))
            ls.listen(128)
            pid, _ = spawn_activated([str(paths.baseline_go(V1))], None, True, ls)
            try:
                time.sleep(0.5)
                baseline_rss.append(status_kb(pid, "VmRSS"))
            finally:
                stop_child(pid)
                ls.close()

        def size(path: Path) -> int:
            return path.stat().st_size

        stripped = work / "hitless.stripped"
        subprocess.run(["strip", "-o", str(stripped), hitless], check=True)
        nginx_bin = Path(shutil.which("nginx") or "/usr/sbin/nginx").resolve()
        res = CostResults(
            ready_ms=ready,
            idle_rss_kb=rss_idle,
            baseline_go_idle_rss_kb=baseline_rss,
            rss_breakdown_kb=breakdown,
            exit_codes={str(k): v for k, v in exits.items()},
            size_bytes={
                "hitless (as built)": size(Path(hitless)),
                "hitless (stripped)": size(stripped),
                "Go baseline (-s -w)": size(paths.baseline_go(V1)),
                "nginx (Debian, stripped; + shared libs)": size(nginx_bin),
            },
            runs=a.ready_runs,
        )
        r = {k: statistics.median(v) for k, v in ready.items()}
        log(
            f"cost: exec->READY=1 median {r}; idle RSS {rss_idle}; stripped {size(stripped)} bytes; exits {dict(exits)}"
        )
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)
