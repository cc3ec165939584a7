"""SIGKILL of the serving slot under load: systemd restarts it, the socket
stays open."""

from __future__ import annotations

import time
from collections import Counter

from .env import Env, ScenarioFailed, live_slot, unit_prop
from .probe import Probe, Stopped
from .records import ProbeStatus, SigkillResult, mode_numbers


def sigkill_under_load(env: Env, slow_ms: int = 2000) -> SigkillResult:
    """SIGKILL the serving slot under load: systemd restarts it (Restart=on-failure)
    and the socket stays open, so only the requests the killed process held
    can fail, and new connections wait in the queue until the new process
    serves them. Besides the usual load, one /slow request per client mode
    is kept in flight, so the kill certainly hits requests: those (and at
    most one request per fast worker) may fail, nothing else."""
    s = env.server
    with env.subtest("SIGKILL of the serving slot under load: systemd restarts it"):
        slot = live_slot(env)
        pid = slot.main_pid
        restarts0 = slot.n_restarts
        fast = Probe(env, "sigkill")
        slow = Probe(
            env,
            "sigkill-slow",
            path=f"/slow?ms={slow_ms}",
            concurrency=1,
            rate=0,
            request_timeout=f"{slow_ms // 1000 + 30}s",
        )
        started: list[Probe] = []
        try:
            for p in (fast, slow):
                p.start()
                started.append(p)
            st = fast.wait_ok()
            # Past the first slow requests, into the second round: in flight.
            slow.wait_ok(timeout=slow_ms / 1000 + 30)
            time.sleep(env.hold)
            fast.fail_fast(fast.status())
            # Kill, then time how long a new client waits for an answer, in
            # one shell on the server so no driver latency is counted.
            out = s.succeed(
                f"t0=$(date +%s%N); kill -KILL {pid}; "
                f"curl -sS --fail -o /dev/null --max-time 30 {env.server_url}/healthz; "
                "t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 ))"
            )
            recovery_ms = int(out.strip().splitlines()[-1]) / 1000
            s.wait_for_unit(slot.unit)
            st = fast.status() or st
            fast.wait_ok({m: st.ok(m) for m in fast.modes}, fail_fast=False)
            sst = slow.status() or ProbeStatus(modes={})
            slow.wait_ok({m: sst.ok(m) for m in slow.modes}, timeout=slow_ms / 1000 + 30, fail_fast=False)
            time.sleep(env.hold)
        finally:
            stopped: list[Stopped] = [p.stop() for p in started]
        f_stop, s_stop = stopped
        report, s_report = f_stop.report, s_stop.report
        new_pid = int(unit_prop(s, slot.unit, "MainPID"))
        restarts = int(unit_prop(s, slot.unit, "NRestarts") or 0) - restarts0
        if new_pid in (0, pid) or restarts != 1:
            raise ScenarioFailed(
                f"expected one automatic restart, got NRestarts +{restarts}, MainPID {pid} -> {new_pid}"
            )

        problems = []
        both = (report, s_report)
        failures = [f for r in both for m in r.modes.values() for f in m.failures]
        failed = report.failed()
        slow_failed = s_report.failed()
        in_flight_bound = len(report.modes) * report.concurrency
        slow_bound = len(s_report.modes) * s_report.concurrency
        if failed > in_flight_bound:
            problems.append(f"{failed} requests failed, more than the {in_flight_bound} that can be in flight")
        if not 1 <= slow_failed <= slow_bound:
            problems.append(f"{slow_failed} slow requests failed; the {slow_bound} in flight at the kill should")
        if any(f.reason in ("connect-refused", "connect-error") for f in failures):
            problems.append("connections were refused: the socket must stay open")
        if failures:
            span = max(f.at_s for f in failures) - min(f.at_s for f in failures)
            if span > recovery_ms / 1000 + 1.0:
                problems.append(f"failures spread over {span:.1f}s: more than the requests in flight at the kill")
        if any(m.ok == 0 for r in both for m in r.modes.values()):
            problems.append("a mode had no successful request")
        if problems:
            raise ScenarioFailed(
                "SIGKILL under load: " + "; ".join(problems) + "\n" + f_stop.text + "\n" + s_stop.text,
                failed_requests=failed + slow_failed,
            )
        res = SigkillResult(
            slot=slot.unit,
            recovery_ms=round(recovery_ms, 1),
            failed=failed,
            in_flight_bound=in_flight_bound,
            slow_failed=slow_failed,
            slow_in_flight=slow_bound,
            modes=mode_numbers(report),
            slow=mode_numbers(s_report),
        )
        reasons = dict(Counter(f.reason for f in failures))
        env.log(
            f"SIGKILL under load: {slow_failed} of {slow_bound} in-flight slow requests failed, "
            f"{failed} of {report.requests()} other requests "
            f"(bound {in_flight_bound}); reasons {reasons}; a new client got its answer "
            f"{recovery_ms:.0f} ms after the kill"
        )
        env.results["sigkill"] = res
        return res
