"""A build that serves and then crashes, again and again."""

from __future__ import annotations

import time
from collections import Counter

from .env import (
    SOCKET,
    Env,
    ScenarioFailed,
    other_version,
    require_socket_untouched,
    served,
    slot_states,
    socket_invocation,
    unit_props,
)
from .probe import Probe
from .records import CrashLoopResult, mode_numbers

DEFAULT_START_LIMIT_BURST = 5
"""systemd's default StartLimitBurst= (per StartLimitIntervalSec=10s): a
crash loop that restarts more often than this would hit the default limit."""


def crash_loop_survives(env: Env, seconds: float = 12.0) -> CrashLoopResult:
    """Upgrade to a build that serves and crashes within a second, every
    time systemd restarts it, and keep the load on for `seconds`: more
    restarts than systemd's default start limit allows. hitless.socket must
    stay active the whole time (a start limit hit would fail it and close
    the listening socket), no connection may be refused (only requests the
    crashing process held may fail), and the next upgrade, to a good build,
    must bring back a service that loses nothing."""
    s = env.server
    with env.subtest(f"a build that crashes again and again for {seconds:.0f}s: the socket stays, nobody acts"):
        cur = served(env).version
        good = other_version(env, cur)
        sock = socket_invocation(env)
        restarts0 = sum(st.n_restarts for st in slot_states(env).values())
        crashing = Probe(env, "crash-loop").start()
        socket_states: Counter[str] = Counter()
        try:
            crashing.wait_ok()
            attempt = env.attempt_upgrade(env.broken_build("crashes"))
            env.log(f"upgrade to a build that crashes: ok={attempt.ok} ({attempt.output.strip()})")
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                socket_states[unit_props(s, SOCKET, "ActiveState")["ActiveState"]] += 1
                time.sleep(0.2)
            crash_s = time.monotonic() - t0
            restarts = sum(st.n_restarts for st in slot_states(env).values()) - restarts0
        finally:
            c_stop = crashing.stop()
        failures = [f for m in c_stop.report.modes.values() for f in m.failures]
        reasons = dict(Counter(f.reason for f in failures))
        problems = []
        if set(socket_states) != {"active"}:
            problems.append(f"{SOCKET} was not always active: {dict(socket_states)}")
        if any(r in ("connect-refused", "connect-error") for r in reasons):
            problems.append(f"connections were refused: {reasons}")
        if restarts <= DEFAULT_START_LIMIT_BURST:
            problems.append(f"only {restarts} restarts: the crash loop did not go past the default start limit")
        if problems:
            raise ScenarioFailed(
                "crash loop: " + "; ".join(problems) + "\n" + c_stop.text, failed_requests=c_stop.report.failed()
            )
        env.upgrade_to(good)
        recovered_with = f"an upgrade to {good}"
        require_socket_untouched(env, sock)

        after = Probe(env, "after-crash-loop", expect=[good]).start()
        try:
            after.wait_seen([good])
            time.sleep(env.hold)
        finally:
            a_stop = after.stop()
        a_stop.require_pass("after the crash loop")
        res = CrashLoopResult(
            seconds=round(crash_s, 1),
            restarts=restarts,
            failed=c_stop.report.failed(),
            failures_by_reason=reasons,
            socket_state="active throughout",
            recovered_with=recovered_with,
            modes_after=mode_numbers(a_stop.report),
        )
        env.log(
            f"crash loop: {restarts} restarts in {crash_s:.1f}s, {SOCKET} active throughout, "
            f"{res.failed} of {c_stop.report.requests()} requests failed (held by the crashing process: {reasons}); "
            f"{recovered_with} brought back a service that lost nothing"
        )
        env.results["crash-loop"] = res
        return res
