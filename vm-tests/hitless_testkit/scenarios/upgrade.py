"""In-place upgrades under load, back to back."""

from __future__ import annotations

import time

from .env import (
    Env,
    ScenarioFailed,
    ensure_version,
    require_no_failed_slot,
    require_socket_untouched,
    slot_states,
    socket_invocation,
)
from .probe import Probe
from .records import Spread, UpgradeResult, mode_numbers


def upgrade_under_load(env: Env, rounds: int = 10) -> UpgradeResult:
    """Upgrade in place under load, `rounds` times back to back, alternating
    versions; the probe must see every version in order in every mode, no
    request may fail, hitless.socket is never restarted, no slot is left
    failed (no start limit hit) and, at the end, exactly one slot runs."""
    v0 = env.versions[0]
    seq = [env.versions[i % 2] for i in range(rounds + 1)]
    with env.subtest(f"in-place upgrade under load, {rounds} times back to back"):
        ensure_version(env, v0)
        sock = socket_invocation(env)
        probe = Probe(env, "upgrade", expect=seq).start()
        restarts: list[float] = []
        try:
            probe.wait_seen(seq[:1])
            time.sleep(env.hold)
            for i in range(1, rounds + 1):
                t0 = time.monotonic()
                env.upgrade_to(seq[i])
                restarts.append(time.monotonic() - t0)
                env.log(f"upgrade {i}/{rounds}: {seq[i - 1]} -> {seq[i]} took {restarts[-1]:.2f}s")
                probe.wait_seen(seq[: i + 1])
                time.sleep(env.hold)
        finally:
            stopped = probe.stop()
        stopped.require_pass("in-place upgrade")
        require_socket_untouched(env, sock)
        require_no_failed_slot(env)
        running = [u for u, st in slot_states(env).items() if st.active_state != "inactive"]
        if len(running) != 1:
            raise ScenarioFailed(f"after the upgrades, slots not inactive: {running} (want exactly one)")
        modes = mode_numbers(stopped.report)
        res = UpgradeResult(
            rounds=rounds,
            upgrade_s=Spread(
                min=round(min(restarts), 2),
                median=round(sorted(restarts)[len(restarts) // 2], 2),
                max=round(max(restarts), 2),
            ),
            modes=modes,
        )
        worst = max(m.max_ms for m in modes.values())
        env.log(
            f"in-place upgrade x{rounds}: 0 failed requests in {stopped.report.requests()}; "
            f"worst latency {worst:.1f} ms; each upgrade took {res.upgrade_s}"
        )
        env.results["upgrade"] = res
        return res
