"""A restart while slow requests are in flight."""

from __future__ import annotations

import time

from .env import Env, ScenarioFailed, other_version, served
from .probe import Probe, Stopped
from .records import SlowResult, mode_numbers


def restart_with_slow_requests(env: Env, slow_ms: int = 3000, slow_concurrency: int = 2) -> SlowResult:
    """Restart (upgrade) while /slow requests are in flight: they complete on
    the old process; new requests wait in the socket queue meanwhile, and
    that wait is what they pay."""
    with env.subtest(f"restart while /slow?ms={slow_ms} requests are in flight"):
        cur = served(env).version
        nxt = other_version(env, cur)
        seq = [cur, nxt]
        slow = Probe(
            env,
            "slow",
            path=f"/slow?ms={slow_ms}",
            expect=seq,
            concurrency=slow_concurrency,
            rate=0,
            request_timeout=f"{slow_ms // 1000 + 30}s",
        )
        fast = Probe(env, "fast", expect=seq)
        started: list[Probe] = []
        try:
            slow_started = time.monotonic()
            for p in (slow, fast):
                p.start()
                started.append(p)
            fast.wait_seen(seq[:1])
            # The first slow requests went out when the probe started; let a
            # third of their time pass so they are well in flight.
            time.sleep(max(0.0, slow_started + slow_ms / 3000 - time.monotonic()))
            t0 = time.monotonic()
            # What the first slow requests still need: the restart must take
            # at least that long (on a slow machine the first round may be
            # over already; the check is skipped then).
            remaining = slow_ms / 1000 - (t0 - slow_started)
            env.upgrade_to(nxt)
            restart_s = time.monotonic() - t0
            env.log(f"restart with slow requests in flight took {restart_s:.2f}s")
            fast.wait_seen(seq)
            slow.wait_seen(seq, timeout=slow_ms / 1000 + 60)
            time.sleep(env.hold)
        finally:
            results: list[Stopped] = [p.stop() for p in started]
        s_stop, f_stop = results
        s_stop.require_pass("slow requests across a restart")
        f_stop.require_pass("new requests during the restart")
        s_modes = s_stop.report.modes
        slow_done_old = sum(m.timeline[0].count for m in s_modes.values())
        # The slow requests in flight at the restart are each worker's first:
        # every one of them must have been answered by the old version.
        for mode, m in s_modes.items():
            first = m.timeline[0]
            if first.version != cur or first.count < slow_concurrency:
                raise ScenarioFailed(
                    f"{mode}: slow requests in flight at the restart did not all finish on {cur}: {m.timeline}"
                )
        res = SlowResult(
            slow_ms=slow_ms,
            restart_s=round(restart_s, 2),
            slow_completed_on_old=slow_done_old,
            slow=mode_numbers(s_stop.report),
            fast=mode_numbers(f_stop.report),
        )
        worst = max(m.max_ms for m in res.fast.values())
        env.log(
            f"restart with /slow in flight: {slow_done_old} slow requests finished on {cur}, 0 failed; "
            f"restart took {restart_s:.2f}s; new requests waited at most {worst:.1f} ms"
        )
        if remaining > 0.5 and restart_s < remaining - 0.3:
            raise ScenarioFailed(
                f"the restart took only {restart_s:.2f}s, but slow requests needed {remaining:.2f}s "
                "more: they were not waited for"
            )
        env.results["slow"] = res
        return res
