#!/usr/bin/env python3
"""The hitless benchmark: measures, on this machine and in one run,

  1. steady state: hitless against nginx (`return 200`), each on one pinned
     core with the load generator on the other; HTTP/1.1 keep-alive (wrk),
     a new connection per request (wrk, `Connection: close`) and cleartext
     HTTP/2 (h2load); req/s, p50/p99 and server CPU time per request;
  2. upgrade under load, in a Debian container with systemd as PID 1 (the
     container driver of vm-tests/driver): hitless socket-activated, hitless
     binding by itself, and the Go seed design (bench/seed), each restarted
     onto the other version under the same open-loop load (bench/loadgen),
     with and without slow requests in flight;
  3. cost: exec to READY=1, idle and loaded RSS, binary size.

Normally started by bench/run, which installs the tools and builds the
binaries first. Writes target/bench/results.json, then bench/report.py turns
it into docs/bench.md and docs/bench.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
# Same target directory as scripts/build-versions (CARGO_TARGET_DIR honoured).
TARGET = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
OUT = TARGET / "bench"
VERSIONS = TARGET / "versions"
V1, V2 = "1.0.0", "2.0.0"
SERVER_CPU, CLIENT_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


# --- the machine -------------------------------------------------------------

def sh(cmd: str) -> str:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    return (p.stdout + p.stderr).strip()


def machine_info() -> dict:
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
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo \"$PRETTY_NAME\""),
        "virtualization": sh("systemd-detect-virt 2>/dev/null || echo unknown"),
        "tools": {
            "nginx": sh("nginx -v 2>&1").replace("nginx version: ", ""),
            "wrk": sh("wrk -v 2>&1 | head -n 1").split(" [")[0],
            "h2load": sh("h2load --version 2>&1 | head -n 1"),
            "go": sh("go version"),
            "rustc": sh("rustc --version 2>/dev/null || echo unknown"),
            "systemd (container)": "",
        },
    }


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_busy_jiffies() -> int:
    """All CPUs' busy time (not idle, not iowait) so far, in clock ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]


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


def retried(label: str, a, attempt):
    """Run attempt() (returns (result, other_cores)) again while other jobs
    used more than --noise-limit cores during it, at most --noise-retries
    times, and only while the run's --noise-budget (seconds spent on
    repeats and waiting) lasts; returns (result, repeats)."""
    for i in range(a.noise_retries + 1):
        t0 = time.monotonic()
        res, other = attempt()
        if other <= a.noise_limit:
            return res, i
        if i == a.noise_retries or a.noise_budget <= 0:
            log(f"{label}: kept although other jobs used {other:.2f} cores during it "
                f"({i} repeats; noise budget left {max(0, a.noise_budget):.0f}s)")
            for r in res if isinstance(res, list) else [res]:
                r["noisy"] = True
            return res, i
        log(f"{label}: other jobs used {other:.2f} cores (> {a.noise_limit}); waiting for calm and repeating")
        t1 = time.monotonic()
        wait_calm(a.noise_limit, max_wait_s=min(60.0, a.noise_budget))
        a.noise_budget -= (time.monotonic() - t1) + (t1 - t0)


def wait_quiet(limit_s: float, threshold: float) -> dict:
    t0 = time.monotonic()
    la = loadavg()
    while la[0] >= threshold and time.monotonic() - t0 < limit_s:
        log(f"machine busy (load {la[0]:.2f} >= {threshold}); waiting ({time.monotonic() - t0:.0f}s of {limit_s:.0f}s)")
        time.sleep(min(20.0, max(1.0, limit_s - (time.monotonic() - t0))))
        la = loadavg()
    return {"waited_s": round(time.monotonic() - t0), "load": la, "quiet": la[0] < threshold}


# --- processes ---------------------------------------------------------------

def proc_cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of the whole thread group, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


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


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def run_timed(argv: list[str], timeout: float) -> tuple[str, float]:
    """Run a load generator; return its output and its own CPU seconds."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    out = b""
    try:
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
    k = min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


# --- 1. steady state ---------------------------------------------------------

class SteadyServer:
    def __init__(self, name: str, argv: list[str], port_h1: int, port_h2: int, workdir: Path) -> None:
        self.name, self.port_h1, self.port_h2 = name, port_h1, port_h2
        self.log = open(workdir / f"{name}.log", "wb")
        self.proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *argv], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(port_h1, self.proc)
        wait_port(port_h2, self.proc)
        time.sleep(0.2)  # let nginx's worker come up
        self.idle_rss_kb = sum(status_kb(p, "VmRSS") for p in self.pids())

    def pids(self) -> list[int]:
        return proc_tree(self.proc.pid)

    def cpu_ticks(self) -> tuple[int, int]:
        ticks = [proc_cpu_ticks(p) for p in self.pids()]
        return sum(u for u, _ in ticks), sum(s for _, s in ticks)

    def peak_rss_kb(self) -> int:
        return sum(status_kb(p, "VmHWM") for p in self.pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * UNIT_S[m.group(2)] * 1000


def parse_wrk(out: str) -> dict:
    def grab(pattern: str, default: str | None = None) -> str:
        m = re.search(pattern, out)
        if not m:
            if default is not None:
                return default
            raise ValueError(f"wrk output without {pattern!r}:\n{out}")
        return m.group(1)
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", grab(r"Socket errors: (.*)", "")))
    return {
        "requests": int(grab(r"(\d+) requests in")),
        "rps": float(grab(r"Requests/sec:\s+([\d.]+)")),
        "p50_ms": wrk_ms(grab(r"\s50%\s+(\S+)")),
        "p99_ms": wrk_ms(grab(r"\s99%\s+(\S+)")),
        "errors": errors + int(grab(r"Non-2xx or 3xx responses: (\d+)", "0")),
    }


def parse_h2load(out: str, logfile: Path) -> dict:
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                  out)
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    if not m or not rps:
        raise ValueError(f"cannot read h2load output:\n{out}")
    lat = []
    with open(logfile) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000)
    return {
        "requests": int(m.group(4)),
        "rps": float(rps.group(1)),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "errors": int(m.group(5)) + int(m.group(6)),
    }


# h2: many connections; h2-1conn: everything multiplexed over one connection
# (as behind a proxy). Both keep the server's core busy on a quiet machine.
STEADY_MODES = ("keep-alive", "new-conn", "h2", "h2-1conn")


def steady_client(mode: str, srv: SteadyServer, path: str, seconds: float, a, workdir: Path) -> tuple[list[str], Path | None]:
    pin = ["taskset", "-c", str(CLIENT_CPU)]
    if mode in ("h2", "h2-1conn"):
        logfile = workdir / "h2load.log"
        conns, streams = (a.h2_conns, a.h2_streams) if mode == "h2" else (1, a.h2_1conn_streams)
        return pin + ["h2load", "-t1", f"-c{conns}", f"-m{streams}", "-D", f"{seconds:g}",
                      f"--log-file={logfile}", f"http://127.0.0.1:{srv.port_h2}{path}"], logfile
    argv = pin + ["wrk", "-t1", f"-c{a.wrk_conns}", f"-d{seconds:g}s", "--latency"]
    if mode == "new-conn":
        argv += ["-H", "Connection: close"]
    return argv + [f"http://127.0.0.1:{srv.port_h1}{path}"], None


def measure(mode: str, srv: SteadyServer, path: str, seconds: float, a, workdir: Path) -> dict:
    argv, logfile = steady_client(mode, srv, path, seconds, a, workdir)
    ticks0, foreign, t0 = srv.cpu_ticks(), Foreign(), time.monotonic()
    out, client_cpu = run_timed(argv, timeout=seconds + 60)
    ticks1, wall, other = srv.cpu_ticks(), time.monotonic() - t0, foreign.cores()
    r = parse_h2load(out, logfile) if logfile else parse_wrk(out)
    if logfile:
        logfile.unlink()
    user, system = (ticks1[0] - ticks0[0]) / CLK_TCK, (ticks1[1] - ticks0[1]) / CLK_TCK
    server_cpu = user + system
    r.update({
        "server_cpu_s": round(server_cpu, 3),
        "server_user_s": round(user, 3),
        "server_sys_s": round(system, 3),
        "server_core_busy": round(server_cpu / wall, 3),
        "client_cpu_s": round(client_cpu, 3),
        # CPU used by anything else on the machine meanwhile (other jobs,
        # kernel threads), in cores: the noise floor of this run.
        "other_cores": other,
        "us_per_req": round(server_cpu / r["requests"] * 1e6, 2) if r["requests"] else None,
        "user_us_per_req": round(user / r["requests"] * 1e6, 2) if r["requests"] else None,
        "sys_us_per_req": round(system / r["requests"] * 1e6, 2) if r["requests"] else None,
        "wall_s": round(wall, 2),
    })
    return r


def steady_state(a, results: dict) -> None:
    hitless = VERSIONS / f"hitless-{V1}"
    work = Path(tempfile.mkdtemp(prefix="hitless-bench-"))
    servers: list[SteadyServer] = []
    try:
        p1 = free_port()
        servers.append(SteadyServer("hitless", [str(hitless), "--listen", f"127.0.0.1:{p1}"], p1, p1, work))
        h1, h2 = free_port(), free_port()
        (work / "nginx").mkdir()
        conf = (BENCH / "nginx.conf").read_text().replace("@PREFIX@", str(work / "nginx")) \
            .replace("@PORT_H1@", str(h1)).replace("@PORT_H2@", str(h2))
        (work / "nginx/nginx.conf").write_text(conf)
        servers.append(SteadyServer("nginx", ["nginx", "-p", str(work / "nginx"), "-c", str(work / "nginx/nginx.conf")],
                                    h1, h2, work))
        paths = {"hitless": "/healthz", "nginx": "/"}
        for s in servers:
            for mode in STEADY_MODES:  # warm-up, not recorded
                measure(mode, s, paths[s.name], 1, a, work)
        runs, repeats = [], 0
        for rnd in range(a.rounds):
            for mode in STEADY_MODES:
                order = servers if rnd % 2 == 0 else servers[::-1]

                def pair():
                    out = []
                    for s in order:
                        r = measure(mode, s, paths[s.name], a.steady_seconds, a, work)
                        r.update({"server": s.name, "mode": mode, "round": rnd})
                        out.append(r)
                        log(f"steady {rnd + 1}/{a.rounds} {mode:10} {s.name:8} {r['rps']:9.0f} req/s  "
                            f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  {r['us_per_req']} us/req  "
                            f"server core {r['server_core_busy'] * 100:.0f}%  other jobs {r['other_cores']:.2f} cores"
                            + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
                    return out, max(r["other_cores"] for r in out)

                got, n = retried(f"steady {rnd + 1}/{a.rounds} {mode}", a, pair)
                runs += got
                repeats += n
        results["steady"] = {
            "params": {"seconds": a.steady_seconds, "rounds": a.rounds, "wrk_conns": a.wrk_conns,
                       "h2_conns": a.h2_conns, "h2_streams": a.h2_streams,
                       "h2_1conn_streams": a.h2_1conn_streams, "paths": paths,
                       "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU},
            "runs": runs,
            "repeated_for_noise": repeats,
            "rss_kb": {s.name: {"idle": s.idle_rss_kb, "peak": s.peak_rss_kb()} for s in servers},
        }
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


# --- 2. upgrade under load ---------------------------------------------------

VARIANTS = {
    # name: (unit restarted, port, binary path in the guest, binaries by version, h2c served)
    "hitless (socket)": ("hitless.service", 8080, "/usr/bin/hitless", "hitless", True),
    "hitless (--listen)": ("hitless-listen.service", 8081, "/usr/bin/hitless", "hitless", True),
    "seed (Go)": ("seed.service", 8082, "/usr/local/bin/seed-server", "seed", False),
}
GUEST_STORE = "/usr/local/lib/hitless-bench"


def guest_setup(m) -> None:
    m.copy_from_host(OUT / "loadgen", "/usr/local/bin/loadgen")
    for v in (V1, V2):
        m.copy_from_host(VERSIONS / f"hitless-{v}", f"{GUEST_STORE}/hitless-{v}")
        m.copy_from_host(OUT / f"seed-{v}", f"{GUEST_STORE}/seed-{v}")
    for u in ("hitless.socket", "hitless.service"):
        m.copy_from_host(REPO / "units" / u, f"/usr/lib/systemd/system/{u}")
    for u in ("hitless-listen.service", "seed.socket", "seed.service"):
        m.copy_from_host(BENCH / "units" / u, f"/usr/lib/systemd/system/{u}")
    # Same pinning as the steady state: services on one core, load on the other.
    dropins = " ".join(f"/etc/systemd/system/{u}.d" for u, *_ in VARIANTS.values())
    m.succeed(f"for d in {dropins}; do mkdir -p $d; printf '[Service]\\nCPUAffinity={SERVER_CPU}\\n' > $d/bench.conf; done")
    m.succeed(f"install -m 0755 {GUEST_STORE}/hitless-{V1} /usr/bin/hitless",
              f"install -m 0755 {GUEST_STORE}/seed-{V1} /usr/local/bin/seed-server",
              "systemctl daemon-reload",
              "systemctl start hitless.socket seed.socket",
              "systemctl start hitless.service hitless-listen.service seed.service")
    for name, (unit, port, *_rest) in VARIANTS.items():
        m.wait_for_unit(unit)
        m.wait_until_succeeds(f"curl -sf http://127.0.0.1:{port}/ >/dev/null", timeout=30)


def served_version(m, port: int) -> str:
    out = m.succeed(f"curl -sS --fail -o /dev/null -D - http://127.0.0.1:{port}/")
    for line in out.splitlines():
        if line.lower().startswith("x-hitless-version:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no x-hitless-version from port {port}")


def h2c_served(m, port: int) -> bool:
    rc, _ = m.execute(f"curl -sS --fail --max-time 5 --http2-prior-knowledge -o /dev/null http://127.0.0.1:{port}/")
    return rc == 0


def read_records(path: Path) -> tuple[dict, list[tuple]]:
    meta, recs = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                meta = dict(kv.split("=", 1) for kv in line[1:].split())
                continue
            mode, due, lat_us, outcome, version = line.rstrip("\n").split("\t")
            recs.append((mode, int(due), int(lat_us) * 1000, outcome, version))
    return meta, recs


def analyze_mode(recs: list[tuple], t0: int, t1: int, new: str) -> dict:
    """Numbers for one client mode of one restart. All times in ns."""
    ok = [r for r in recs if r[3] == "ok"]
    failed = [r for r in recs if r[3] != "ok"]
    new_done = [r[1] + r[2] for r in ok if r[4] == new]
    serving_new = min(new_done) if new_done else None
    # "During the upgrade": from `systemctl restart` until the command has
    # returned and the new process has answered.
    wend = max(t1, serving_new or t1)
    base = [r[2] for r in ok if t0 - 1_500_000_000 <= r[1] < t0 - 100_000_000]
    base_p99 = percentile(base, 99) if base else 0
    during = [r[2] for r in ok if t0 <= r[1] <= wend]
    # A request is disturbed when it failed or took more than 5x the
    # baseline p99 (at least 10 ms). The disturbed window is the cluster of
    # disturbed requests around the restart: from the first one's start to
    # the last one's end, where each next one starts at most 100 ms after
    # the window so far ends (a lone slow request a second later is noise,
    # not the restart).
    thr = max(10_000_000, 5 * base_p99)
    dist = sorted((r[1], r[1] + r[2]) for r in recs
                  if t0 - 200_000_000 <= r[1] <= wend + 1_000_000_000 and (r[3] != "ok" or r[2] > thr))
    window, start, end = 0, None, None
    for s_, e_ in dist:
        if start is not None and s_ <= end + 100_000_000:
            end = max(end, e_)
            continue
        if start is not None and end >= t0:
            break  # the cluster that reaches into the restart is complete
        start, end = s_, e_
    if start is not None and end >= t0:
        window = end - start
    return {
        "requests": len(recs),
        "failed": len(failed),
        "failures_by_reason": dict(Counter(r[3] for r in failed)),
        "started_during": len([r for r in recs if t0 <= r[1] <= wend]),
        "during_p99_ms": round(percentile(during, 99) / 1e6, 2) if during else None,
        "during_max_ms": round(max(during) / 1e6, 2) if during else None,
        "baseline_p99_ms": round(base_p99 / 1e6, 3),
        "disturbed_ms": round(window / 1e6, 1),
        "new_version_seen": serving_new is not None,
        "new_serving_after_ms": round((serving_new - t0) / 1e6, 1) if serving_new else None,
    }


def analyze_slow(recs: list[tuple]) -> dict:
    lat = [r[2] for r in recs]
    return {
        "requests": len(recs),
        "failed": len([r for r in recs if r[3] != "ok"]),
        "failures_by_reason": dict(Counter(r[3] for r in recs if r[3] != "ok")),
        "max_ms": round(max(lat) / 1e6, 1) if lat else None,
        "answered_by": sorted({r[4] for r in recs if r[3] == "ok"}),
    }


def restart(m, unit: str) -> tuple[int, int]:
    """`systemctl restart`, timed inside the guest (no nsenter latency)."""
    out = m.succeed(f"t0=$(date +%s%N); systemctl restart {unit}; t1=$(date +%s%N); echo $t0 $t1")
    t0, t1 = (int(x) for x in out.split()[-2:])
    return t0, t1


def swap_binary(m, variant: str) -> tuple[str, str]:
    """The package manager's part of an upgrade, done before the load
    starts: the other version's file is renamed over the binary (the running
    process keeps its inode). Returns (running version, new version)."""
    _unit, port, binpath, kind, _h2 = VARIANTS[variant]
    cur = served_version(m, port)
    new = V2 if cur == V1 else V1
    m.succeed(f"install -m 0755 {GUEST_STORE}/{kind}-{new} {binpath}.new && mv -f {binpath}.new {binpath}")
    return cur, new


def upgrade_run(m, variant: str, slow: bool, rnd: int, a) -> dict:
    """One restart under the open-loop load of bench/loadgen (every request
    recorded), optionally with slow requests in flight."""
    unit, port, _binpath, _kind, h2 = VARIANTS[variant]
    cur, new = swap_binary(m, variant)
    modes = "keep-alive,new-conn" + (",h2" if h2 else "")
    duration = a.upgrade_seconds + (a.slow_ms / 1000 if slow else 0)
    start_ns = time.time_ns() + 1_000_000_000
    restart_at = start_ns + 2_000_000_000  # 1 s after the slow requests went out
    rec_file = f"/tmp/loadgen-{rnd}-{port}-{int(slow)}.tsv"
    cmd = (f"taskset -c {CLIENT_CPU} /usr/local/bin/loadgen -addr 127.0.0.1:{port} -path / -modes {modes} "
           f"-rate {a.rate} -conns {a.conns} -start-at {start_ns} -duration {duration:g}s -out {rec_file}"
           + (f" -slow-count {a.slow_count} -slow-path '/slow?ms={a.slow_ms}' -slow-at 1s" if slow else ""))
    box: dict = {}

    def load():
        box["rc"], box["out"] = m.execute(cmd, timeout=duration + 90)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    time.sleep(max(0.0, (restart_at - time.time_ns()) / 1e9))
    t0, t1 = restart(m, unit)
    th.join()
    if box.get("rc") != 0:
        raise RuntimeError(f"loadgen failed ({box.get('rc')}): {box.get('out')}")
    meta, recs = read_records(Path(f"/proc/{m.leader}/root{rec_file}"))
    m.execute(f"rm -f {rec_file}")
    res = {"variant": variant, "load": "open+slow" if slow else "open", "round": rnd, "from": cur, "to": new,
           "restart_cmd_ms": round((t1 - t0) / 1e6, 1), "modes": {}, "loadgen": meta}
    for mode in modes.split(","):
        res["modes"][mode] = analyze_mode([r for r in recs if r[0] == mode], t0, t1, new)
    if slow:
        res["slow"] = analyze_slow([r for r in recs if r[0] == "slow"])
    return res


def wrk_run(m, variant: str, rnd: int, a) -> dict:
    """One restart under saturating keep-alive load, the way the seed design
    was measured: wrk -c16 (the host's wrk, in the guest's network
    namespace). wrk only counts, so this gives failures, not latencies."""
    unit, port, *_ = VARIANTS[variant]
    cur, new = swap_binary(m, variant)
    argv = ["nsenter", f"--target={m.leader}", "--net", "--", "taskset", "-c", str(CLIENT_CPU),
            "wrk", "-t1", f"-c{a.conns}", f"-d{a.wrk_seconds:g}s", f"http://127.0.0.1:{port}/"]
    box: dict = {}

    def load():
        box["out"], _ = run_timed(argv, timeout=a.wrk_seconds + 60)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    time.sleep(a.wrk_seconds / 2)
    t0, t1 = restart(m, unit)
    th.join()
    out = box.get("out") or ""
    errs = dict(re.findall(r"(connect|read|write|timeout) (\d+)", re.search(r"Socket errors: (.*)", out).group(1))) \
        if "Socket errors" in out else {}
    errs = {k: int(v) for k, v in errs.items()}
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    return {"variant": variant, "load": "wrk", "round": rnd, "from": cur, "to": new,
            "restart_cmd_ms": round((t1 - t0) / 1e6, 1),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "socket_errors": {k: errs.get(k, 0) for k in ("connect", "read", "write", "timeout")},
            "non2xx": non2xx,
            # Requests sent that got no answer (read), timed out, or got an
            # error status; refused reconnects (connect/write) are attempts
            # wrk retries at once, counted apart.
            "lost": errs.get("read", 0) + errs.get("timeout", 0) + non2xx}


# Options whose removal makes systemd's start of hitless.service measurably
# faster (they set up the unit's mount namespace); used only to measure what
# the sandbox costs per restart, never in the restart runs themselves.
NO_MOUNT_SANDBOX = ("ProtectSystem=no", "ProtectHome=no", "PrivateMounts=no", "ProtectKernelTunables=no",
                    "ProtectKernelModules=no", "ProtectKernelLogs=no", "ProtectControlGroups=no",
                    "ProtectClock=no", "ProtectHostname=no", "PrivateTmp=no", "PrivateDevices=no",
                    "ProtectProc=default", "ProcSubset=all")


def start_latency(m, n: int) -> dict:
    """`systemctl start hitless.service` (returns at READY=1), timed in the
    guest: the unit as shipped, and without its mount-namespace options."""
    dropin = "/etc/systemd/system/hitless.service.d/zz-bench-no-mount-sandbox.conf"
    res = {}
    for label, opts in (("as shipped", None), ("without mount-namespace options", NO_MOUNT_SANDBOX)):
        if opts:
            body = "\\n".join(("[Service]",) + opts)
            m.succeed(f"printf '{body}\\n' > {dropin}", "systemctl daemon-reload")
        xs = []
        for _ in range(n):
            m.execute("systemctl stop hitless.service 2>/dev/null")
            out = m.succeed("t0=$(date +%s%N); systemctl start hitless.service; t1=$(date +%s%N); "
                            "echo $(( (t1 - t0) / 1000 ))")
            xs.append(int(out.split()[-1]) / 1000)
        if opts:
            m.succeed(f"rm -f {dropin}", "systemctl daemon-reload", "systemctl restart hitless.service")
        res[label] = xs
        log(f"systemctl start hitless.service ({label}): median {statistics.median(xs):.1f} ms")
    return res


def upgrade_under_load(a, results: dict) -> None:
    sys.path.insert(0, str(REPO / "vm-tests" / "driver"))
    from nspawn import Machine, preflight  # noqa: E402  (the issue-3 container driver)
    from rootfs import ensure_rootfs  # noqa: E402

    problems = preflight()
    if problems:
        raise RuntimeError("cannot run containers: " + "; ".join(problems))
    rootfs = ensure_rootfs()
    logdir = OUT / "container-logs"
    with Machine(rootfs, name=f"hitless-bench-{os.getpid()}", log_dir=logdir) as m:
        guest_setup(m)
        systemd_version = m.succeed("systemctl --version | head -n 1").strip()
        h2 = {name: h2c_served(m, port) for name, (_u, port, *_r) in VARIANTS.items()}
        log(f"cleartext HTTP/2 served: {h2}")
        runs, repeats = [], 0
        names = list(VARIANTS)
        for rnd in range(a.rounds):
            for load in ("open", "open+slow", "wrk"):
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for variant in order:
                    def attempt():
                        f = Foreign()
                        r = wrk_run(m, variant, rnd, a) if load == "wrk" else \
                            upgrade_run(m, variant, load == "open+slow", rnd, a)
                        r["other_cores"] = f.cores()
                        return r, r["other_cores"]

                    r, n = retried(f"upgrade {rnd + 1}/{a.rounds} {variant} {load}", a, attempt)
                    repeats += n
                    if load == "wrk":
                        log(f"upgrade {rnd + 1}/{a.rounds} {variant:18} wrk -c{a.conns}: "
                            f"restart {r['restart_cmd_ms']} ms | {r['requests']} requests, lost {r['lost']}, "
                            f"socket errors {r['socket_errors']}, non-2xx {r['non2xx']}")
                    else:
                        summ = "  ".join(f"{k}: {v['failed']} failed, max {v['during_max_ms']} ms, "
                                         f"window {v['disturbed_ms']} ms" for k, v in r["modes"].items())
                        if "slow" in r:
                            summ += f"  slow: {r['slow']['failed']} failed, by {r['slow']['answered_by']}"
                        log(f"upgrade {rnd + 1}/{a.rounds} {variant:18} {load:9} "
                            f"restart {r['restart_cmd_ms']} ms | {summ} | other jobs {r['other_cores']:.2f} cores")
                    runs.append(r)
        starts = start_latency(m, a.start_runs)
        results["upgrade"] = {
            "start_ms": starts,
            "params": {"rate_per_mode": a.rate, "keepalive_conns": a.conns, "seconds": a.upgrade_seconds,
                       "slow_count": a.slow_count, "slow_ms": a.slow_ms, "rounds": a.rounds,
                       "wrk_seconds": a.wrk_seconds, "systemd": systemd_version,
                       "restart_after_s": 2.0, "slow_sent_after_s": 1.0},
            "h2c_served": h2,
            "runs": runs,
            "repeated_for_noise": repeats,
        }
        results["meta"]["tools"]["systemd (container)"] = systemd_version


# --- 3. cost -----------------------------------------------------------------

def spawn_activated(argv: list[str], notify_path: str | None, activated: bool, listener: socket.socket | None):
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


def rss_breakdown(pid: int) -> dict:
    """What the resident pages are: anonymous (the process' own memory) vs
    file-backed (the binary and shared libraries, mostly shared with other
    processes), per mapped file; and PSS."""
    out = {"by_file": {}}
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
                    out["by_file"][name] = out["by_file"].get(name, 0) + kb
    return out


def stop_child(pid: int) -> int:
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def cost(a, results: dict) -> None:
    hitless = str(VERSIONS / f"hitless-{V1}")
    work = Path(tempfile.mkdtemp(prefix="hitless-bench-cost-"))
    try:
        ready = {"socket": [], "listen": []}
        rss_idle = {"socket": [], "listen": []}
        exits = Counter()
        breakdown: dict = {}
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
        # The seed server's idle RSS, started the same way (no READY=1: wait).
        seed_rss = []
        for i in range(3):
            ls = socket.socket()
            ls.bind(("127.0.0.1", 0))
            ls.listen(128)
            pid, _ = spawn_activated([str(OUT / f"seed-{V1}")], None, True, ls)
            try:
                time.sleep(0.5)
                seed_rss.append(status_kb(pid, "VmRSS"))
            finally:
                stop_child(pid)
                ls.close()

        def size(path: Path) -> int:
            return path.stat().st_size

        stripped = work / "hitless.stripped"
        subprocess.run(["strip", "-o", str(stripped), hitless], check=True)
        nginx_bin = Path(shutil.which("nginx") or "/usr/sbin/nginx").resolve()
        results["cost"] = {
            "ready_ms": ready,
            "idle_rss_kb": rss_idle,
            "seed_idle_rss_kb": seed_rss,
            "rss_breakdown_kb": breakdown,
            "exit_codes": {str(k): v for k, v in exits.items()},
            "size_bytes": {
                "hitless (as built)": size(Path(hitless)),
                "hitless (stripped)": size(stripped),
                "seed (Go, -s -w)": size(OUT / f"seed-{V1}"),
                "nginx (Debian, stripped; + shared libs)": size(nginx_bin),
            },
            "runs": a.ready_runs,
        }
        r = {k: statistics.median(v) for k, v in ready.items()}
        log(f"cost: exec->READY=1 median {r}; idle RSS {rss_idle}; stripped {size(stripped)} bytes; exits {dict(exits)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- main --------------------------------------------------------------------

def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so servers and the container are
    always torn down (every part cleans up in `finally`/`with`)."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"got signal {signal.Signals(signum).name}")
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer and shorter runs (a smoke test, ~3 min)")
    p.add_argument("--only", action="append", choices=["steady", "upgrade", "cost"],
                   help="run only these parts (repeatable); the others are taken from --previous if given")
    p.add_argument("--rounds", type=int, help="runs per figure (default 5, quick 2)")
    p.add_argument("--steady-seconds", type=float, help="length of one steady-state run (default 5, quick 2)")
    p.add_argument("--wrk-conns", type=int, default=50)
    p.add_argument("--h2-conns", type=int, default=32)
    p.add_argument("--h2-streams", type=int, default=32)
    p.add_argument("--h2-1conn-streams", type=int, default=100)
    p.add_argument("--rate", type=int, default=1000, help="upgrade: requests/s per client mode (default 1000)")
    p.add_argument("--conns", type=int, default=16, help="upgrade: keep-alive connections (default 16)")
    p.add_argument("--upgrade-seconds", type=float, default=5, help="upgrade: load per run, before slow extra")
    p.add_argument("--slow-count", type=int, default=2, help="upgrade: slow requests in flight (default 2)")
    p.add_argument("--slow-ms", type=int, default=3000, help="upgrade: their duration (default 3000)")
    p.add_argument("--start-runs", type=int, help="upgrade: timed `systemctl start`s per unit variant "
                   "(default 15, quick 5)")
    p.add_argument("--wrk-seconds", type=float, default=4, help="upgrade: length of the wrk runs (default 4)")
    p.add_argument("--ready-runs", type=int, help="cost: exec->READY=1 samples per mode (default 20, quick 5)")
    p.add_argument("--noise-limit", type=float, default=0.25,
                   help="a run during which other jobs used more CPU than this (cores) is repeated (default 0.25)")
    p.add_argument("--noise-retries", type=int, default=3, help="repeat a noisy run at most this often (default 3)")
    p.add_argument("--noise-budget", type=float,
                   help="seconds the whole run may spend repeating noisy runs (default 180, quick 0)")
    p.add_argument("--wait-quiet", type=float, default=0,
                   help="wait up to this many seconds for a load average below --quiet-load before measuring")
    p.add_argument("--quiet-load", type=float, default=0.5)
    p.add_argument("--previous", help="results.json whose parts not re-run are kept")
    p.add_argument("--out", default=str(OUT / "results.json"))
    a = p.parse_args()
    a.rounds = a.rounds or (2 if a.quick else 5)
    a.steady_seconds = a.steady_seconds or (2 if a.quick else 5)
    a.ready_runs = a.ready_runs or (5 if a.quick else 20)
    a.start_runs = a.start_runs or (5 if a.quick else 15)
    if a.noise_budget is None:
        a.noise_budget = 0 if a.quick else 180
    if os.geteuid() != 0:
        print("bench: must run as root (containers, nginx)", file=sys.stderr)
        return 2

    parts = a.only or ["steady", "upgrade", "cost"]
    results: dict = {}
    if a.previous:
        results = json.loads(Path(a.previous).read_text())
    results["meta"] = {**machine_info(), "quick": a.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                       "parts_run": parts, "noise_limit": a.noise_limit}
    results["meta"]["quiet_check"] = wait_quiet(a.wait_quiet, a.quiet_load) if a.wait_quiet else \
        {"waited_s": 0, "load": loadavg(), "quiet": loadavg()[0] < a.quiet_load}
    log(f"machine: {results['meta']['cpu']}, {results['meta']['cores']} cores; load {loadavg()}")

    install_signal_handlers()
    phases = results["meta"]["phases"] = {}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for part in ("steady", "upgrade", "cost"):
        if part not in parts:
            continue
        la0, t0 = loadavg(), time.monotonic()
        log(f"=== {part}")
        {"steady": steady_state, "upgrade": upgrade_under_load, "cost": cost}[part](a, results)
        phases[part] = {"seconds": round(time.monotonic() - t0), "load_before": la0, "load_after": loadavg()}
        # Saved after every part: a later failure keeps what was measured
        # (a partial file; bench/run makes the report only when bench.py ends
        # successfully, and the report says whether it was a --quick run).
        partial = out.with_name(out.name + ".partial")
        partial.write_text(json.dumps(results, indent=1) + "\n")
    results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out.write_text(json.dumps(results, indent=1) + "\n")
    out.with_name(out.name + ".partial").unlink(missing_ok=True)
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
