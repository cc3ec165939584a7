"""Two upgrades while the first one's old slot still drains a long request."""

from __future__ import annotations

import time

from .env import (
    UPGRADE_BOUND_S,
    Env,
    ScenarioFailed,
    live_slot,
    other_version,
    served,
    slot_states,
    wait_slot_inactive,
)
from .probe import Probe
from .records import LongDrainReloadsResult, mode_numbers


def reloads_behind_long_request(env: Env, slow_ms: int = 15000) -> LongDrainReloadsResult:
    """A request of `slow_ms` is in flight on the serving slot; upgrade, and
    upgrade again at once. The second upgrade must not wait for the first
    one's old slot to drain: it returns within UPGRADE_BOUND_S after the
    probation window, that slot is still draining (its request not cut),
    and the newest build serves in a third process.
    The long request is answered in full, no request of the probe fails,
    and no slot is left failed."""
    s = env.server
    with env.subtest(f"two upgrades behind a {slow_ms / 1000:.0f}s request"):
        first = served(env)
        oldest = live_slot(env)
        nxt = other_version(env, first.version)
        probe = Probe(env, "long-drain", expect=[first.version, nxt, first.version]).start()
        try:
            probe.wait_seen([first.version])
            s.succeed(
                "systemctl reset-failed hitless-long-request 2>/dev/null || :",
                "rm -f /tmp/hitless-long-request.code",
                "systemd-run --quiet --unit=hitless-long-request --service-type=exec "
                "sh -c 'curl -sS -o /dev/null -w %{http_code} --max-time 90 "
                f"{env.server_url}/slow?ms={slow_ms} > /tmp/hitless-long-request.code'",
            )
            time.sleep(0.5)
            t0 = time.monotonic()
            env.upgrade_to(nxt)
            first_s = time.monotonic() - t0
            second = served(env)
            t1 = time.monotonic()
            env.upgrade_to(first.version)
            second_s = time.monotonic() - t1
            states = slot_states(env)
            draining = [u for u, st in states.items() if st.active_state == "deactivating"]
            third = served(env)
            env.log(
                f"upgrades behind a {slow_ms} ms request: {first_s:.2f}s, then {second_s:.2f}s; "
                f"draining when the second returned: {draining}; pids {first.pid} {second.pid} {third.pid}"
            )
            for n, took in (("first", first_s), ("second", second_s)):
                if took > env.probation_s + UPGRADE_BOUND_S:
                    raise ScenarioFailed(
                        f"the {n} upgrade took {took:.2f}s, more than the probation window "
                        f"({env.probation_s}s) + {UPGRADE_BOUND_S}s: it waited for its drain"
                    )
            if oldest.unit not in draining:
                raise ScenarioFailed(
                    f"when the second upgrade returned, {oldest.unit} (holding the {slow_ms} ms request) was "
                    f"{states[oldest.unit].active_state}, not draining: the second upgrade waited for its drain"
                )
            if third.version != first.version or len({first.pid, second.pid, third.pid}) != 3:
                raise ScenarioFailed(f"after two upgrades {third} serves; pids {first.pid} {second.pid} {third.pid}")
            probe.wait_seen([first.version, nxt, first.version])
            for unit in draining:
                wait_slot_inactive(env, unit, timeout=slow_ms / 1000 + 30)
            code = s.succeed("cat /tmp/hitless-long-request.code").strip()
            if code != "200":
                raise ScenarioFailed(f"the {slow_ms} ms request got {code!r}, not 200: its drain was cut")
            time.sleep(env.hold)
        finally:
            stopped = probe.stop()
        stopped.require_pass(f"two upgrades behind a {slow_ms} ms request")
        res = LongDrainReloadsResult(
            slow_s=slow_ms / 1000,
            first_s=round(first_s, 2),
            second_s=round(second_s, 2),
            draining_at_second=draining,
            slow_answered=True,
            modes=mode_numbers(stopped.report),
        )
        env.results["long-drain"] = res
        return res
