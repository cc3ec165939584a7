"""What admins type: systemctl start, stop, restart and status of
hitless.service, and the slots' status."""

from __future__ import annotations

import time

from .env import CONTROLLER, SLOTS, SOCKET, Env, ScenarioFailed, live_slot, served, slot_states
from .probe import Probe
from .records import AdminResult, mode_numbers


def admin_verbs(env: Env) -> AdminResult:
    """`systemctl stop hitless.service` stops every slot and leaves the
    socket listening; `start` starts one slot; the slots' status names the
    slot and version that serve; `restart` under load loses no request (it
    is stop-then-start: the socket queues new clients meanwhile)."""
    s = env.server
    with env.subtest("systemctl start, stop, restart, status of hitless.service"):
        info = served(env)
        live = live_slot(env)
        status = s.succeed(env.slots_status)
        env.log(f"slots' status:\n{status.rstrip()}")
        line = next((ln for ln in status.splitlines() if ln.startswith(live.unit)), "")
        for want in (f"pid {info.pid}", f"hitless {info.version}", "serving"):
            if want not in line:
                raise ScenarioFailed(f"the status line of {live.unit} lacks {want!r}: {line!r}")
        others = [
            ln
            for ln in status.splitlines()
            if ln.startswith(SLOTS) and "serving" in ln and not ln.startswith(live.unit)
        ]
        if others:
            raise ScenarioFailed(f"more than one slot said to be serving: {others}")

        s.succeed(f"systemctl stop {CONTROLLER}")
        states = {u: st.active_state for u, st in slot_states(env).items()}
        if set(states.values()) != {"inactive"}:
            raise ScenarioFailed(f"after systemctl stop {CONTROLLER}, slots are {states}")
        s.require_unit_state(SOCKET, "active")
        s.require_unit_state(CONTROLLER, "inactive")

        s.succeed(f"systemctl start {CONTROLLER}")
        active = [u for u, st in slot_states(env).items() if st.active_state == "active"]
        if len(active) != 1:
            raise ScenarioFailed(f"after systemctl start {CONTROLLER}, active slots: {active}")
        if served(env).version != info.version:
            raise ScenarioFailed("systemctl start changed the version")

        probe = Probe(env, "restart", expect=[info.version]).start()
        try:
            probe.wait_seen([info.version])
            time.sleep(env.hold)
            t0 = time.monotonic()
            s.succeed(f"systemctl restart {CONTROLLER}")
            restart_s = time.monotonic() - t0
            # Served again after the restart: every mode makes progress.
            st = probe.status()
            probe.wait_ok({m: st.ok(m) for m in probe.modes} if st else None)
            time.sleep(env.hold)
        finally:
            stopped = probe.stop()
        stopped.require_pass(f"systemctl restart {CONTROLLER}")
        active = [u for u, st in slot_states(env).items() if st.active_state == "active"]
        if len(active) != 1 or active[0] not in SLOTS:
            raise ScenarioFailed(f"after systemctl restart {CONTROLLER}, active slots: {active}")
        res = AdminResult(status_line=line, restart_s=round(restart_s, 2), restart_modes=mode_numbers(stopped.report))
        env.log(
            f"admin verbs: stop left only {SOCKET}, start started one slot, restart under load took "
            f"{restart_s:.2f}s with 0 of {stopped.report.requests()} requests failed; status: {line}"
        )
        env.results["admin"] = res
        return res
