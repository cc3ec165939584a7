"""A broken build is rejected and the old version keeps serving."""

from __future__ import annotations

import time
from collections import Counter

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
from .probe import Probe, Stopped
from .records import BadBuildResult, mode_numbers

HOW = {
    "exits": "exits before READY=1",
    "hangs": "never sends READY=1",
    "answers-500": "answers 500 (its ready check too)",
    "crashes": "crashes a second after READY=1",
}
"""The broken builds the scenario knows, in words."""

STATUS_SAYS = {
    "exits": "did not start",
    "hangs": "did not start",
    "answers-500": "did not start",
    "crashes": "probation",
}
"""What `hitless-slots status` must say about each kind's failed upgrade."""


def _crash_losses(stopped: Stopped) -> int:
    """A build that crashes after READY=1 served for a second: the requests
    it held when it crashed may fail, as in the SIGKILL scenario (at most
    one per probe worker), nothing else. Returns how many failed."""
    report = stopped.report
    failures = [f for m in report.modes.values() for f in m.failures]
    bound = len(report.modes) * report.concurrency
    problems = []
    if len(failures) > bound:
        problems.append(f"{len(failures)} requests failed, more than the {bound} that can be in flight")
    if any(f.reason in ("connect-refused", "connect-error") for f in failures):
        problems.append("connections were refused: the socket must stay open")
    if failures and max(f.at_s for f in failures) - min(f.at_s for f in failures) > 1.0:
        problems.append("failures spread over more than a second: more than the crash")
    if any(m.ok == 0 for m in report.modes.values()):
        problems.append("a mode had no successful request")
    if problems:
        raise ScenarioFailed(
            "a build that crashes: " + "; ".join(problems) + "\n" + stopped.text, failed_requests=len(failures)
        )
    return len(failures)


def bad_build_rejected(env: Env, kind: str) -> BadBuildResult:
    """Upgrade under load to a build that is broken in the way `kind` names
    (HOW). The upgrade must fail and say so in one line, no request may
    fail (a build that crashes after READY=1: only those it held), the old
    version and slot (the same process) keep serving, hitless.socket is
    never touched, no slot is left failed, `hitless-slots status` tells what
    happened, and the next upgrade, to a good build, succeeds."""
    with env.subtest(f"a build that {HOW[kind]} is rejected; the old version keeps serving"):
        cur = served(env).version
        good = other_version(env, cur)
        slot = live_slot(env)
        sock = socket_invocation(env)
        probe = Probe(env, f"bad-{kind}", expect=[cur, good]).start()
        lossy = kind == "crashes"
        try:
            probe.wait_seen([cur])
            time.sleep(env.hold)
            attempt = env.attempt_upgrade(env.broken_build(kind))
            env.log(
                f"upgrade to a build that {HOW[kind]}: ok={attempt.ok} after {attempt.seconds:.2f}s: "
                f"{attempt.output.strip()}"
            )
            if attempt.ok:
                raise ScenarioFailed(f"the upgrade to a build that {HOW[kind]} reported success: {attempt.output}")
            if not lossy:
                probe.fail_fast(probe.status())
            still = served(env)
            if still.version != cur or still.pid != slot.main_pid:
                raise ScenarioFailed(f"after the failed upgrade {still} serves, not {cur} in {slot.unit}")
            require_socket_untouched(env, sock)
            require_no_failed_slot(env)
            status = env.server.succeed(env.slots_status)
            last = [ln for ln in status.splitlines() if ln.startswith("last:")]
            if not last or STATUS_SAYS[kind] not in last[-1] or "keeps serving" not in last[-1]:
                raise ScenarioFailed(f"hitless-slots status does not say what happened:\n{status}")
            time.sleep(env.hold)
            if not lossy:
                probe.fail_fast(probe.status())
            t0 = time.monotonic()
            env.upgrade_to(good)
            next_s = time.monotonic() - t0
            probe.wait_seen([cur, good], lossy=lossy)
            time.sleep(env.hold)
        finally:
            stopped = probe.stop()
        failed = 0
        if lossy:
            failed = _crash_losses(stopped)
        else:
            stopped.require_pass(f"a build that {HOW[kind]}")
        require_socket_untouched(env, sock)
        res = BadBuildResult(
            kind=kind,
            attempt_s=round(attempt.seconds, 2),
            attempt_output=attempt.output.strip(),
            modes=mode_numbers(stopped.report),
            next_upgrade_s=round(next_s, 2),
            failed=failed,
            status=last[-1],
        )
        reasons = dict(Counter(f.reason for m in stopped.report.modes.values() for f in m.failures))
        env.log(
            f"a build that {HOW[kind]}: rejected after {attempt.seconds:.2f}s, {stopped.report.requests()} requests, "
            f"{failed} failed {reasons or ''}; {cur} kept serving in the same process; "
            f"the next upgrade to {good} took {next_s:.2f}s; {last[-1]}"
        )
        env.results[f"bad-build-{kind}"] = res
        return res
