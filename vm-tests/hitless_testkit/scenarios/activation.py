"""Socket activation on demand: a stopped service is started by the first
request, with all three client modes arriving at once."""

from __future__ import annotations

import json
import shlex
import time

from .env import CONTROLLER, SLOTS, SOCKET, Env, ScenarioFailed, live_slot, served
from .probe import Stopped
from .records import ActivationResult, ProbeReport, mode_numbers


def activation_on_demand(env: Env, seconds: int = 3) -> ActivationResult:
    """The service is not running (no slot); the first request starts
    hitless.service, which starts a slot. All three client modes start at
    once, so the first of them activates the service and the others queue
    on the same socket; none may fail."""
    s = env.server
    with env.subtest("activation on demand: a stopped service is started by the first request"):
        s.succeed(f"systemctl stop {CONTROLLER}")
        s.require_unit_state(CONTROLLER, "inactive")
        for unit in SLOTS:
            s.require_unit_state(unit, "inactive")
        s.require_unit_state(SOCKET, "active")
        s.succeed(f"ss -Hltn 'sport = :{env.port}' | grep LISTEN >/dev/null")
        t0 = time.monotonic()
        rc, out = env.client.execute(
            f"{shlex.quote(env.probe)} --url={env.url}/ --duration={seconds}s --concurrency={env.concurrency} "
            f"--rate={env.rate} --report=/tmp/activation.json"
        )
        wall = time.monotonic() - t0
        env.log(out)
        report = ProbeReport.from_json(json.loads(env.client.succeed("cat /tmp/activation.json")))
        Stopped(rc, report, out).require_pass("activation on demand")
        s.require_unit_state(CONTROLLER, "active")
        info = served(env)
        live_slot(env)
        if not info.socket_activated:
            raise ScenarioFailed(f"the service says it was not socket-activated: {info}")
        first_ms = max(m.latency.max_ms for m in report.modes.values())
        res = ActivationResult(
            first_request_ms=round(first_ms, 1),
            probe_wall_s=round(wall, 1),
            modes=mode_numbers(report),
            listeners=info.listeners,
        )
        env.log(
            f"activation on demand: the slowest request (it waited for the start) took {first_ms:.1f} ms; "
            f"{report.requests()} requests, 0 failed"
        )
        env.results["activation"] = res
        return res
