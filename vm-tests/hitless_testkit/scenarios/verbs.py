"""systemctl stop, restart and reload of hitless.service in the middle of a
reload or a stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .env import (
    CONTROLLER,
    SOCKET,
    Attempt,
    Env,
    ScenarioFailed,
    live_slot,
    other_version,
    served,
    slot_states,
    unit_props,
)
from .records import StopDuringReloadResult


class Background:
    """Run fn in a thread (a reload or a stop that the scenario interrupts)."""

    def __init__(self, fn: Callable[[], Attempt]) -> None:
        self.result: Attempt | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as e:  # re-raised by join
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120.0) -> Attempt:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise ScenarioFailed(f"still running after {timeout:.0f}s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _timed(env: Env, command: str) -> Attempt:
    t0 = time.monotonic()
    rc, out = env.server.execute(f"{command} 2>&1")
    return Attempt(ok=rc == 0, seconds=time.monotonic() - t0, output=out.strip())


def _wait(what: str, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.05)


def _busy_slots(env: Env) -> list[str]:
    return [u for u, st in slot_states(env).items() if st.active_state not in ("inactive", "failed")]


def _reload_in_probation(env: Env, version: str) -> Background:
    """Start an upgrade to `version` and return once its new slot runs (it
    is then in its probation window, the old slot still serving)."""
    serving = live_slot(env).unit
    reload = Background(lambda: env.attempt_upgrade(version))
    _wait("the new slot of the reload started", lambda: any(u != serving for u in _busy_slots(env)))
    return reload


def _require_all_stopped(env: Env, after: str) -> None:
    states = {u: st.active_state for u, st in slot_states(env).items()}
    ctl = unit_props(env.server, CONTROLLER, "ActiveState", "Result")
    sock = unit_props(env.server, SOCKET, "ActiveState")["ActiveState"]
    if set(states.values()) != {"inactive"} or ctl["ActiveState"] != "inactive" or sock != "active":
        raise ScenarioFailed(f"after {after}: slots {states}, {CONTROLLER} {ctl}, {SOCKET} {sock}")


def verbs_mid_flip(env: Env, slow_ms: int = 4000) -> StopDuringReloadResult:
    """`systemctl stop hitless.service` while a reload's new slot is in its
    probation: the stop ends with every slot and the controller inactive
    (not failed), and the reload fails. `restart` while a reload is in its
    probation: one slot serves the binary on disk, the controller active.
    A second `reload` during a reload's probation: systemd merges it into
    the running job, which runs again: two flips, both reloads succeed.
    `reload` while a stop drains a request: refused, the stop completes
    (every slot and the controller inactive, the request answered; the
    stop's client may print "Job canceled", see below); a
    reload of the stopped service is refused and starts nothing. No load
    probe here: a connection arriving after the stop would start the
    service again through the socket, as it should."""
    s = env.server
    with env.subtest("stop, restart and reload of hitless.service in the middle of a reload or a stop"):
        cur = served(env).version
        nxt = other_version(env, cur)

        reload = _reload_in_probation(env, nxt)
        stop = _timed(env, f"systemctl stop {CONTROLLER}")
        interrupted = reload.join()
        env.log(f"stop during a reload took {stop.seconds:.2f}s ({stop.output}); the reload said: {interrupted.output}")
        if not stop.ok:
            raise ScenarioFailed(f"systemctl stop during a reload failed: {stop.output}")
        if interrupted.ok:
            raise ScenarioFailed("the reload interrupted by a stop reported success")
        _require_all_stopped(env, "a stop during a reload")
        status = s.succeed(env.slots_status)
        if "interrupted" not in status:
            raise ScenarioFailed(f"hitless-slots status does not tell of the interrupted flip:\n{status}")

        # On disk now: nxt. Started again by the socket (served() connects).
        if served(env).version != nxt:
            raise ScenarioFailed(f"after the stop, the socket did not start {nxt}, the binary on disk")
        reload = _reload_in_probation(env, cur)
        restart = _timed(env, f"systemctl restart {CONTROLLER}")
        cut = reload.join()
        env.log(f"restart during a reload took {restart.seconds:.2f}s; the reload said: {cut.output}")
        busy = _busy_slots(env)
        ctl = unit_props(s, CONTROLLER, "ActiveState")["ActiveState"]
        now = served(env).version
        if not restart.ok or len(busy) != 1 or ctl != "active" or now != cur:
            raise ScenarioFailed(
                f"after a restart during a reload: restart ok={restart.ok} ({restart.output}), slots running {busy}, "
                f"{CONTROLLER} {ctl}, {now} serves (on disk: {cur})"
            )

        # A second reload while a reload is in its probation: systemd merges
        # it into the running job and runs that once more: two flips, both
        # clients told of the second.
        history = "/var/lib/hitless-slots/history"
        flips_before = len([ln for ln in s.succeed(f"cat {history}").splitlines() if " flip: " in ln])
        running = _reload_in_probation(env, cur)
        again = _timed(env, f"systemctl reload {CONTROLLER}")
        merged = running.join()
        flips = [ln for ln in s.succeed(f"cat {history}").splitlines() if " flip: " in ln][flips_before:]
        live = live_slot(env).unit
        env.log(
            f"a reload during a reload: ok={merged.ok} and ok={again.ok} after {again.seconds:.2f}s; flips: {flips}"
        )
        if not (merged.ok and again.ok) or len(flips) != 2 or not all("serving" in f for f in flips):
            raise ScenarioFailed(f"a reload during a reload: ok={merged.ok}/{again.ok}, flips since: {flips}")
        if f"flip: {live} serving" not in flips[-1]:
            raise ScenarioFailed(f"after two merged reloads {live} serves, not the second flip's slot: {flips}")

        s.succeed(
            "systemctl reset-failed hitless-verbs-slow 2>/dev/null || :",
            "rm -f /tmp/hitless-verbs-slow.code",
            "systemd-run --quiet --unit=hitless-verbs-slow --service-type=exec "
            "sh -c 'curl -sS -o /dev/null -w %{http_code} --max-time 60 "
            f"{env.server_url}/slow?ms={slow_ms} > /tmp/hitless-verbs-slow.code'",
        )
        time.sleep(0.5)
        stopping = Background(lambda: _timed(env, f"systemctl stop {CONTROLLER}"))
        _wait(
            f"{CONTROLLER} deactivating",
            lambda: unit_props(s, CONTROLLER, "ActiveState")["ActiveState"] == "deactivating",
        )
        refused = _timed(env, f"systemctl reload {CONTROLLER}")
        stopped = stopping.join()
        env.log(
            f"reload during a stop: ok={refused.ok} ({refused.output}); the stop took {stopped.seconds:.2f}s "
            f"(ok={stopped.ok}: {stopped.output})"
        )
        if refused.ok:
            raise ScenarioFailed("a reload during a stop reported success")
        # systemd replaces the stop job with the reload job, which it then
        # refuses (the unit is deactivating): the stop's own client may say
        # "Job canceled". The stop itself goes on to its end regardless.
        _wait(
            f"{CONTROLLER} done stopping",
            lambda: unit_props(s, CONTROLLER, "ActiveState")["ActiveState"] != "deactivating",
            timeout=slow_ms / 1000 + 30,
        )
        _require_all_stopped(env, "a reload during a stop")
        _wait("the slow request's answer", lambda: s.execute("test -s /tmp/hitless-verbs-slow.code")[0] == 0)
        code = s.succeed("cat /tmp/hitless-verbs-slow.code").strip()
        if code != "200":
            raise ScenarioFailed(f"the request in flight when the stop began got {code!r}, not 200")

        inactive = _timed(env, f"systemctl reload {CONTROLLER}")
        if inactive.ok or _busy_slots(env):
            raise ScenarioFailed(f"a reload of the stopped service: ok={inactive.ok}, slots {_busy_slots(env)}")
        s.succeed(f"systemctl start {CONTROLLER}")
        res = StopDuringReloadResult(
            stop_during_reload_s=round(stop.seconds, 2),
            reload_output=interrupted.output,
            reload_during_stop_output=refused.output,
            stop_with_reload_s=round(stopped.seconds, 2),
            stop_with_reload_output=stopped.output,
            restart_during_reload_s=round(restart.seconds, 2),
            slow_answered=True,
        )
        env.log(
            f"verbs mid-flip: stop during a reload {stop.seconds:.2f}s, every slot and {CONTROLLER} inactive; "
            f"restart during a reload {restart.seconds:.2f}s, one slot serving {cur}; a reload during a reload "
            f"returned after {again.seconds:.2f}s with a second flip; reload during a stop refused "
            f"({refused.output!r}), the stop completed in {stopped.seconds:.2f}s with its request answered; "
            f"reload of the stopped service refused ({inactive.output!r})"
        )
        env.results["verbs-mid-flip"] = res
        return res
