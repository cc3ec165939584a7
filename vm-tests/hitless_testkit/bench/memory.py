"""Memory of a server, measured from outside (VmRSS in /proc/PID/status):
idle, per idle keep-alive connection, and after a burst of connections has
closed. bench/instructions prints and records these beside the instruction
counts.

- idle: the resident set 2 s after the server listens, before any request,
  and how much of it is anonymous (the process' own heap, stacks and
  relocated data) and how much file-backed (pages of the binary and the
  shared libraries, which the page cache shares; /proc/PID/smaps_rollup);
- every request is GET /healthz, answered `ok`;
- per idle connection: open N connections, send one request on each and read
  its answer, let them sit idle for IDLE_WAIT seconds (past the server's
  first quiet check, when hitless releases an idle HTTP/1 connection's
  buffers), and divide the growth of the resident set by N; HTTP/1.1 and
  h2c (prior knowledge) each in a server process of its own;
- after a burst: open BURST connections with a request each, close them all,
  wait SETTLE seconds, and compare the resident set with the idle one.

The servers run one tokio worker thread, as in the rest of the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .host import wait_port

IDLE_WAIT = 25.0
"""Seconds the connections sit idle before the resident set is read."""
SETTLE = 5.0
"""Seconds after the burst closed before the resident set is read."""
CONNECTIONS, BURST = 2_000, 10_000

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
# HEADERS, stream 1, END_STREAM | END_HEADERS: :method GET, :scheme http,
# :path /healthz, :authority "b" (HPACK, RFC 7541: static table indices 2
# and 6, literals with the names of indices 4 and 1).
H2_GET = b"\x00\x00\x0f\x01\x05\x00\x00\x00\x01" + b"\x82\x86\x44\x08/healthz\x41\x01b"


@dataclass
class Memory:
    server: str
    idle_kb: int
    idle_anon_kb: int = 0
    idle_file_kb: int = 0
    per_connection_bytes: dict[str, float] = field(default_factory=dict)
    burst_peak_kb: int = 0
    after_burst_kb: int = 0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def rss_split_kb(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) kB of the resident set, from smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            fields[key] = int(rest.split()[0])
    anon = fields["Anonymous"]
    return anon, fields["Rss"] - anon


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, BURST + 1_000) if hard != resource.RLIM_INFINITY else BURST + 1_000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_with_request(port: int, n: int, http2: bool) -> list[socket.socket]:
    """n connections, each with one request sent and its answer read."""
    request = H2_PREFACE + H2_SETTINGS + H2_GET if http2 else b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n"
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        socks.append(s)
    pending = {s.fileno(): s for s in socks}
    seen: dict[int, bytes] = {}
    deadline = time.monotonic() + 120
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(1000):
            data = pending[fd].recv(65536)
            got = seen.get(fd, b"") + data
            seen[fd] = got
            # An HTTP/1 answer, or an h2 DATA frame with END_STREAM (ok\n).
            if not data or (b"\r\n\r\nok" in got if not http2 else b"ok\n" in got):
                poller.unregister(fd)
                del pending[fd]
    if pending:
        raise RuntimeError(f"{len(pending)} of {n} connections got no answer")
    return socks


def measure_memory(name: str, argv: list[str], port: int) -> Memory:
    """Idle, HTTP/1.1 and the burst in one server process; h2c in a fresh
    one, so that neither mode is measured in memory the other freed (glibc's
    malloc keeps freed memory and reuses it)."""
    raise_nofile()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}

    def idle_connections(pid: int, http2: bool) -> float:
        before = rss_kb(pid)
        socks = open_with_request(port, CONNECTIONS, http2)
        time.sleep(IDLE_WAIT)
        after = rss_kb(pid)
        for s in socks:
            s.close()
        return (after - before) * 1024 / CONNECTIONS

    with running(argv, port, env) as pid:
        mem = Memory(name, rss_kb(pid), *rss_split_kb(pid))
        mem.per_connection_bytes["HTTP/1.1"] = idle_connections(pid, False)
        time.sleep(1)
        socks = open_with_request(port, BURST, False)
        mem.burst_peak_kb = rss_kb(pid)
        for s in socks:
            s.close()
        time.sleep(SETTLE)
        mem.after_burst_kb = rss_kb(pid)
    with running(argv, port, env) as pid:
        mem.per_connection_bytes["h2c"] = idle_connections(pid, True)
    return mem


@contextlib.contextmanager
def running(argv: list[str], port: int, env: dict[str, str]) -> Iterator[int]:
    """The server's pid, 2 s after it listens; stopped (SIGTERM) on exit."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, proc, timeout=20)
        time.sleep(2)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
