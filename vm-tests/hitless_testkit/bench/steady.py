"""Steady state: hitless against nginx, each pinned to the server core, the
load generator (wrk, h2load) on the other core."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..log import log
from .host import (
    CLK_TCK,
    Foreign,
    free_port,
    percentile,
    proc_cpu_ticks,
    proc_tree,
    retried,
    run_timed,
    status_kb,
    wait_port,
)
from .paths import CLIENT_CPU, SERVER_CPU, V1, Paths
from .records import LoadOutput, Rss, SteadyParams, SteadyResults, SteadyRun

# h2: many connections; h2-1conn: everything multiplexed over one connection
# (as behind a proxy). Both keep the server's core busy on a quiet machine.
STEADY_MODES = ("keep-alive", "new-conn", "h2", "h2-1conn")
UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


class SteadyServer:
    def __init__(self, name: str, argv: list[str], port_h1: int, port_h2: int, workdir: Path) -> None:
        self.name, self.port_h1, self.port_h2 = name, port_h1, port_h2
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CPU), *argv], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
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


def wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * UNIT_S[m.group(2)] * 1000


def parse_wrk(out: str) -> LoadOutput:
    def grab(pattern: str, default: str | None = None) -> str:
        m = re.search(pattern, out)
        if not m:
            if default is not None:
                return default
            raise ValueError(f"wrk output without {pattern!r}:\n{out}")
        return m.group(1)

    socket_errors = grab(r"Socket errors: (.*)", "")
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", socket_errors))
    return LoadOutput(
        requests=int(grab(r"(\d+) requests in")),
        rps=float(grab(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=wrk_ms(grab(r"\s50%\s+(\S+)")),
        p99_ms=wrk_ms(grab(r"\s99%\s+(\S+)")),
        errors=errors + int(grab(r"Non-2xx or 3xx responses: (\d+)", "0")),
    )


def parse_h2load(out: str, logfile: Path) -> LoadOutput:
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out
    )
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    if not m or not rps:
        raise ValueError(f"cannot read h2load output:\n{out}")
    lat = []
    with open(logfile) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000)
    return LoadOutput(
        requests=int(m.group(4)),
        rps=float(rps.group(1)),
        p50_ms=percentile(lat, 50),
        p99_ms=percentile(lat, 99),
        errors=int(m.group(5)) + int(m.group(6)),
    )


def steady_client(
    mode: str, srv: SteadyServer, path: str, seconds: float, a: argparse.Namespace, workdir: Path
) -> tuple[list[str], Path | None]:
    pin = ["taskset", "-c", str(CLIENT_CPU)]
    if mode in ("h2", "h2-1conn"):
        logfile = workdir / "h2load.log"
        conns, streams = (a.h2_conns, a.h2_streams) if mode == "h2" else (1, a.h2_1conn_streams)
        return [
            *pin,
            "h2load",
            "-t1",
            f"-c{conns}",
            f"-m{streams}",
            "-D",
            f"{seconds:g}",
            f"--log-file={logfile}",
            f"http://127.0.0.1:{srv.port_h2}{path}",
        ], logfile
    argv = [*pin, "wrk", "-t1", f"-c{a.wrk_conns}", f"-d{seconds:g}s", "--latency"]
    if mode == "new-conn":
        argv += ["-H", "Connection: close"]
    return [*argv, f"http://127.0.0.1:{srv.port_h1}{path}"], None


def measure(
    mode: str, srv: SteadyServer, path: str, seconds: float, a: argparse.Namespace, workdir: Path, rnd: int
) -> SteadyRun:
    """One run of `mode` against `srv`, with the server's CPU time."""
    argv, logfile = steady_client(mode, srv, path, seconds, a, workdir)
    ticks0, foreign, t0 = srv.cpu_ticks(), Foreign(), time.monotonic()
    out, client_cpu = run_timed(argv, timeout=seconds + 60)
    ticks1, wall, other = srv.cpu_ticks(), time.monotonic() - t0, foreign.cores()
    r = parse_h2load(out, logfile) if logfile else parse_wrk(out)
    if logfile:
        logfile.unlink()
    user, system = (ticks1[0] - ticks0[0]) / CLK_TCK, (ticks1[1] - ticks0[1]) / CLK_TCK
    server_cpu = user + system
    n = r.requests

    def per_req(cpu_s: float) -> float | None:
        return round(cpu_s / n * 1e6, 2) if n else None

    return SteadyRun(
        **dataclasses.asdict(r),
        server=srv.name,
        mode=mode,
        round=rnd,
        server_cpu_s=round(server_cpu, 3),
        server_user_s=round(user, 3),
        server_sys_s=round(system, 3),
        server_core_busy=round(server_cpu / wall, 3),
        client_cpu_s=round(client_cpu, 3),
        other_cores=other,
        us_per_req=per_req(server_cpu),
        user_us_per_req=per_req(user),
        sys_us_per_req=per_req(system),
        wall_s=round(wall, 2),
    )


def steady_state(a: argparse.Namespace, paths: Paths) -> SteadyResults:
    hitless = paths.hitless(V1)
    work = Path(tempfile.mkdtemp(prefix="hitless-bench-"))
    servers: list[SteadyServer] = []
    try:
        p1 = free_port()
        servers.append(SteadyServer("hitless", [str(hitless), "--listen", f"127.0.0.1:{p1}"], p1, p1, work))
        h1, h2 = free_port(), free_port()
        (work / "nginx").mkdir()
        conf = (
            (paths.assets / "nginx.conf")
            .read_text()
            .replace("@PREFIX@", str(work / "nginx"))
            .replace("@PORT_H1@", str(h1))
            .replace("@PORT_H2@", str(h2))
        )
        (work / "nginx/nginx.conf").write_text(conf)
        servers.append(
            SteadyServer(
                "nginx", ["nginx", "-p", str(work / "nginx"), "-c", str(work / "nginx/nginx.conf")], h1, h2, work
            )
        )
        # hitless' / answers from memory, as nginx's `return 200` does
        # (/healthz also looks up the deregistration flag file: a stat(2)).
        url_paths = {"hitless": "/", "nginx": "/"}
        for s in servers:
            for mode in STEADY_MODES:  # warm-up, not recorded
                measure(mode, s, url_paths[s.name], 1, a, work, rnd=-1)
        runs: list[SteadyRun] = []
        repeats = 0
        for rnd in range(a.rounds):
            for mode in STEADY_MODES:
                order = servers if rnd % 2 == 0 else servers[::-1]

                def pair(mode: str = mode, order: list[SteadyServer] = order, rnd: int = rnd) -> list[SteadyRun]:
                    out = []
                    for s in order:
                        r = measure(mode, s, url_paths[s.name], a.steady_seconds, a, work, rnd)
                        out.append(r)
                        log(
                            f"steady {rnd + 1}/{a.rounds} {mode:10} {s.name:8} {r.rps:9.0f} req/s  "
                            f"p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms  {r.us_per_req} us/req  "
                            f"server core {r.server_core_busy * 100:.0f}%  other jobs {r.other_cores:.2f} cores"
                            + (f"  ERRORS {r.errors}" if r.errors else "")
                        )
                    return out

                got, n = retried(f"steady {rnd + 1}/{a.rounds} {mode}", a, pair)
                runs += got
                repeats += n
        return SteadyResults(
            params=SteadyParams(
                seconds=a.steady_seconds,
                rounds=a.rounds,
                wrk_conns=a.wrk_conns,
                h2_conns=a.h2_conns,
                h2_streams=a.h2_streams,
                h2_1conn_streams=a.h2_1conn_streams,
                paths=url_paths,
                server_cpu=SERVER_CPU,
                client_cpu=CLIENT_CPU,
            ),
            runs=runs,
            repeated_for_noise=repeats,
            rss_kb={s.name: Rss(idle=s.idle_rss_kb, peak=s.peak_rss_kb()) for s in servers},
        )
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
