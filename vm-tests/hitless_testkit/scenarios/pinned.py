"""A slot runs the build it was started with, also after a crash."""

from __future__ import annotations

import time

from .env import Env, ScenarioFailed, live_slot, other_version, served, unit_props
from .probe import Probe
from .records import PinnedResult, mode_numbers


def pinned_after_failed_upgrade(env: Env, comeback_s: float = 15.0) -> PinnedResult:
    """A failed upgrade leaves its broken binary on disk; then the serving
    slot is SIGKILLed. systemd restarts it (Restart=on-failure), and it must
    come back as the version it ran before, from its own copy, not from the
    broken file on disk. Only the requests the killed process held may fail
    (as in the SIGKILL scenario); connections wait in the socket's queue
    meanwhile. Then a good upgrade must succeed."""
    with env.subtest("a SIGKILLed slot comes back as its own build after a failed upgrade"):
        before = served(env)
        slot = live_slot(env)
        good = other_version(env, before.version)
        attempt = env.attempt_upgrade(env.broken_build("exits"))
        if attempt.ok:
            raise ScenarioFailed(f"the upgrade to a build that exits reported success: {attempt.output}")
        probe = Probe(env, "pinned", expect=[before.version, good]).start()
        try:
            probe.wait_seen([before.version])
            time.sleep(env.hold)
            env.server.succeed(f"kill -KILL {slot.main_pid}")
            deadline = time.monotonic() + comeback_s
            while True:
                p = unit_props(env.server, slot.unit, "ActiveState", "MainPID", "NRestarts")
                if p["ActiveState"] == "active" and int(p["MainPID"] or 0) not in (0, slot.main_pid):
                    break
                if time.monotonic() > deadline:
                    raise ScenarioFailed(
                        f"{slot.unit} did not come back within {comeback_s:.0f}s after SIGKILL: {p} "
                        "(restarted from the broken binary on disk?)"
                    )
                time.sleep(0.1)
            after = served(env)
            if after.version != before.version or after.pid == before.pid:
                raise ScenarioFailed(
                    f"after the SIGKILL {after.version} (pid {after.pid}) serves, not {before.version} in a new process"
                )
            st = probe.status()
            probe.wait_ok({m: st.ok(m) for m in probe.modes} if st else None, fail_fast=False)
            time.sleep(env.hold)
            env.upgrade_to(good)
            # Not wait_seen: requests the killed process held may have
            # failed, and it would stop at the first failure.
            deadline = time.monotonic() + 60
            while True:
                st = probe.status()
                if st and all(m in st.modes and st.modes[m].versions[-1:] == [good] for m in probe.modes):
                    break
                if time.monotonic() > deadline:
                    raise ScenarioFailed(f"the probe never saw {good} in every mode: {st}")
                time.sleep(0.1)
        finally:
            stopped = probe.stop()
        report = stopped.report
        failures = [f for m in report.modes.values() for f in m.failures]
        bound = len(report.modes) * report.concurrency
        if len(failures) > bound or any(f.reason in ("connect-refused", "connect-error") for f in failures):
            raise ScenarioFailed(
                f"{len(failures)} requests failed (bound {bound}, refusals not allowed)\n{stopped.text}",
                failed_requests=len(failures),
            )
        res = PinnedResult(
            slot=slot.unit,
            version=before.version,
            on_disk=env.broken_build("exits"),
            failed=len(failures),
            in_flight_bound=bound,
            modes=mode_numbers(report),
        )
        env.log(
            f"pinned: after a failed upgrade and SIGKILL {slot.unit} came back as {before.version} "
            f"(pid {before.pid} -> {after.pid}); {len(failures)} of {report.requests()} requests failed "
            f"(bound {bound}); the next upgrade to {good} succeeded"
        )
        env.results["pinned"] = res
        return res
