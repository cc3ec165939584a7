"""python3 -m hitless_testkit.bench.instructions: user-space instructions per
request, counted by callgrind (valgrind), for hitless, a minimal hyper server
and nginx, in five client modes (three cleartext, two over TLS).
bench/instructions runs this.

Instruction counts do not depend on how busy the machine is: the same binary
given the same requests executes (almost exactly) the same instructions, so
the ratio of hitless to the minimal hyper server, both built in the same run,
can be checked in CI (--check), unlike a wall-clock speed.

Method, per server and mode: start the server under `valgrind
--tool=callgrind`, send N requests with the client, stop it (SIGTERM), read
the total instruction count of the whole process (all threads). Do it for
N = 2,000 and N = 12,000; per request = (I(12,000) - I(2,000)) / 10,000,
which cancels start-up, shutdown and the connections' setup (for a TLS
handshake per request, N = 200 and 1,200: handshakes are slow under
callgrind). The Rust servers
run one tokio worker thread (TOKIO_WORKER_THREADS=1, as nginx runs one
worker): with more, idle workers park and wake a varying number of times and
the count is no longer repeatable.

Servers:
- minimal hyper: bench/minimal-hyper (hyper-util auto builder, one
  service_fn answering `ok`, tokio multi-thread runtime); over TLS its
  `minimal-hyper-tls` (tokio-rustls' TlsAcceptor in front of the same, with
  the library's rustls configuration);
- hitless (library): the same service served by hitless::Server with its
  default settings (bench/minimal-hyper/src/bin/hitless-ok.rs): what the
  library adds, and what --check bounds;
- hitless (demo service): the hitless binary's /healthz (adds
  content-type and x-hitless-version headers);
- nginx: `return 200 "ok\\n"`, one worker, no master process.

Modes: keep-alive (`h2load --h1 -c8`), h2c (`h2load -c8 -m10`, prior
knowledge) and a new connection per request (`ab -c8`, HTTP/1.0 without
keep-alive); over TLS, keep-alive (`h2load --h1 -c8` over https) and a new
connection, so a full handshake, per request (`ab -c1` over https: with more
concurrency ab opens a varying number of extra connections at its end, each
a handshake without a request). Per connection = new-connection per request
- keep-alive per request: what opening and closing a connection (over TLS:
with its handshake) costs beyond its request.

TLS: one certificate, suite and group for every server (tls.py: ECDSA P-256
from the project's test CA; TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, pinned
in the clients and in nginx). Every TLS run is checked:
the client must report that protocol, suite and group, and the server must
have made exactly one ECDSA signature (the handshake's CertificateVerify) per
connection the client opened, counted by callgrind as calls of rustls'
`EcdsaSigner::sign` or OpenSSL's `ECDSA_do_sign_ex`: a full handshake each
time, never a resumed one.

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
from .tls import GROUP, NEGOTIATED, SUITE, client_config, make_certificate, negotiated

SMALL, LARGE = 2_000, 12_000
"""Requests per run: the difference of the two counts is per request."""
TLS_SMALL, TLS_LARGE = 200, 1_200
"""The same for a TLS handshake per request (about 1.3 million instructions
each with rustls, 2.7 million with nginx's OpenSSL)."""

MODES = ("keep-alive", "h2c", "new connection", "TLS keep-alive", "TLS new connection")
TLS_MODES = ("TLS keep-alive", "TLS new connection")
REQUESTS = {mode: (TLS_SMALL, TLS_LARGE) if mode == "TLS new connection" else (SMALL, LARGE) for mode in MODES}
LIMITS = {"keep-alive": 1.10, "h2c": 1.05, "new connection": 1.10, "TLS keep-alive": 1.10, "TLS new connection": 1.10}
"""Most instructions per request hitless (library) may execute, as a
multiple of the minimal hyper server's in the same run."""
PER_CONNECTION = {"": ("new connection", "keep-alive"), "TLS ": ("TLS new connection", "TLS keep-alive")}
"""Per connection = the first mode's count minus the second's."""
CONNECTIONS_KEPT = 8
"""Connections of the keep-alive and h2c clients (-c8)."""

SIGNERS = re.compile(r"EcdsaSigner as rustls::crypto::signer::Signer>::sign$|^ECDSA_do_sign_ex$")
"""The servers' ECDSA signing functions (rustls with ring; OpenSSL): one call
per full handshake, none for a resumed one."""

REFERENCE, CHECKED, DEMO, NGINX = "minimal hyper", "hitless (library)", "hitless (demo service)", "nginx"
CLIENT_TIMEOUT = 300.0
"""Seconds one client run may take under valgrind before it counts as hung."""
STOP_WAIT = 30.0
"""Seconds a server under valgrind may take to exit after SIGTERM."""

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
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites {suite};
        ssl_ecdh_curve {group};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


@dataclass(frozen=True)
class Server:
    name: str
    argv: list[str]
    """The command; ADDR, PORT_H1, PORT_H2 and PORT_TLS are filled in."""
    tls_argv: list[str] | None = None
    """The command for the TLS modes, serving HTTPS on ADDR; None: `argv`
    serves it on PORT_TLS."""
    path: str = "/"
    separate_ports: bool = False
    """h2c on PORT_H2 and TLS on PORT_TLS (nginx), instead of all on ADDR."""
    config: tuple[Path, str] | None = None
    """A file to write before each run, and its text (PORT_H1, PORT_H2 and
    PORT_TLS filled in)."""


@dataclass
class Run:
    """One server run under callgrind."""

    instructions: int
    handshakes: int
    """Full TLS handshakes the server made (ECDSA signatures)."""
    negotiated: str | None
    """TLS runs: protocol, suite and group, as the client reported them."""


@dataclass
class Count:
    server: str
    mode: str
    per_request: float
    small: int
    large: int
    requests: list[int] = dataclasses.field(default_factory=lambda: [SMALL, LARGE])
    """Requests of the two runs."""
    handshakes: list[int] | None = None
    """TLS: full handshakes the server made in the two runs."""
    negotiated: str | None = None


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
    c = f"-c{CONNECTIONS_KEPT}"
    if mode == "keep-alive":
        return ["h2load", "--h1", c, f"-n{n}", url]
    if mode == "TLS keep-alive":
        return ["h2load", "--h1", c, f"-n{n}", f"--tls13-ciphers={SUITE}", f"--groups={GROUP}", url]
    if mode == "h2c":
        return ["h2load", c, "-m10", f"-n{n}", url]
    if mode == "TLS new connection":
        return ["ab", "-q", "-c1", f"-n{n}", "-f", "TLS1.3", url]
    return ["ab", "-q", c, f"-n{n}", url]


def calls_to(callgrind_out: Path, callee: re.Pattern[str]) -> int:
    """Calls of the functions named like `callee`, from anywhere, in a
    callgrind output file (callgrind_out_format(5): `cfn=` names the called
    function, by `(id) name` the first time and `(id)` after; the `calls=`
    line that follows counts its calls from the current one)."""
    names: dict[str, str] = {}
    total, called = 0, None
    with callgrind_out.open(errors="replace") as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                key, _, rest = line.rstrip("\n").partition("=")
                m = re.fullmatch(r"\((\d+)\)(?: (.*))?", rest)
                name = rest if m is None else names.setdefault(m.group(1), m.group(2) or "")
                called = name if key == "cfn" else None
            elif line.startswith("calls=") and called is not None:
                if callee.search(called):
                    total += int(line[6:].split()[0])
                called = None
    return total


def client_ok(mode: str, out: str, n: int) -> bool:
    """Whether the client saw all `n` requests answered with a 2xx."""
    if mode in ("new connection", "TLS new connection"):
        done = re.search(r"Complete requests:\s+(\d+)", out)
        failed = re.search(r"Failed requests:\s+(\d+)", out)
        non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
        return bool(done and int(done.group(1)) == n and failed and failed.group(1) == "0" and not non2xx)
    m = re.search(r"status codes: (\d+) 2xx", out)
    return bool(m and int(m.group(1)) == n)


def stop(proc: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, so that callgrind writes its counts; once more if the server
    is still there after STOP_WAIT (nginx under valgrind once stayed 60 s
    after one, cause not found); then SIGKILL. False: it had to be killed,
    and callgrind wrote nothing."""
    for _ in range(2):
        if proc.poll() is not None:
            return True
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WAIT)
            return True
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()
    return False


def count_one(server: Server, mode: str, n: int, work: Path) -> Run:
    """Total instructions of one server process that served `n` requests,
    and for TLS what was negotiated and how many full handshakes it made."""
    h1, h2, tls = free_port(), free_port(), free_port()
    tls_mode = mode in TLS_MODES
    argv = server.tls_argv if tls_mode and server.tls_argv is not None else server.argv
    port = h1
    if server.separate_ports and mode == "h2c":
        port = h2
    elif server.separate_ports and tls_mode:
        port = tls
    out_file = work / f"callgrind.{re.sub(r'[^a-z0-9]+', '-', server.name)}.{mode.replace(' ', '-')}.{n}"

    def fill(text: str) -> str:
        return (
            text.replace("ADDR", f"127.0.0.1:{h1}")
            .replace("PORT_H1", str(h1))
            .replace("PORT_H2", str(h2))
            .replace("PORT_TLS", str(tls))
        )

    argv = [fill(a) for a in argv]
    if server.config is not None:
        path, text = server.config
        path.write_text(fill(text))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}
    client_env = dict(os.environ, OPENSSL_CONF=str(work / "client-openssl.cnf"))
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--trace-children=no"]
    with (work / "server.log").open("ab") as log_f:
        proc = subprocess.Popen([*vg, *argv], stdout=log_f, stderr=log_f, env=env)
        try:
            wait_port(port, proc, timeout=60)
            url = f"{'https' if tls_mode else 'http'}://127.0.0.1:{port}{server.path}"
            r = subprocess.run(
                client_argv(mode, url, n),
                capture_output=True,
                text=True,
                timeout=CLIENT_TIMEOUT,
                check=False,
                env=client_env if tls_mode else None,
            )
            if r.returncode != 0 or not client_ok(mode, r.stdout, n):
                raise RuntimeError(f"{server.name}, {mode}: the client did not get {n} answers:\n{r.stdout[-800:]}")
        finally:
            stopped = stop(proc)
    if not stopped:
        tail = (work / "server.log").read_text(errors="replace")[-800:]
        raise RuntimeError(f"{server.name}, {mode}: the server did not exit on SIGTERM (twice), so no counts:\n{tail}")
    text = out_file.read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if not m:
        raise RuntimeError(f"no instruction total in {out_file}")
    if not tls_mode:
        return Run(int(m.group(1)), 0, None)
    got = negotiated(r.stdout)
    if got != NEGOTIATED:
        raise RuntimeError(f"{server.name}, {mode}: negotiated {got}, not {NEGOTIATED}:\n{r.stdout[-800:]}")
    handshakes = calls_to(out_file, SIGNERS)
    connections = n if mode == "TLS new connection" else CONNECTIONS_KEPT
    if handshakes != connections:
        raise RuntimeError(
            f"{server.name}, {mode}: {handshakes} full handshakes (ECDSA signatures) for {connections} "
            "connections: a client resumed sessions, or opened connections of its own"
        )
    return Run(int(m.group(1)), handshakes, got)


def servers(target: Path, with_all: bool, work: Path, cert: Path, key: Path) -> list[Server]:
    release = target / "release"
    pem = [str(cert), str(key)]
    out = [
        Server(REFERENCE, [str(release / "minimal-hyper"), "ADDR"], [str(release / "minimal-hyper-tls"), "ADDR", *pem]),
        Server(CHECKED, [str(release / "hitless-ok"), "ADDR"], [str(release / "hitless-ok"), "ADDR", *pem]),
    ]
    if with_all:
        demo = [str(release / "hitless"), "--listen", "ADDR"]
        out.append(Server(DEMO, demo, [*demo, "--tls-cert", str(cert), "--tls-key", str(key)], path="/healthz"))
        conf = work / "nginx.conf"
        (work / "body").mkdir(exist_ok=True)
        text = NGINX_CONF.format(
            prefix=work, h1="PORT_H1", h2="PORT_H2", tls="PORT_TLS", cert=cert, key=key, suite=SUITE, group=GROUP
        )
        out.append(Server(NGINX, ["nginx", "-p", str(work), "-c", str(conf)], separate_ports=True, config=(conf, text)))
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
        cert, key = make_certificate(work / "ca")
        client_config(work)
        measured = servers(target, with_all, work, cert, key)
        for server in measured:
            for mode in MODES:
                n_small, n_large = REQUESTS[mode]
                small = count_one(server, mode, n_small, work)
                large = count_one(server, mode, n_large, work)
                per = (large.instructions - small.instructions) / (n_large - n_small)
                res.counts.append(
                    Count(
                        server.name,
                        mode,
                        per,
                        small.instructions,
                        large.instructions,
                        requests=[n_small, n_large],
                        handshakes=[small.handshakes, large.handshakes] if mode in TLS_MODES else None,
                        negotiated=large.negotiated,
                    )
                )
                log(f"{server.name:<24} {mode:<18} {per:12,.0f} instructions per request")
        if with_all:
            for server in measured[:3]:
                port = free_port()
                argv = [a.replace("ADDR", f"127.0.0.1:{port}") for a in server.argv]
                mem = measure_memory(server.name, argv, port)
                res.memory.append(mem)
                log(f"{server.name:<24} memory: {mem}")
    return res


def ratio(res: Results, server: str, mode: str) -> float | None:
    a, b = res.per_request(server, mode), res.per_request(REFERENCE, mode)
    return a / b if a is not None and b else None


def per_connection(res: Results, server: str, prefix: str = "") -> float | None:
    new, kept = PER_CONNECTION[prefix]
    nc, ka = res.per_request(server, new), res.per_request(server, kept)
    return nc - ka if nc is not None and ka is not None else None


def table(res: Results) -> str:
    names = [n for n in (CHECKED, DEMO, REFERENCE, NGINX) if res.per_request(n, MODES[0]) is not None]
    head = "| mode | " + " | ".join(names) + " | limit for hitless (library) |"
    rows = [head, "|---" * (len(names) + 2) + "|"]

    def cell(name: str, value: float | None, r: float | None) -> str:
        if value is None:
            return ""
        return f"{value:,.0f}" + ("" if name == REFERENCE or r is None else f" ({r:.2f}×)")

    def conn_row(prefix: str, label: str) -> None:
        conn = []
        for n in names:
            v, ref = per_connection(res, n, prefix), per_connection(res, REFERENCE, prefix)
            conn.append(cell(n, v, v / ref if v is not None and ref else None))
        if any(conn):
            rows.append(f"| {label} | " + " | ".join(conn) + " | |")

    for mode in MODES:
        if all(res.per_request(n, mode) is None for n in names):
            continue
        cells = [cell(n, res.per_request(n, mode), ratio(res, n, mode)) for n in names]
        rows.append(f"| {mode}, per request | " + " | ".join(cells) + f" | ≤ {LIMITS[mode]:.2f}× |")
        if mode == "new connection":
            conn_row("", "per connection (open and close)")
    conn_row("TLS ", "TLS per connection (handshake, open and close)")
    return "\n".join(rows)


def memory_table(res: Results) -> str:
    rows = [
        "| server | idle RSS | of which anonymous / file-backed | per idle HTTP/1.1 connection "
        "| per idle h2c connection "
        f"| RSS with {BURST:,} connections open | RSS {SETTLE:.0f} s after they closed (× idle) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in res.memory:
        split = f"{m.idle_anon_kb * 1024 / 1e6:.2f} / {m.idle_file_kb * 1024 / 1e6:.2f} MB" if m.idle_file_kb else "–"
        h1, h2 = m.per_connection_bytes.get("HTTP/1.1"), m.per_connection_bytes.get("h2c")
        rows.append(
            f"| {m.server} | {m.idle_kb * 1024 / 1e6:.2f} MB | {split} | {h1 / 1000 if h1 is not None else 0:.1f} kB "
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


def tls_paragraph(res: Results) -> str:
    """How the TLS modes were set up, and what the runs verified."""
    tls = [c for c in res.counts if c.mode in TLS_MODES]
    if not tls:
        return "(TLS not measured in this run)"
    suites = sorted({c.negotiated or "?" for c in tls})
    full = all(c.handshakes == ([CONNECTIONS_KEPT] * 2 if c.mode == "TLS keep-alive" else c.requests) for c in tls)
    servers = ", ".join(dict.fromkeys(c.server for c in tls))
    return (
        "TLS: one certificate for every server, made in the run by the project's test CA "
        "(vm-tests/hitless_testkit/test_ca.py: ECDSA P-256, signed by a throwaway CA). TLS 1.3 with "
        f"{SUITE} and {GROUP}, pinned in the clients (h2load `--tls13-ciphers` and `--groups`; ab through "
        "an `OPENSSL_CONF` that sets `Ciphersuites` and `Groups`) and in nginx (`ssl_protocols TLSv1.3`, "
        f"`ssl_conf_command Ciphersuites {SUITE}`, `ssl_ecdh_curve {GROUP}`); the rustls servers keep "
        "rustls' defaults, which include both, and take the client's choice. Every server sends its "
        "default two TLS 1.3 session tickets per handshake, which the clients never use. Verified in "
        f"every TLS run ({servers}): the client reported {', '.join(suites)}"
        + (
            "; and the server made exactly one ECDSA signature (the handshake's CertificateVerify, "
            "callgrind's call count of rustls' `EcdsaSigner::sign` or OpenSSL's `ECDSA_do_sign_ex`) "
            f"per connection: {CONNECTIONS_KEPT} in the keep-alive runs, one per request in the "
            "new-connection runs, so every connection was a full handshake, none resumed (`ab -c8` "
            "would add a varying number of connections at its end that handshake and send nothing; "
            "wrk and h2load resume sessions when they reconnect)."
            if full
            else "; the handshake counts were not as expected (see instructions.json)."
        )
        + " Under valgrind the crypto libraries pick their code for the CPU valgrind emulates "
        "(no AVX-512, SHA or ADX extensions: ring's generic X25519, AVX SHA-256), so the handshake "
        "counts compare those code paths; bench/run's wall-clock TLS figures use the real CPU."
    )


def section(res: Results) -> str:
    return "\n".join(
        [
            MARK_BEGIN,
            "## Instructions per request (callgrind)",
            "",
            f"Measured {res.when} by `bench/instructions` ({res.valgrind}, {res.machine}). User-space "
            f"instructions of the whole server process, counted by callgrind: (I({LARGE:,} requests) − "
            f"I({SMALL:,} requests)) / {LARGE - SMALL:,}, and (I({TLS_LARGE:,}) − I({TLS_SMALL:,})) / "
            f"{TLS_LARGE - TLS_SMALL:,} for a TLS handshake per request; one tokio worker thread, one "
            "nginx worker. Counts repeat "
            "within about 0.5 % from run to run whatever else the machine does, so CI runs "
            "`bench/instructions --check` and fails when hitless (library) exceeds the limit. Ratios "
            "in parentheses are to the minimal hyper server of the same run. Clients: `h2load --h1 -c8` "
            "(keep-alive), `h2load -c8 -m10` (h2c), `ab -c8` (new connection per request), over https "
            "`h2load --h1 -c8` (TLS keep-alive) and `ab -c1` (TLS new connection: a full handshake per "
            "request); per connection = new-connection minus keep-alive per request.",
            "",
            table(res),
            "",
            "hitless (library) is bench/minimal-hyper's service served by `hitless::Server` with its "
            "default settings (over TLS with `Server::with_tls`); the demo service adds two response "
            "headers (content-type and x-hitless-version), over TLS with `--tls-cert`/`--tls-key`. "
            "Over TLS the minimal hyper server is bench/minimal-hyper's `minimal-hyper-tls`: "
            "tokio-rustls' `TlsAcceptor` in front of the same hyper-util auto builder, with the "
            "library's rustls configuration (the *ring* provider, rustls' default versions and suites, "
            "ALPN `h2` and `http/1.1`) and the same crate versions.",
            "",
            tls_paragraph(res),
            "",
            "Where a new connection's CPU goes (measured once, 2026-12-03, AMD EPYC, one worker "
            "thread pinned as in the wall-clock run; 5 runs of `wrk -t1 -c50 -H 'Connection: close'` "
            "for 5 s each, CPU time from /proc/PID/stat, medians; system calls counted by `strace -c` "
            "over 5,000 connections of `ab -c8`): nginx 43.7 µs a connection, 36.7 of them in the "
            "kernel; hitless (library) 57.5 (43.8); the demo service 59.5 (46.3); the minimal hyper "
            "server 65.8 (52.6). Most of it is the kernel's TCP work over loopback, in every server. "
            "System calls a connection: nginx 6 (accept4, epoll_ctl, recvfrom, writev, close, and one "
            "epoll_wait); hitless 6.3 (accept4, epoll_ctl to add the socket and again to remove it, "
            "recvfrom, sendto, close; an accept4 that finds the queue empty and an epoll_wait for "
            "every seven or eight connections); the minimal hyper server 9.6 (besides: a setsockopt "
            "for TCP_NODELAY on every connection, which hitless sets once on the listening socket for "
            "the accepted ones to inherit, a second recvfrom that reads the client's close, and a "
            "shutdown before the close). The second epoll_ctl is tokio's, "
            "which deregisters every socket before closing it; the rest of the difference to nginx is "
            "user-space work that the minimal hyper server does too (the table above).",
            "",
            "### Memory",
            "",
            "Resident set (VmRSS) read from outside, one tokio worker thread: idle 2 s after "
            f"listening; per idle connection = growth of the resident set with {CONNECTIONS:,} "
            f"connections that each sent one request and then sat idle for {IDLE_WAIT:.0f} s, "
            f"divided by {CONNECTIONS:,}, HTTP/1.1 and h2c each in a fresh server process (so that "
            f"neither is measured in memory the other freed); then {BURST:,} connections with a "
            "request each, all "
            f"closed, and the resident set {SETTLE:.0f} s later. hitless (library) and minimal "
            "hyper use glibc's malloc; the demo service uses jemalloc.",
            "",
            memory_table(res) if res.memory else "(not measured in this run)",
            "",
            "The allocator decides what a burst leaves resident. Measured once the same way with the demo "
            "service (2026-12-02, 10,000 connections closed, 5 s later): glibc's malloc kept 132 MB of a "
            "146 MB peak (28× idle), mimalloc 204 MB of 204 MB, jemalloc with its default ten-second "
            "decay 49 MB, jemalloc with a one-second decay (.cargo/config.toml) 10.2 MB (1.9× idle), "
            "which is what the demo service ships. An idle HTTP/1.1 connection releases hyper's two "
            "8 KiB buffers between requests (it is parked after a quiet look of its timer), which only "
            "an allocator that returns freed memory shows from outside.",
            "",
            "What an idle h2c connection holds (measured once, 2026-12-03: valgrind's DHAT on hitless "
            "(library), 200 h2c connections idle after one request each, the heap at its peak): 36.7 kB "
            "allocated per connection, of which 28 KiB are the h2 crate's codec buffers, made when the "
            "connection starts and kept until it closes (its frame writer's 16 KiB, its frame reader's "
            "8 KiB, its HPACK decoder's 4 KiB), 3.5 kB h2's stream slabs, which keep the capacity of "
            "the busiest moment, and 2 KiB the tokio task. Only the pages written become resident, "
            "hence the smaller per-h2c figures above. Neither hyper nor h2 has a setting for these buffers or a "
            "way to release them while the connection is idle, so the ≤ 8 kB the demo service's idle "
            "HTTP/1.1 connection meets is out of reach for HTTP/2 without a change to h2 itself.",
            "",
            "What the idle resident set is (measured once, 2026-12-03, the demo service, "
            "/proc/PID/smaps): mostly file-backed pages. A build linked against the system's glibc "
            "maps 2.1 to 2.3 MB of libc.so.6, libm.so.6, ld-linux and libgcc_s whatever the program "
            "does, and about 3 MB of its own 5.1 MB binary (the kernel maps file pages in blocks "
            "around each one used); the anonymous part is about 0.9 MB, of which jemalloc's own "
            "mappings about 0.65 MB (the library on glibc's malloc: 0.09 MB). jemalloc's options "
            "barely move it: without its background threads 24 kB less anonymous memory, with a "
            "single arena 124 kB less, both within the run-to-run spread of the total; the defaults "
            "stay, the threads are what return a burst's memory while the process sits idle. "
            "Reading `RUST_LOG` with tracing-subscriber's `filter::Targets` instead "
            "of `EnvFilter` took the regular-expression engine out of the binary (5.75 to 5.09 MB). A "
            "statically linked build of the same demo service against musl (`cargo zigbuild --target "
            "x86_64-unknown-linux-musl`, jemalloc still its allocator) idles at 3.35 MB: 0.69 MB "
            "anonymous and 2.67 MB of its 4.1 MB binary, no shared library mapped. The packages ship "
            "the glibc build.",
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
        for tool in ("valgrind", "h2load", "ab", "openssl", *(() if a.check else ("nginx",))):
            if shutil.which(tool) is None:
                raise CannotRun(f"{tool} not found")
        for b in ("minimal-hyper", "minimal-hyper-tls", "hitless-ok", *(() if a.check else ("hitless",))):
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
