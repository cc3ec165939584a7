"""A broken build is rejected and the old version keeps serving."""

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
)
from .probe import Probe
from .records import BadBuildResult, mode_numbers


def bad_build_rejected(env: Env, kind: str) -> BadBuildResult:
    """Upgrade under load to a build that is broken in the way `kind` names
    ("exits": exits before READY=1; "hangs": never sends READY=1, until the
    slot's start timeout). The upgrade must fail and say so, no request may
    fail, the old version and slot keep serving, hitless.socket is never
    touched, no slot is left failed, and the next upgrade, to a good build,
    succeeds."""
    with env.subtest(f"a build that {kind} is rejected; the old version keeps serving"):
        cur = served(env).version
        good = other_version(env, cur)
        slot = live_slot(env)
        sock = socket_invocation(env)
        probe = Probe(env, f"bad-{kind}", expect=[cur, good]).start()
        try:
            probe.wait_seen([cur])
            time.sleep(env.hold)
            attempt = env.attempt_upgrade(env.broken_build(kind))
            env.log(
                f"upgrade to a build that {kind}: ok={attempt.ok} after {attempt.seconds:.2f}s: "
                f"{attempt.output.strip()}"
            )
            if attempt.ok:
                raise ScenarioFailed(f"the upgrade to a build that {kind} reported success: {attempt.output}")
            probe.fail_fast(probe.status())
            still = served(env)
            if still.version != cur or still.pid != slot.main_pid:
                raise ScenarioFailed(f"after the failed upgrade {still} serves, not {cur} in {slot.unit}")
            require_socket_untouched(env, sock)
            require_no_failed_slot(env)
            time.sleep(env.hold)
            probe.fail_fast(probe.status())
            t0 = time.monotonic()
            env.upgrade_to(good)
            next_s = time.monotonic() - t0
            probe.wait_seen([cur, good])
            time.sleep(env.hold)
        finally:
            stopped = probe.stop()
        stopped.require_pass(f"a build that {kind}")
        require_socket_untouched(env, sock)
        res = BadBuildResult(
            kind=kind,
            attempt_s=round(attempt.seconds, 2),
            attempt_output=attempt.output.strip(),
            modes=mode_numbers(stopped.report),
            next_upgrade_s=round(next_s, 2),
        )
        env.log(
            f"a build that {kind}: rejected after {attempt.seconds:.2f}s, {stopped.report.requests()} requests, "
            f"0 failed; {cur} kept serving; the next upgrade to {good} took {next_s:.2f}s"
        )
        env.results[f"bad-build-{kind}"] = res
        return res
