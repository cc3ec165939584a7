"""Steady state: hitless against nginx, each pinned to the server core, the
load generator (wrk, h2load, ab) on the other core; cleartext (the steady
part) and over TLS (the tls part, with the certificate and cipher suite of
tls.py)."""

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
from .records import LoadOutput, Rss, SteadyParams, SteadyResults, SteadyRun, TlsParams
from .tls import GROUP, NEGOTIATED, SUITE, client_config, make_certificate, negotiated, probe

# h2: many connections; h2-1conn: everything multiplexed over one connection
# (as behind a proxy). Both keep the server's core busy on a quiet machine.
STEADY_MODES = ("keep-alive", "new-conn", "h2", "h2-1conn")
# Over TLS: keep-alive (wrk), and a full handshake per request (ab: wrk and
# h2load resume the session when they reconnect).
TLS_MODES = ("tls-keep-alive", "tls-new-conn")
UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
CONTROL_SUITE = "TLS_CHACHA20_POLY1305_SHA256"
"""The control's client offers only this suite, which nginx does not accept."""


class SteadyServer:
    def __init__(self, name: str, argv: list[str], port_h1: int, port_h2: int, workdir: Path) -> None:
        """`port_h1` serves HTTP/1.1 (over TLS in the tls part), `port_h2` h2c."""
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


def parse_ab(out: str, percentiles: Path) -> LoadOutput:
    """ab's report, with the percentiles of its -e file (ms, per request
    from connect to the last byte of the answer)."""

    def grab(pattern: str, default: str | None = None) -> str:
        m = re.search(pattern, out)
        if not m:
            if default is not None:
                return default
            raise ValueError(f"ab output without {pattern!r}:\n{out}")
        return m.group(1)

    at: dict[int, float] = {}
    for line in percentiles.read_text().splitlines()[1:]:
        q, _, ms = line.partition(",")
        at[int(q)] = float(ms)
    if 50 not in at or 99 not in at:
        raise ValueError(f"no 50th and 99th percentiles in {percentiles}")
    return LoadOutput(
        requests=int(grab(r"Complete requests:\s+(\d+)")),
        rps=float(grab(r"Requests per second:\s+([\d.]+)")),
        p50_ms=at[50],
        p99_ms=at[99],
        errors=int(grab(r"Failed requests:\s+(\d+)")) + int(grab(r"Non-2xx responses:\s+(\d+)", "0")),
    )


def steady_client(
    mode: str, srv: SteadyServer, path: str, seconds: float, a: argparse.Namespace, workdir: Path
) -> tuple[list[str], Path | None]:
    """The load generator's command line, and the file it writes its
    latencies to (h2load, ab) if any."""
    pin = ["taskset", "-c", str(CLIENT_CPU)]
    if mode == "tls-new-conn":
        # -n after -t: -t alone caps the run at 50,000 requests.
        csv = workdir / "ab.csv"
        return [
            *pin,
            "ab",
            "-q",
            f"-c{a.wrk_conns}",
            "-t",
            f"{max(1, round(seconds))}",
            "-n",
            "100000000",
            "-f",
            "TLS1.3",
            "-e",
            str(csv),
            f"https://127.0.0.1:{srv.port_h1}{path}",
        ], csv
    if mode == "tls-keep-alive":
        return [
            *pin,
            "wrk",
            "-t1",
            f"-c{a.wrk_conns}",
            f"-d{seconds:g}s",
            "--latency",
            f"https://127.0.0.1:{srv.port_h1}{path}",
        ], None
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
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPENSSL_CONF": str(workdir / "client-openssl.cnf")}
    ticks0, foreign, t0 = srv.cpu_ticks(), Foreign(), time.monotonic()
    out, client_cpu = run_timed(argv, timeout=seconds + 60, env=env if mode in TLS_MODES else None)
    ticks1, wall, other = srv.cpu_ticks(), time.monotonic() - t0, foreign.cores()
    if mode == "tls-new-conn" and negotiated(out) != NEGOTIATED:
        raise RuntimeError(f"{srv.name}, {mode}: ab negotiated {negotiated(out)}, not {NEGOTIATED}:\n{out[-800:]}")
    if logfile:
        r = parse_ab(out, logfile) if mode == "tls-new-conn" else parse_h2load(out, logfile)
        logfile.unlink()
    else:
        r = parse_wrk(out)
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
    """The steady part: cleartext HTTP/1.1 and h2c."""
    return serve_and_measure(a, paths, STEADY_MODES, tls=False)


def tls_steady(a: argparse.Namespace, paths: Paths) -> SteadyResults:
    """The tls part: HTTPS keep-alive and a full handshake per request."""
    return serve_and_measure(a, paths, TLS_MODES, tls=True)


def tls_control(port: int, workdir: Path) -> str:
    """A client whose OPENSSL_CONF offers only another suite must get no
    answer from nginx (`port`): wrk, which has no option for the suite,
    does apply the file. Returns what happened, for the results."""
    conf = workdir / "control-openssl.cnf"
    conf.write_text((workdir / "client-openssl.cnf").read_text().replace(SUITE, CONTROL_SUITE))
    argv = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", "-c1", "-d1s", f"https://127.0.0.1:{port}/"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPENSSL_CONF": str(conf)}
    out, _ = run_timed(argv, timeout=30, env=env)
    answers = re.search(r"(\d+) requests in", out)
    refused = re.search(r"Socket errors: connect (\d+)", out)
    if not answers or answers.group(1) != "0" or not refused:
        raise RuntimeError(f"control: wrk offering only {CONTROL_SUITE} was not refused by nginx:\n{out}")
    return f"wrk offering only {CONTROL_SUITE} got 0 answers from nginx ({refused.group(1)} failed handshakes)"


def serve_and_measure(a: argparse.Namespace, paths: Paths, modes: tuple[str, ...], tls: bool) -> SteadyResults:
    hitless = paths.hitless(V1)
    work = Path(tempfile.mkdtemp(prefix="hitless-bench-"))
    servers: list[SteadyServer] = []
    try:
        cert, key = make_certificate(work / "ca")
        openssl_conf = client_config(work)
        p1 = free_port()
        argv = [str(hitless), "--listen", f"127.0.0.1:{p1}"]
        if tls:
            argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
        servers.append(SteadyServer("hitless", argv, p1, p1, work))
        h1, h2, h1_tls = free_port(), free_port(), free_port()
        (work / "nginx").mkdir()
        conf = (
            (paths.assets / "nginx.conf")
            .read_text()
            .replace("@PREFIX@", str(work / "nginx"))
            .replace("@PORT_H1@", str(h1))
            .replace("@PORT_H2@", str(h2))
            .replace("@PORT_TLS@", str(h1_tls))
            .replace("@CERT@", str(cert))
            .replace("@KEY@", str(key))
            .replace("@SUITE@", SUITE)
            .replace("@GROUP@", GROUP)
        )
        (work / "nginx/nginx.conf").write_text(conf)
        servers.append(
            SteadyServer(
                "nginx",
                ["nginx", "-p", str(work / "nginx"), "-c", str(work / "nginx/nginx.conf")],
                h1_tls if tls else h1,
                h2,
                work,
            )
        )
        tls_params = None
        if tls:
            got = {s.name: probe(s.port_h1, openssl_conf) or "nothing" for s in servers}
            for name, what in got.items():
                if what != NEGOTIATED:
                    raise RuntimeError(f"{name} negotiated {what} with the benchmark's clients, not {NEGOTIATED}")
            tls_params = TlsParams(
                suite=SUITE, group=GROUP, negotiated=got, control=tls_control(h1_tls, work), ab_conns=a.wrk_conns
            )
            log(f"tls: every server negotiated {NEGOTIATED}; {tls_params.control}")
        # hitless' / answers from memory, as nginx's `return 200` does
        # (/healthz also looks up the deregistration flag file: a stat(2)).
        url_paths = {"hitless": "/", "nginx": "/"}
        for s in servers:
            for mode in modes:  # warm-up, not recorded
                measure(mode, s, url_paths[s.name], 1, a, work, rnd=-1)
        runs: list[SteadyRun] = []
        repeats = 0
        part = "tls" if tls else "steady"
        for rnd in range(a.rounds):
            for mode in modes:
                order = servers if rnd % 2 == 0 else servers[::-1]

                def pair(mode: str = mode, order: list[SteadyServer] = order, rnd: int = rnd) -> list[SteadyRun]:
                    out = []
                    for s in order:
                        r = measure(mode, s, url_paths[s.name], a.steady_seconds, a, work, rnd)
                        out.append(r)
                        log(
                            f"{part} {rnd + 1}/{a.rounds} {mode:12} {s.name:8} {r.rps:9.0f} req/s  "
                            f"p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms  {r.us_per_req} us/req  "
                            f"server core {r.server_core_busy * 100:.0f}%  other jobs {r.other_cores:.2f} cores"
                            + (f"  ERRORS {r.errors}" if r.errors else "")
                        )
                    return out

                got_runs, n = retried(f"{part} {rnd + 1}/{a.rounds} {mode}", a, pair)
                runs += got_runs
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
                tls=tls_params,
            ),
            runs=runs,
            repeated_for_noise=repeats,
            rss_kb={s.name: Rss(idle=s.idle_rss_kb, peak=s.peak_rss_kb()) for s in servers},
        )
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
