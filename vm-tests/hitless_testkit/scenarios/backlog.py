"""What net.core.somaxconn does to the socket's queue while nothing accepts."""

from __future__ import annotations

import shlex
import time

from .env import CONTROLLER, SOCKET, Env, ScenarioFailed, served
from .records import BacklogResult

CONNECTIONS = 600
"""Connections opened at once while no process accepts."""

RETRANSMIT_SLACK_S = 0.5
"""An answer this much later than the first one waited for a SYN retransmit."""

# Two curl processes of 300 parallel transfers each (curl's --parallel-max
# limit), each transfer on its own new connection; one line per transfer.
# The URLs and their outputs come from a config file (curl -K).
CURL = (
    "curl --silent --parallel --parallel-immediate --parallel-max 300 --max-time 60 "
    "-H 'Connection: close' -w '%{http_code} %{time_total}\\n' -K /tmp/hitless-backlog.curlrc"
)


def _backlog_cap(env: Env) -> int:
    """Send-Q of the listening socket: the accept queue's limit,
    min(Backlog=, net.core.somaxconn) (ss(8))."""
    out = env.server.succeed(f"ss -Hltn 'sport = :{env.port}'")
    return max(int(line.split()[2]) for line in out.splitlines() if line.strip())


def _listen_overflows(env: Env) -> int:
    """TcpExtListenOverflows: connections the kernel dropped with the accept
    queue full."""
    out = env.server.succeed("nstat -az TcpExtListenOverflows")
    return next(int(line.split()[1]) for line in out.splitlines() if line.startswith("TcpExtListenOverflows"))


def backlog_during_a_stall(env: Env, somaxconn: int, slow_ms: int = 3000) -> BacklogResult:
    """Set net.core.somaxconn, listen anew, then open CONNECTIONS connections
    while nothing accepts: `systemctl restart hitless.service` with a slow
    request in flight is a stall of about `slow_ms`. Records the queue's
    limit, the connections the kernel dropped (they are retried by the
    client's SYN retransmit, 1 s later, then 2 s more...) and how many
    requests waited for such a retransmit. No request may fail."""
    s = env.server
    with env.subtest(f"{CONNECTIONS} connections during a {slow_ms} ms stall with net.core.somaxconn={somaxconn}"):
        s.succeed(
            f"sysctl -q -w net.core.somaxconn={somaxconn}",
            # The kernel takes the limit at listen(): listen again.
            f"systemctl stop {CONTROLLER} {SOCKET}",
            f"systemctl start {SOCKET}",
        )
        served(env)
        cap = _backlog_cap(env)
        config = "".join(f'url = "{env.server_url}/?n={i}"\noutput = "/dev/null"\n' for i in range(CONNECTIONS // 2))
        s.succeed(f"printf '%s' {shlex.quote(config)} > /tmp/hitless-backlog.curlrc")
        s.succeed(
            f"systemd-run --quiet --unit=hitless-backlog-slow curl -s -o /dev/null {env.server_url}/slow?ms={slow_ms}"
        )
        time.sleep(0.5)
        s.succeed(f"systemd-run --quiet --unit=hitless-backlog-restart systemctl restart {CONTROLLER}")
        time.sleep(0.3)
        overflows0 = _listen_overflows(env)
        out = s.succeed(f"( {CURL} ) & ( {CURL} ) & wait", timeout=180)
        overflows = _listen_overflows(env) - overflows0
        s.execute("systemctl reset-failed hitless-backlog-slow hitless-backlog-restart 2>/dev/null")
        results = [line.split() for line in out.splitlines() if line.strip()]
        failed = sum(1 for code, _ in results if code != "200")
        totals = sorted(float(t) for code, t in results if code == "200")
        # The first answer comes when the stall ends: everything that was in
        # the queue is served right then. A connection the full queue
        # dropped is retried by its SYN retransmit (1 s, then 2 s more), so
        # it is answered well after: half a second tells the two apart.
        fastest = totals[0] if totals else 0.0
        waited = sum(1 for t in totals if t >= fastest + RETRANSMIT_SLACK_S)
        res = BacklogResult(
            somaxconn=somaxconn,
            backlog_cap=cap,
            connections=len(results),
            failed=failed,
            listen_overflows=overflows,
            waited_for_retransmit=waited,
            slowest_s=round(totals[-1], 2) if totals else 0.0,
        )
        env.log(
            f"somaxconn={somaxconn}: queue limit {cap}; of {len(results)} connections during the stall, "
            f"{overflows} overflowed the queue, {waited} waited for a SYN retransmit (answered "
            f"{RETRANSMIT_SLACK_S} s or more after the first) "
            f"(slowest {res.slowest_s} s), {failed} failed"
        )
        if len(results) != CONNECTIONS or failed:
            raise ScenarioFailed(f"somaxconn={somaxconn}: {failed} of {len(results)} requests failed: {out[-500:]}")
        if cap != min(4096, somaxconn):
            raise ScenarioFailed(f"the queue limit is {cap}, not min(Backlog=4096, somaxconn={somaxconn})")
        s.succeed("sysctl -q -w net.core.somaxconn=4096")
        env.results[f"backlog-somaxconn-{somaxconn}"] = res
        return res


def backlog_cap_effect(env: Env) -> list[BacklogResult]:
    """The same stall with Linux >= 5.4's default (4096) and EL8's (128):
    with 4096 no connection may overflow the queue; with 128 they must (that
    is the effect the RPM's warning is about)."""
    full = backlog_during_a_stall(env, 4096)
    capped = backlog_during_a_stall(env, 128)
    if full.listen_overflows:
        raise ScenarioFailed(f"{full.listen_overflows} connections overflowed a queue of {full.backlog_cap}")
    if not capped.listen_overflows:
        raise ScenarioFailed(
            f"no connection overflowed a queue of {capped.backlog_cap} with {CONNECTIONS} waiting: "
            "the measurement does not reach the cap"
        )
    return [full, capped]
