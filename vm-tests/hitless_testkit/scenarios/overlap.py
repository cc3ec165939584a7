"""An upgrade while slow requests are in flight: the versions overlap."""

from __future__ import annotations

import time

from .env import (
    Env,
    ScenarioFailed,
    live_slot,
    other_version,
    require_no_failed_slot,
    require_socket_untouched,
    served,
    socket_invocation,
    wait_slot_inactive,
)
from .probe import Probe, Stopped, latency_bound_ms, steady_p99_ms
from .records import OverlapResult, mode_numbers

SLOW_MS = 8000
"""Long enough to outlast an upgrade: the new slot's start plus its
probation window (hitless-slots: 3 s), with seconds to spare."""


def upgrade_with_slow_requests(env: Env, slow_ms: int = SLOW_MS, slow_concurrency: int = 2) -> OverlapResult:
    """Upgrade while /slow requests are in flight. The new version serves new
    requests as soon as it is ready, while the old one finishes the slow
    requests it holds, then exits:

    - no request fails, in any client mode;
    - every slow request in flight at the upgrade finishes on the old
      version;
    - the upgrade returns without waiting for them, and new requests are
      answered by the new version meanwhile (both versions answer at once);
    - no new request takes longer than twice the steady-state p99 plus
      LATENCY_SLACK_MS;
    - then only the new version answers, and the old slot stops once its
      slow requests are done.
    """
    with env.subtest(f"upgrade while /slow?ms={slow_ms} requests are in flight: the versions overlap"):
        cur = served(env).version
        nxt = other_version(env, cur)
        seq = [cur, nxt]
        p99 = steady_p99_ms(env)
        bound = latency_bound_ms(p99)
        old = live_slot(env)
        sock = socket_invocation(env)
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
        overlap_seen = False
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
            remaining = slow_ms / 1000 - (t0 - slow_started)
            env.upgrade_to(nxt)
            upgraded_at = time.monotonic()
            upgrade_s = upgraded_at - t0
            env.log(f"upgrade with slow requests in flight took {upgrade_s:.2f}s")
            fast.wait_seen(seq)
            # The new version answers; have the slow requests in flight at
            # the upgrade been answered yet? They must not have been: both
            # versions serve at this moment.
            sst = slow.status()
            overlap_seen = sst is not None and all(sst.ok(m) == 0 for m in slow.modes)
            slow.wait_seen(seq, timeout=slow_ms / 1000 + 60)
            wait_slot_inactive(env, old.unit, timeout=slow_ms / 1000 + 40)
            drained_s = time.monotonic() - upgraded_at
            time.sleep(env.hold)
        finally:
            results: list[Stopped] = [p.stop() for p in started]
        s_stop, f_stop = results
        s_stop.require_pass("slow requests across the upgrade")
        f_stop.require_pass("new requests during the upgrade")
        require_socket_untouched(env, sock)
        require_no_failed_slot(env)
        s_modes = s_stop.report.modes
        # The slow requests in flight at the upgrade are each worker's first:
        # every one of them must have been answered by the old version.
        for mode, m in s_modes.items():
            first = m.timeline[0]
            if first.version != cur or first.count < slow_concurrency:
                raise ScenarioFailed(
                    f"{mode}: slow requests in flight at the upgrade did not all finish on {cur}: {m.timeline}"
                )
        res = OverlapResult(
            slow_ms=slow_ms,
            upgrade_s=round(upgrade_s, 2),
            old_slot_drained_s=round(drained_s, 2),
            steady_p99_ms=round(p99, 2),
            latency_bound_ms=round(bound, 1),
            overlap_seen=overlap_seen,
            slow_completed_on_old=sum(m.timeline[0].count for m in s_modes.values()),
            slow=mode_numbers(s_stop.report),
            fast=mode_numbers(f_stop.report),
        )
        worst = max(m.max_ms for m in res.fast.values())
        env.log(
            f"upgrade with /slow in flight: {res.slow_completed_on_old} slow requests finished on {cur}, 0 failed; "
            f"the upgrade took {upgrade_s:.2f}s with {remaining:.2f}s of slow requests left; new requests took at "
            f"most {worst:.1f} ms (bound {bound:.1f} ms: 2 x steady p99 {p99:.2f} ms + slack); "
            f"old slot stopped {drained_s:.2f}s after the upgrade"
        )
        problems = []
        if worst > bound:
            problems.append(f"a new request took {worst:.1f} ms, over the bound of {bound:.1f} ms")
        if remaining <= 1.0:
            problems.append(
                f"the slow requests had only {remaining:.2f}s left at the upgrade: too little to see an overlap "
                "(the machine is too slow for this scenario as set up)"
            )
        else:
            if upgrade_s > remaining - 0.5:
                problems.append(
                    f"the upgrade took {upgrade_s:.2f}s while slow requests needed {remaining:.2f}s more: "
                    "it waited for them"
                )
            if not overlap_seen:
                problems.append("the new version answered only after the old one had finished: no overlap")
        if problems:
            raise ScenarioFailed("upgrade with slow requests: " + "; ".join(problems))
        env.results["overlap"] = res
        return res
