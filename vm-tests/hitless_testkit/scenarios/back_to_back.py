"""Two upgrades with nothing in between."""

from __future__ import annotations

import time

from .env import Env, ScenarioFailed, live_slot, other_version, served, slot_states, wait_slot_inactive
from .probe import Probe
from .records import BackToBackResult, mode_numbers


def upgrades_back_to_back(env: Env) -> BackToBackResult:
    """Upgrade, and upgrade again the moment the first returns, under load:
    the first upgrade's old slot is still on its way out when the second
    one starts a slot. The second upgrade must run a new process (not keep
    the first one's old process alive by cancelling its stop), no request
    may fail, and in the end exactly one slot serves."""
    with env.subtest("two upgrades back to back, nothing in between"):
        first = served(env)
        nxt = other_version(env, first.version)
        seq = [first.version, nxt, first.version]
        probe = Probe(env, "back-to-back", expect=seq).start()
        try:
            probe.wait_seen(seq[:1])
            time.sleep(env.hold)
            t0 = time.monotonic()
            env.upgrade_to(nxt)
            second = served(env)
            env.upgrade_to(first.version)
            both_s = time.monotonic() - t0
            third = served(env)
            probe.wait_seen(seq)
            live = live_slot(env)
            for state in slot_states(env).values():
                if state.unit != live.unit:
                    wait_slot_inactive(env, state.unit, timeout=60)
            time.sleep(env.hold)
        finally:
            stopped = probe.stop()
        stopped.require_pass("two upgrades back to back")
        pids = [first.pid, second.pid, third.pid]
        if len(set(pids)) != 3 or third.version != first.version:
            raise ScenarioFailed(
                f"after two upgrades {third.version} serves from pid {third.pid}; the pids were {pids}: "
                "the second upgrade did not start a new process"
            )
        res = BackToBackResult(both_s=round(both_s, 2), pids=pids, modes=mode_numbers(stopped.report))
        env.log(
            f"two upgrades back to back took {both_s:.2f}s: pids {pids}, {stopped.report.requests()} requests, 0 failed"
        )
        env.results["back-to-back"] = res
        return res
