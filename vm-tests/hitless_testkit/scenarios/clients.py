"""Real, widely used HTTP client libraries through in-place upgrades.

Each client (vm-tests/clients) runs on the client machine as a transient
unit and makes one request at a time on its library's reused connection,
until it is stopped; it rewrites a JSON report as it goes (requests,
failures with the library's error, the versions that answered). Meanwhile
the service is upgraded `rounds` times, alternating versions, and each
upgrade waits until every client has been answered by the new version.

Every client must lose nothing, except where its library is at fault in a
way documented in docs/clients.md (Client.known_fault): then only failures
of exactly that kind are accepted, and the test says so. Retries are only
those the libraries make by default (each client program says which).

Before the upgrades, two checks show that the clients can fail: against a
port where nothing listens every client must report failures, and against
a server that closes every second request unanswered (the idle-close race,
made certain) each HTTP/1.1 client must retry or report it, as its library
is documented to do.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .env import (
    Env,
    ScenarioFailed,
    ensure_version,
    require_no_failed_slot,
    require_socket_untouched,
    socket_invocation,
    unit_prop,
)
from .probe import is_subsequence
from .records import ClientNumbers, ClientsResult, IdleCloseNumbers, Spread

CLIENT_DIR = "/usr/local/lib/hitless-clients"
"""Where the client programs are on the client machine."""
INTERVAL_S = 0.01
"""Pause between a client's requests: its connection is never idle for long."""
PAUSE_EVERY = 20
PAUSE_S = 0.25
"""After every PAUSE_EVERY'th request a client idles PAUSE_S seconds instead:
longer than hitless's idle grace (100 ms by default), so an upgrade often
finds the connection idle, the draining version closes it, and the library
must notice that before it reuses the connection. The other upgrades find
it busy: the request is answered with `Connection: close` (HTTP/2: GOAWAY)."""
NOWHERE = "http://127.0.0.1:18080"
"""Where nothing listens on the client machine (a port fetch does not bar:
the Fetch standard blocks some, port 1 among them)."""
IDLE_CLOSE_PORT = 18081
"""Where the clients scenario runs vm-tests/clients/idle_close_server.py."""
IDLE_CLOSE_REQUESTS = 20
"""Requests each client makes against it."""
MIN_REQUESTS_PER_CONNECTION = 5
"""Below this a client is not reusing its connections, and the scenario
would not test what it claims."""


@dataclass(frozen=True)
class KnownFault:
    """A client library's own defect, documented with evidence in
    docs/clients.md: failures whose error starts with `error` are accepted
    from a library whose version string contains `library`."""

    library: str
    error: str
    summary: str


@dataclass(frozen=True)
class Client:
    name: str
    argv: tuple[str, ...]
    """The command; "{dir}" stands for the client directory."""
    known_fault: KnownFault | None = None
    pauses: bool = True
    """Takes --pause-every and --pause (the curl runner cannot pause inside
    one curl process)."""
    retries_idle_close: bool | None = None
    """What the library does by default with a GET (or POST) on a reused
    HTTP/1.1 connection that the server closes without answering, as
    documented in docs/clients.md: retry it on a new connection (True) or
    report it (False); None: not an HTTP/1.1 client."""


CURL_H2C_REUSE = KnownFault(
    library="curl 7.88.1",
    error="reused connection: exit 16: Error in the HTTP2 framing layer",
    summary=(
        "curl 7.88.1 fails every transfer on a reused prior-knowledge HTTP/2 connection before sending it "
        "(curl/curl#10634, fixed in curl 8.0.0)"
    ),
)

TLS_CLIENTS: tuple[Client, ...] = (
    Client("curl-http1.1", ("python3", "{dir}/curl_client.py"), pauses=False, retries_idle_close=True),
    Client("curl-h2", ("python3", "{dir}/curl_client.py", "--http2"), pauses=False),
    Client("python-requests", ("python3", "{dir}/requests_client.py"), retries_idle_close=False),
    Client("go-net-http-get", ("{dir}/hitless-go-client", "--method=GET"), retries_idle_close=True),
)
"""The clients of the HTTPS run: curl over HTTP/1.1 and over HTTP/2 (ALPN
h2), Python requests (HTTP/1.1), Go net/http (its default Transport
negotiates h2 by ALPN)."""

CLIENTS: tuple[Client, ...] = (
    Client("node-fetch", ("node", "{dir}/fetch_client.mjs"), retries_idle_close=False),
    Client("python-requests", ("python3", "{dir}/requests_client.py"), retries_idle_close=False),
    Client("python-aiohttp", ("python3", "{dir}/aiohttp_client.py"), retries_idle_close=False),
    Client("curl-http1.1", ("python3", "{dir}/curl_client.py"), pauses=False, retries_idle_close=True),
    Client("curl-h2c", ("python3", "{dir}/curl_client.py", "--http2-prior-knowledge"), CURL_H2C_REUSE, pauses=False),
    Client("go-net-http-get", ("{dir}/hitless-go-client", "--method=GET"), retries_idle_close=True),
    Client("go-net-http-post", ("{dir}/hitless-go-client", "--method=POST"), retries_idle_close=False),
)
"""The matrix, in the order of docs/clients.md."""


@dataclass
class ClientReport:
    """A client's report file (vm-tests/clients/client_report.py)."""

    client: str
    library: str
    method: str
    requests: int
    ok: int
    failed: int
    errors: dict[str, int]
    versions: list[str]
    connections: int | None
    seconds: float
    final: bool
    failures: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> ClientReport:
        d = json.loads(text)
        return cls(
            client=str(d["client"]),
            library=str(d["library"]),
            method=str(d["method"]),
            requests=int(d["requests"]),
            ok=int(d["ok"]),
            failed=int(d["failed"]),
            errors={str(k): int(v) for k, v in d["errors"].items()},
            versions=[str(v) for v in d["versions"]],
            connections=None if d.get("connections") is None else int(d["connections"]),
            seconds=float(d["seconds"]),
            final=bool(d["final"]),
            failures=list(d.get("failures") or []),
        )


CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
"""How each library is told which CA to trust, its own documented way:
OpenSSL's default verify file (aiohttp through Python's ssl module) and Go's
crypto/x509 on Linux, Python requests, the curl tool, Node.js."""


class RunningClient:
    """One client as a transient unit on the client machine; with
    `env.ca`, every library trusts that CA (CA_VARIABLES)."""

    def __init__(self, env: Env, client: Client, client_dir: str, url: str, role: str = "client") -> None:
        self.env = env
        self.client = client
        self.unit = f"hitless-{role}-{client.name}"
        self.dir = f"/tmp/{self.unit}"
        self.report_path = f"{self.dir}/report.json"
        self.log_path = f"{self.dir}/client.log"
        argv = [a.replace("{dir}", client_dir) for a in client.argv]
        argv += [f"--url={url}/", f"--report={self.report_path}", f"--interval={INTERVAL_S}"]
        if client.pauses:
            argv += [f"--pause-every={PAUSE_EVERY}", f"--pause={PAUSE_S}"]
        self.argv = argv

    def start(self) -> None:
        ca = "".join(f"--setenv={v}={shlex.quote(self.env.ca)} " for v in CA_VARIABLES) if self.env.ca else ""
        self.env.client.succeed(
            f"rm -rf {self.dir} && mkdir -p {self.dir} && "
            f"systemd-run --quiet --unit={self.unit} --service-type=exec {ca}"
            f"--property=StandardOutput=file:{self.log_path} --property=StandardError=inherit "
            + " ".join(shlex.quote(a) for a in self.argv)
        )

    def is_running(self) -> bool:
        return unit_prop(self.env.client, self.unit, "ActiveState") in ("active", "activating", "deactivating")

    def output(self) -> str:
        _, out = self.env.client.execute(f"cat {self.log_path} 2>/dev/null")
        return out

    def stop(self) -> None:
        """SIGTERM to the client itself (not a child it waits for)."""
        self.env.client.execute(f"systemctl kill --kill-whom=main --signal=SIGTERM {self.unit}")


def stop_all(running: Sequence[RunningClient], timeout: float = 30.0) -> None:
    """Stop every client and wait until each has exited (it finishes its
    request in flight and writes its final report first)."""
    for r in running:
        r.stop()
    deadline = time.monotonic() + timeout
    while any(r.is_running() for r in running):
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"clients still running {timeout:.0f}s after SIGTERM")
        time.sleep(0.1)


def read_reports(env: Env, running: Sequence[RunningClient]) -> dict[str, ClientReport]:
    """Every report written so far, in one command."""
    paths = " ".join(r.report_path for r in running)
    _, out = env.client.execute(f"for f in {paths}; do [ -s $f ] && cat $f; done; true")
    reports = {}
    for line in out.splitlines():
        if line.strip():
            try:
                rep = ClientReport.parse(line)
            except (ValueError, KeyError, TypeError):
                continue
            reports[rep.client] = rep
    return reports


def wait_all_seen(env: Env, running: Sequence[RunningClient], prefix: Sequence[str], timeout: float) -> None:
    """Until every client has seen `prefix` in order and was last answered
    by its last version."""
    deadline = time.monotonic() + timeout
    reports: dict[str, ClientReport] = {}
    while time.monotonic() < deadline:
        reports = read_reports(env, running)
        behind = [
            r.client.name
            for r in running
            if r.client.name not in reports
            or not reports[r.client.name].versions
            or reports[r.client.name].versions[-1] != prefix[-1]
            or not is_subsequence(prefix, reports[r.client.name].versions)
        ]
        if not behind:
            return
        for r in running:
            if r.client.name in behind and not r.is_running():
                raise ScenarioFailed(f"client {r.client.name} stopped early:\n{r.output()}")
        time.sleep(0.1)
    raise ScenarioFailed(
        f"clients not answered by {' -> '.join(prefix)} within {timeout:.0f}s: {behind}; "
        + "; ".join(f"{n}: {rep.versions} ({rep.failed} failed)" for n, rep in reports.items())
    )


def judge(
    client: Client, rep: ClientReport, seq: Sequence[str], race: IdleCloseNumbers | None
) -> tuple[list[str], int, int]:
    """What is wrong with one client's final report; how many of its
    failures were its library's documented fault; and how many were the
    idle-close race in a library that does not retry it.

    The race: during an upgrade the old version closes a keep-alive
    connection that has been idle for the idle grace, and a client can send
    its next request at that very moment. RFC 9112 section 9.3.1 lets a
    client retry such an idempotent request on a new connection; a library
    that does not (idle_close_race shows, in the same run, which ones and
    with what error) reports it. Only that error is accepted from such a
    library, at most once per upgrade, and it is counted and reported."""
    problems = []
    if not is_subsequence(seq, rep.versions):
        problems.append(f"saw {rep.versions}, not {' -> '.join(seq)} in order")
    fault = client.known_fault
    applies = fault is not None and fault.library in rep.library
    race_errors = set(race.errors) if race is not None and not race.retries else set()

    def is_documented(error: str) -> bool:
        return applies and fault is not None and error.startswith(fault.error)

    documented = sum(n for error, n in rep.errors.items() if is_documented(error))
    raced = sum(n for error, n in rep.errors.items() if not is_documented(error) and error in race_errors)
    other = {error: n for error, n in rep.errors.items() if not is_documented(error) and error not in race_errors}
    if other:
        problems.append(f"{sum(other.values())} failed: {other}")
    upgrades = len(seq) - 1
    if raced > upgrades:
        problems.append(
            f"{raced} requests lost to the idle-close race in {upgrades} upgrades: more than one per upgrade"
        )
    if rep.connections is not None and rep.requests < MIN_REQUESTS_PER_CONNECTION * max(1, rep.connections):
        problems.append(
            f"{rep.requests} requests on {rep.connections} connections: fewer than "
            f"{MIN_REQUESTS_PER_CONNECTION} per connection, so connections were not reused"
        )
    return problems, documented, raced


def run_until(
    env: Env,
    running: Sequence[RunningClient],
    done: Callable[[ClientReport], bool],
    what: str,
    timeout: float = 60.0,
) -> dict[str, ClientReport]:
    """Start `running`, wait until every client's report satisfies `done`
    (raise after `timeout` seconds, naming `what` it waited for), stop them
    all, and return their final reports."""
    try:
        for r in running:
            r.start()
        deadline = time.monotonic() + timeout
        while True:
            reports = read_reports(env, running)
            if all(r.client.name in reports and done(reports[r.client.name]) for r in running):
                break
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"waited {timeout:.0f}s for {what}: {reports}")
            time.sleep(0.1)
    finally:
        stop_all(running)
    return read_reports(env, running)


def clients_refuse_other_ca(env: Env, other_ca: str, client_dir: str, clients: Sequence[Client]) -> None:
    """Every client, told to trust `other_ca` instead of env.ca, must fail
    every request against env.url: the clients verify the certificate, so
    their successes over HTTPS elsewhere mean something."""
    with env.subtest("every client refuses the service's certificate when it trusts another CA"):
        wrong = dataclasses.replace(env, ca=other_ca)
        reports = run_until(
            wrong,
            [RunningClient(wrong, c, client_dir, env.url, role="other-ca") for c in clients],
            lambda rep: rep.failed >= 3,
            f"every client to refuse {env.url} with the CA {other_ca}",
        )
        for c in clients:
            rep = reports.get(c.name)
            if rep is None or not rep.final or rep.ok or not rep.failed:
                raise ScenarioFailed(f"{c.name} trusting another CA: {rep}")
            env.log(f"client {c.name} trusting another CA: {rep.failed} failed, e.g. {next(iter(rep.errors))}")


def clients_see_failures(env: Env, client_dir: str, clients: Sequence[Client]) -> None:
    """Every client, pointed at a port where nothing listens, must report
    failures, with its library's error, and no success: the clients can
    fail, so their 0 failures elsewhere mean something."""
    with env.subtest("every client reports the failures it sees (nothing listens on NOWHERE)"):
        reports = run_until(
            env,
            [RunningClient(env, c, client_dir, NOWHERE, role="check") for c in clients],
            lambda rep: rep.failed >= 3,
            f"every client to report failures against {NOWHERE}",
        )
        for c in clients:
            rep = reports.get(c.name)
            if rep is None or not rep.final or rep.ok or not rep.failed:
                raise ScenarioFailed(f"{c.name} against {NOWHERE}: {rep}")
            env.log(f"client {c.name} against {NOWHERE}: {rep.failed} failed, e.g. {next(iter(rep.errors))}")


def idle_close_race(env: Env, client_dir: str, clients: Sequence[Client]) -> dict[str, IdleCloseNumbers]:
    """Every HTTP/1.1 client against idle_close_server.py, which answers the
    first request on each connection and closes the connection on the
    second without answering it (the idle-close race, made certain). A
    client whose library retries such a request by default must lose
    nothing, each request answered on a new connection; the others must
    report the failures. Either way the library behaves as docs/clients.md
    says, and the clients are seen to fail where a server loses requests."""
    h1 = [c for c in clients if c.retries_idle_close is not None]
    url = f"http://127.0.0.1:{IDLE_CLOSE_PORT}"
    with env.subtest(f"the idle-close race, made certain: {url} closes every second request unanswered"):
        server = "hitless-idle-close-server"
        env.client.succeed(
            f"systemd-run --quiet --unit={server} --service-type=exec "
            f"python3 {client_dir}/idle_close_server.py --port {IDLE_CLOSE_PORT}",
            f"for i in $(seq 100); do ss -Hltn 'sport = :{IDLE_CLOSE_PORT}' | grep -q . && exit 0; sleep 0.1; done; "
            "exit 1",
        )
        try:
            reports = run_until(
                env,
                [RunningClient(env, c, client_dir, url, role="idle-close") for c in h1],
                lambda rep: rep.requests >= IDLE_CLOSE_REQUESTS,
                f"every client to make {IDLE_CLOSE_REQUESTS} requests against {url}",
            )
        finally:
            env.client.execute(f"systemctl stop {server}")
        numbers = {}
        for c in h1:
            rep = reports.get(c.name)
            if rep is None or not rep.final:
                raise ScenarioFailed(f"{c.name}: no final report against {url}")
            conns = rep.connections or 0
            if c.retries_idle_close:
                # Every request but the first is retried on a new connection.
                if rep.failed or conns < rep.requests:
                    raise ScenarioFailed(
                        f"{c.name} ({rep.library}) should retry the unanswered request on a new connection: "
                        f"{rep.requests} requests, {rep.failed} failed {rep.errors}, {conns} connections"
                    )
                what = f"retried: {rep.requests} requests, 0 failed, {conns} connections"
            else:
                if not rep.failed or not rep.ok:
                    raise ScenarioFailed(
                        f"{c.name} ({rep.library}) should report the unanswered request, and be answered otherwise: "
                        f"{rep.requests} requests, {rep.failed} failed {rep.errors}"
                    )
                what = f"reported: {rep.failed} of {rep.requests} failed, e.g. {next(iter(rep.errors))}"
            env.log(f"client {c.name} against {url}: {what}")
            numbers[c.name] = IdleCloseNumbers(
                retries=bool(c.retries_idle_close),
                requests=rep.requests,
                failed=rep.failed,
                connections=rep.connections,
                errors=rep.errors,
            )
        return numbers


def real_clients(
    env: Env,
    rounds: int = 10,
    client_dir: str = CLIENT_DIR,
    clients: Sequence[Client] = CLIENTS,
    checks: bool = True,
) -> ClientsResult:
    """First (with `checks`) check that every client in `clients` reports
    failures (clients_see_failures), and how each handles the idle-close
    race (idle_close_race); without them no failure is accepted but a
    library's documented fault. Then run them all while the service is upgraded
    `rounds` times back to back; each must see every version in order, lose
    no request (except its library's documented fault), and reuse its
    connections. hitless.socket is never restarted, no slot is left failed."""
    seq = [env.versions[i % 2] for i in range(rounds + 1)]
    idle_close: dict[str, IdleCloseNumbers] = {}
    if checks:
        clients_see_failures(env, client_dir, clients)
        idle_close = idle_close_race(env, client_dir, clients)
    over = " over HTTPS" if env.ca else ""
    with env.subtest(f"real client libraries{over} through {rounds} upgrades: {', '.join(c.name for c in clients)}"):
        ensure_version(env, seq[0])
        sock = socket_invocation(env)
        running = [RunningClient(env, c, client_dir, env.url) for c in clients]
        t0 = time.monotonic()
        upgrades: list[float] = []
        try:
            for r in running:
                r.start()
            wait_all_seen(env, running, seq[:1], timeout=60)
            time.sleep(env.hold)
            for i in range(1, rounds + 1):
                t = time.monotonic()
                env.upgrade_to(seq[i])
                upgrades.append(time.monotonic() - t)
                env.log(f"upgrade {i}/{rounds}: {seq[i - 1]} -> {seq[i]} took {upgrades[-1]:.2f}s")
                wait_all_seen(env, running, seq[: i + 1], timeout=30)
                time.sleep(env.hold)
        finally:
            stop_all(running)
        seconds = time.monotonic() - t0
        reports = read_reports(env, running)
        problems = []
        numbers = {}
        for r in running:
            name = r.client.name
            rep = reports.get(name)
            if rep is None or not rep.final:
                problems.append(f"{name}: no final report:\n{r.output()}")
                continue
            found, documented, raced = judge(r.client, rep, seq, idle_close.get(name))
            problems += [f"{name}: {p}" for p in found]
            numbers[name] = ClientNumbers(
                library=rep.library,
                method=rep.method,
                requests=rep.requests,
                ok=rep.ok,
                failed=rep.failed,
                documented_failures=documented,
                idle_close_failures=raced,
                errors=rep.errors,
                connections=rep.connections,
                versions=rep.versions,
            )
            note = ""
            if documented and r.client.known_fault:
                note = f"; {documented} documented library fault: {r.client.known_fault.summary}"
            if raced:
                note += f"; {raced} lost to the idle-close race, which this library does not retry"
            env.log(
                f"client {name} ({rep.library}, {rep.method}): {rep.requests} requests, {rep.failed} failed, "
                f"{rep.connections if rep.connections is not None else '?'} connections, "
                f"versions {' '.join(rep.versions)}{note}"
            )
        failed = sum(n.failed - n.documented_failures - n.idle_close_failures for n in numbers.values())
        if problems:
            raise ScenarioFailed("real clients:\n  " + "\n  ".join(problems), failed_requests=failed)
        require_socket_untouched(env, sock)
        require_no_failed_slot(env)
        ordered = sorted(upgrades)
        res = ClientsResult(
            rounds=rounds,
            seconds=round(seconds, 1),
            upgrade_s=Spread(
                min=round(ordered[0], 2), median=round(ordered[len(ordered) // 2], 2), max=round(ordered[-1], 2)
            ),
            clients=numbers,
            idle_close=idle_close,
        )
        env.results["clients"] = res
        return res
