"""What every client program in this directory shares: its command line, its
stop signal and the JSON report it writes (the Node.js and Go clients write
the same report; hitless_testkit.scenarios.clients reads it).

Each client makes one request at a time to --url, reusing its library's
connection, --interval seconds apart, and after every --pause-every'th
request it pauses --pause seconds instead (idle, longer than the server's
idle grace: a draining server closes the connection meanwhile, and the
library must notice before it reuses it), until SIGTERM or SIGINT; then it
finishes the request in flight, writes its final report and exits 0. While
it runs the report is rewritten (atomically) every REWRITE_S seconds with
"final": false, so a scenario can watch the versions it has seen.

Report (one JSON object):
    client       the client's name in the matrix, e.g. "python-requests"
    library      the library and its version, as the library reports it
    method       "GET" or "POST"
    requests     requests started (each counts once, however often the
                 library itself retried it)
    ok           answered with the expected status and an x-hitless-version
    failed       requests - ok
    errors       {error text: count}
    failures     the first MAX_FAILURES failures: {"at_s", "error"}
    versions     the versions that answered, in order, repeats collapsed
    connections  TCP connections the library opened, when it tells (else null)
    seconds      since the client started
    final        true once the client has stopped

Standard library only (Debian's python3 runs it in the container).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from types import FrameType

VERSION_HEADER = "x-hitless-version"
"""Set by hitless on every response; names the build that answered."""
MAX_FAILURES = 100
REWRITE_S = 0.2


@dataclass
class Failure:
    at_s: float
    """Seconds since the client started."""
    error: str


@dataclass
class Report:
    client: str
    library: str
    method: str
    requests: int = 0
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    connections: int | None = None
    seconds: float = 0.0
    final: bool = False


class Recorder:
    """Counts answers and failures into a Report and rewrites its file."""

    def __init__(self, path: str, report: Report, expected_status: int = 200) -> None:
        self.path = path
        self.report = report
        self.expected_status = expected_status
        self.t0 = time.monotonic()
        self.last_write = 0.0

    def answered(self, status: int, version: str | None) -> None:
        """A complete response: ok if it has the expected status and says
        which version answered."""
        r = self.report
        r.requests += 1
        if version and (not r.versions or r.versions[-1] != version):
            r.versions.append(version)
        if status != self.expected_status:
            self._failure(f"status {status} (expected {self.expected_status})")
        elif not version:
            self._failure(f"no {VERSION_HEADER} header")
        else:
            r.ok += 1
        self._maybe_write()

    def failed(self, error: BaseException | str) -> None:
        """No complete response: what the library raised."""
        self.report.requests += 1
        self._failure(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        self._maybe_write()

    def _failure(self, error: str) -> None:
        r = self.report
        r.failed += 1
        r.errors[error] = r.errors.get(error, 0) + 1
        if len(r.failures) < MAX_FAILURES:
            r.failures.append(Failure(round(time.monotonic() - self.t0, 3), error))

    def _maybe_write(self) -> None:
        if time.monotonic() - self.last_write >= REWRITE_S:
            self.write()

    def write(self, final: bool = False) -> None:
        """Replace the report file (write a temporary file, rename it)."""
        self.report.seconds = round(time.monotonic() - self.t0, 3)
        self.report.final = final
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(asdict(self.report)) + "\n")
        os.replace(tmp, self.path)
        self.last_write = time.monotonic()


def arg_parser(description: str) -> argparse.ArgumentParser:
    """The options every client takes; a client may add its own."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="what to GET, e.g. http://127.0.0.1:8080/")
    p.add_argument("--report", required=True, help="the JSON report to (re)write")
    p.add_argument("--interval", type=float, default=0.01, help="seconds between requests (default 0.01)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds a request may take (default 10)")
    p.add_argument("--pause-every", type=int, default=0, help="pause after every N-th request (default 0: never)")
    p.add_argument("--pause", type=float, default=0.25, help="seconds of each pause (default 0.25)")
    return p


def gap(args: argparse.Namespace, requests: int) -> float:
    """Seconds to wait after the `requests`-th request: --interval, or
    --pause after every --pause-every'th."""
    if args.pause_every > 0 and requests % args.pause_every == 0:
        return float(args.pause)
    return float(args.interval)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the client stops after the
    request in flight."""
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
