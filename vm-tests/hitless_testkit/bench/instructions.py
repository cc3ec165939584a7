"""python3 -m hitless_testkit.bench.instructions: user-space instructions per
request, counted by callgrind (valgrind), for hitless, a minimal hyper server
and nginx, in three client modes. bench/instructions runs this.

Instruction counts do not depend on how busy the machine is: the same binary
given the same requests executes (almost exactly) the same instructions, so
the ratio of hitless to the minimal hyper server, both built in the same run,
can be checked in CI (--check), unlike a wall-clock speed.

Method, per server and mode: start the server under `valgrind
--tool=callgrind`, send N requests with the client, stop it (SIGTERM), read
the total instruction count of the whole process (all threads). Do it for
N = 2,000 and N = 12,000; per request = (I(12,000) - I(2,000)) / 10,000,
which cancels start-up, shutdown and the connections' setup. The Rust servers
run one tokio worker thread (TOKIO_WORKER_THREADS=1, as nginx runs one
worker): with more, idle workers park and wake a varying number of times and
the count is no longer repeatable.

Servers:
- minimal hyper: bench/minimal-hyper (hyper-util auto builder, one
  service_fn answering `ok`, tokio multi-thread runtime);
- hitless (library): the same service served by hitless::Server with its
  default settings (bench/minimal-hyper/src/bin/hitless-ok.rs): what the
  library adds, and what --check bounds;
- hitless (demo service): the hitless binary's /healthz (adds
  content-type and x-hitless-version headers);
- nginx: `return 200 "ok\\n"`, one worker, no master process.

Modes: keep-alive (`h2load --h1 -c8`), h2c (`h2load -c8 -m10`, prior
knowledge) and a new connection per request (`ab -c8`, HTTP/1.0 without
keep-alive). Per connection = new-connection per request - keep-alive per
request: what opening and closing a connection costs beyond its request.

Exit status: 0 measured (and, with --check, within the limits), 1 a limit
exceeded or a run failed, 2 bad usage, 3 cannot run here (a tool or binary
missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import EXIT_CANNOT_RUN, EXIT_FAILED, CannotRun
from ..log import Interrupted, die, install_signal_handlers, log, set_tag
from .host import free_port, wait_port
from .memory import BURST, CONNECTIONS, IDLE_WAIT, SETTLE, Memory, measure_memory

SMALL, LARGE = 2_000, 12_000
"""Requests per run: the difference of the two counts is per request."""

MODES = ("keep-alive", "h2c", "new connection")
LIMITS = {"keep-alive": 1.10, "h2c": 1.05, "new connection": 1.10}
"""Most instructions per request hitless (library) may execute, as a
multiple of the minimal hyper server's in the same run."""

REFERENCE, CHECKED, DEMO, NGINX = "minimal hyper", "hitless (library)", "hitless (demo service)", "nginx"
CLIENT_TIMEOUT = 300.0
"""Seconds one client run may take under valgrind before it counts as hung."""

MARK_BEGIN = "<!-- instructions:begin (bench/instructions writes this section) -->"
MARK_END = "<!-- instructions:end -->"

NGINX_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {prefix}/body;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{h1};
        listen 127.0.0.1:{h2} http2;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


@dataclass(frozen=True)
class Server:
    name: str
    argv: list[str]
    """The command; ADDR, PORT_H1 and PORT_H2 are filled in."""
    path: str = "/"
    separate_h2_port: bool = False
    config: tuple[Path, str] | None = None
    """A file to write before each run, and its text (PORT_H1 and PORT_H2
    filled in)."""


@dataclass
class Count:
    server: str
    mode: str
    per_request: float
    small: int
    large: int


@dataclass
class Results:
    when: str
    valgrind: str
    machine: str
    counts: list[Count] = dataclasses.field(default_factory=list)
    memory: list[Memory] = dataclasses.field(default_factory=list)

    def per_request(self, server: str, mode: str) -> float | None:
        for c in self.counts:
            if c.server == server and c.mode == mode:
                return c.per_request
        return None


def client_argv(mode: str, url: str, n: int) -> list[str]:
    if mode == "keep-alive":
        return ["h2load", "--h1", "-c8", f"-n{n}", url]
    if mode == "h2c":
        return ["h2load", "-c8", "-m10", f"-n{n}", url]
    return ["ab", "-q", "-c8", f"-n{n}", url]


def client_ok(mode: str, out: str, n: int) -> bool:
    """Whether the client saw all `n` requests answered with a 2xx."""
    if mode == "new connection":
        done = re.search(r"Complete requests:\s+(\d+)", out)
        failed = re.search(r"Failed requests:\s+(\d+)", out)
        non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
        return bool(done and int(done.group(1)) == n and failed and failed.group(1) == "0" and not non2xx)
    m = re.search(r"status codes: (\d+) 2xx", out)
    return bool(m and int(m.group(1)) == n)


def count_one(server: Server, mode: str, n: int, work: Path) -> int:
    """Total instructions of one server process that served `n` requests."""
    h1, h2 = free_port(), free_port()
    port = h2 if (mode == "h2c" and server.separate_h2_port) else h1
    out_file = work / f"callgrind.{re.sub(r'[^a-z0-9]+', '-', server.name)}.{mode.replace(' ', '-')}.{n}"
    argv = [
        a.replace("ADDR", f"127.0.0.1:{h1}").replace("PORT_H1", str(h1)).replace("PORT_H2", str(h2))
        for a in server.argv
    ]
    if server.config is not None:
        path, text = server.config
        path.write_text(text.replace("PORT_H1", str(h1)).replace("PORT_H2", str(h2)))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--trace-children=no"]
    with (work / "server.log").open("ab") as log_f:
        proc = subprocess.Popen([*vg, *argv], stdout=log_f, stderr=log_f, env=env)
        try:
            wait_port(port, proc, timeout=60)
            url = f"http://127.0.0.1:{port}{server.path}"
            r = subprocess.run(
                client_argv(mode, url, n), capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
            )
            if r.returncode != 0 or not client_ok(mode, r.stdout, n):
                raise RuntimeError(f"{server.name}, {mode}: the client did not get {n} answers:\n{r.stdout[-800:]}")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = out_file.read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if not m:
        raise RuntimeError(f"no instruction total in {out_file}")
    return int(m.group(1))


def servers(target: Path, with_all: bool, work: Path) -> list[Server]:
    release = target / "release"
    out = [
        Server(REFERENCE, [str(release / "minimal-hyper"), "ADDR"]),
        Server(CHECKED, [str(release / "hitless-ok"), "ADDR"]),
    ]
    if with_all:
        out.append(Server(DEMO, [str(release / "hitless"), "--listen", "ADDR"], path="/healthz"))
        conf = work / "nginx.conf"
        (work / "body").mkdir(exist_ok=True)
        text = NGINX_CONF.format(prefix=work, h1="PORT_H1", h2="PORT_H2")
        out.append(
            Server(NGINX, ["nginx", "-p", str(work), "-c", str(conf)], separate_h2_port=True, config=(conf, text))
        )
    return out


def measure(target: Path, with_all: bool) -> Results:
    vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    res = Results(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), vg, cpu)
    with tempfile.TemporaryDirectory(prefix="hitless-instructions.") as tmp:
        work = Path(tmp)
        for server in servers(target, with_all, work):
            for mode in MODES:
                small = count_one(server, mode, SMALL, work)
                large = count_one(server, mode, LARGE, work)
                per = (large - small) / (LARGE - SMALL)
                res.counts.append(Count(server.name, mode, per, small, large))
                log(f"{server.name:<24} {mode:<15} {per:10,.0f} instructions per request")
        if with_all:
            for server in servers(target, False, work)[:2] + servers(target, True, work)[2:3]:
                port = free_port()
                argv = [a.replace("ADDR", f"127.0.0.1:{port}") for a in server.argv]
                mem = measure_memory(server.name, argv, port)
                res.memory.append(mem)
                log(f"{server.name:<24} memory: {mem}")
    return res


def ratio(res: Results, server: str, mode: str) -> float | None:
    a, b = res.per_request(server, mode), res.per_request(REFERENCE, mode)
    return a / b if a is not None and b else None


def per_connection(res: Results, server: str) -> float | None:
    nc, ka = res.per_request(server, "new connection"), res.per_request(server, "keep-alive")
    return nc - ka if nc is not None and ka is not None else None


def table(res: Results) -> str:
    names = [n for n in (CHECKED, DEMO, REFERENCE, NGINX) if res.per_request(n, MODES[0]) is not None]
    head = "| mode | " + " | ".join(names) + " | limit for hitless (library) |"
    rows = [head, "|---" * (len(names) + 2) + "|"]

    def cell(name: str, value: float | None, r: float | None) -> str:
        if value is None:
            return ""
        return f"{value:,.0f}" + ("" if name == REFERENCE or r is None else f" ({r:.2f}×)")

    for mode in MODES:
        cells = [cell(n, res.per_request(n, mode), ratio(res, n, mode)) for n in names]
        rows.append(f"| {mode}, per request | " + " | ".join(cells) + f" | ≤ {LIMITS[mode]:.2f}× |")
    conn = []
    for n in names:
        v, ref = per_connection(res, n), per_connection(res, REFERENCE)
        conn.append(cell(n, v, v / ref if v is not None and ref else None))
    rows.append("| per connection (open and close) | " + " | ".join(conn) + " | |")
    return "\n".join(rows)


def memory_table(res: Results) -> str:
    rows = [
        "| server | idle RSS | per idle HTTP/1.1 connection | per idle h2c connection "
        f"| RSS with {BURST:,} connections open | RSS {SETTLE:.0f} s after they closed (× idle) |",
        "|---|---|---|---|---|---|",
    ]
    for m in res.memory:
        h1, h2 = m.per_connection_bytes.get("HTTP/1.1"), m.per_connection_bytes.get("h2c")
        rows.append(
            f"| {m.server} | {m.idle_kb * 1024 / 1e6:.2f} MB | {h1 / 1000 if h1 is not None else 0:.1f} kB "
            f"| {h2 / 1000 if h2 is not None else 0:.1f} kB | {m.burst_peak_kb * 1024 / 1e6:.1f} MB "
            f"| {m.after_burst_kb * 1024 / 1e6:.1f} MB ({m.after_burst_kb / m.idle_kb:.1f}×) |"
        )
    return "\n".join(rows)


def violations(res: Results) -> list[str]:
    out = []
    for mode in MODES:
        r = ratio(res, CHECKED, mode)
        if r is None:
            out.append(f"{mode}: not measured")
        elif r > LIMITS[mode]:
            out.append(f"{mode}: hitless (library) {r:.3f}× the minimal hyper server, limit {LIMITS[mode]:.2f}×")
    return out


def section(res: Results) -> str:
    return "\n".join(
        [
            MARK_BEGIN,
            "## Instructions per request (callgrind)",
            "",
            f"Measured {res.when} by `bench/instructions` ({res.valgrind}, {res.machine}). User-space "
            "instructions of the whole server process, counted by callgrind: (I(12,000 requests) − "
            "I(2,000 requests)) / 10,000, one tokio worker thread, one nginx worker. Counts repeat "
            "within about 0.5 % from run to run whatever else the machine does, so CI runs "
            "`bench/instructions --check` and fails when hitless (library) exceeds the limit. Ratios "
            "in parentheses are to the minimal hyper server of the same run. Clients: `h2load --h1 -c8` "
            "(keep-alive), `h2load -c8 -m10` (h2c), `ab -c8` (new connection per request); per "
            "connection = new-connection minus keep-alive per request.",
            "",
            table(res),
            "",
            "hitless (library) is bench/minimal-hyper's service served by `hitless::Server` with its "
            "default settings; the demo service adds two response headers (content-type and "
            "x-hitless-version).",
            "",
            "### Memory",
            "",
            "Resident set (VmRSS) read from outside, one tokio worker thread: idle 2 s after "
            f"listening; per idle connection = growth of the resident set with {CONNECTIONS:,} "
            f"connections that each sent one request and then sat idle for {IDLE_WAIT:.0f} s, "
            f"divided by {CONNECTIONS:,}; then {BURST:,} connections with a request each, all "
            f"closed, and the resident set {SETTLE:.0f} s later. hitless (library) and minimal "
            "hyper use glibc's malloc; the demo service uses mimalloc.",
            "",
            memory_table(res) if res.memory else "(not measured in this run)",
            "",
            "The allocator decides what a burst leaves resident. Measured once the same way with the demo "
            "service (2026-12-02, 10,000 connections closed, 5 s later): glibc's malloc kept 132 MB of a "
            "146 MB peak (28× idle), mimalloc 204 MB of 204 MB, jemalloc with its default ten-second "
            "decay 49 MB, jemalloc with a one-second decay (.cargo/config.toml) 10.2 MB (1.9× idle), "
            "which is what the demo service ships. jemalloc's arenas add about 1 MB to the idle resident "
            "set (demo service, measured the same day: 4.7 MB with glibc, 5.5 MB with jemalloc, before "
            "TLS was built in). An idle HTTP/1.1 connection releases hyper's two 8 KiB buffers between "
            "requests (it is parked after a quiet look of its timer), which only an allocator that "
            "returns freed memory shows from outside; HTTP/2 connections keep the h2 crate's buffers.",
            MARK_END,
        ]
    )


def splice(doc: str, new_section: str) -> str:
    """`doc` with its instructions section replaced by `new_section`
    (appended when it has none)."""
    start, end = doc.find(MARK_BEGIN), doc.find(MARK_END)
    if start != -1 and end > start:
        return doc[:start] + new_section + doc[end + len(MARK_END) :]
    return doc.rstrip("\n") + "\n\n" + new_section + "\n"


def existing_section(doc: str) -> str | None:
    start, end = doc.find(MARK_BEGIN), doc.find(MARK_END)
    return doc[start : end + len(MARK_END)] if start != -1 and end > start else None


def load(path: Path) -> Results:
    """A run's results, as main() wrote them."""
    raw = json.loads(path.read_text())
    return Results(
        when=raw["when"],
        valgrind=raw["valgrind"],
        machine=raw["machine"],
        counts=[Count(**c) for c in raw["counts"]],
        memory=[Memory(**m) for m in raw.get("memory", [])],
    )


def write_docs(repo: Path, res: Results) -> int:
    doc_path = repo / "docs" / "bench.md"
    doc_path.write_text(splice(doc_path.read_text() if doc_path.exists() else "", section(res)))
    log(f"wrote the instructions section of {doc_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/instructions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repo", default=".", help="the checkout (bench/instructions passes its own)")
    ap.add_argument(
        "--check", action="store_true", help="measure hitless (library) and minimal hyper only; fail beyond the limits"
    )
    ap.add_argument("--docs", action="store_true", help="write the section of docs/bench.md (all four servers)")
    ap.add_argument(
        "--report-only", action="store_true", help="write that section again from the last run's instructions.json"
    )
    a = ap.parse_args(argv)
    set_tag("instr")
    install_signal_handlers()
    repo = Path(a.repo).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or repo / "target")
    if a.report_only:
        return write_docs(repo, load(target / "bench" / "instructions.json"))
    try:
        for tool in ("valgrind", "h2load", "ab", *(() if a.check else ("nginx",))):
            if shutil.which(tool) is None:
                raise CannotRun(f"{tool} not found")
        for b in ("minimal-hyper", "hitless-ok", *(() if a.check else ("hitless",))):
            if not (target / "release" / b).is_file():
                raise CannotRun(f"{target / 'release' / b} not built")
        res = measure(target, with_all=not a.check)
    except CannotRun as e:
        die(f"instructions: cannot run: {e}")
        return EXIT_CANNOT_RUN
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        die(f"instructions: {e}")
        return EXIT_FAILED
    except Interrupted as e:
        die(f"instructions: {e}")
        return e.exit_status
    print(table(res), flush=True)
    if res.memory:
        print(memory_table(res), flush=True)
    out = target / "bench" / "instructions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dataclasses.asdict(res), indent=2) + "\n")
    log(f"wrote {out}")
    if a.docs:
        write_docs(repo, res)
    bad = violations(res)
    for v in bad:
        log(f"over the limit: {v}")
    if a.check:
        log("instruction counts within the limits" if not bad else "instruction counts OVER the limits")
    return EXIT_FAILED if bad and a.check else 0


if __name__ == "__main__":
    sys.exit(main())
