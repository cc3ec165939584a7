"""The hitless test scenarios, written once for two drivers: the container
driver in vm-tests/driver (Debian + systemd-nspawn) and the NixOS test driver.

Plain Python 3 with the standard library. A scenario only calls what both
drivers' machine objects have: succeed, execute, require_unit_state,
wait_for_unit; plus an `upgrade(version)` callback that the platform
provides (container: write the new binary beside /usr/bin/hitless, rename it
over, `systemctl restart hitless.service`; NixOS: switch-to-configuration).

Use from a NixOS testScript (the file is plain Python, exec it or import it):

    exec(open("${../scenarios/hitless_scenarios.py}").read())
    env = Env(server=server, client=client, upgrade=switch_to,
              versions=["1.0.0", "2.0.0"], url="http://server:8080",
              subtest=subtest, log=print)
    activation_on_demand(env)
    upgrade_under_load(env, rounds=10)
    restart_with_slow_requests(env)
    sigkill_under_load(env)
    print(format_results(env.results))

Assumptions about the machines when a scenario starts: hitless.socket is
listening (on `port`), versions[0] or versions[1] is installed, and
`hitless-probe` and `curl` are on the client's PATH. Every scenario asserts
that no request failed in any client mode (except sigkill_under_load, where
only requests in flight may fail) and records its numbers in env.results.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Sequence

MODES = ("new-conn", "keep-alive", "h2")

# Highest `systemd-analyze security` exposure hitless.service may score; the
# container tests and the NixOS VM test enforce the same bound.
MAX_EXPOSURE = 1.0


class ScenarioFailed(AssertionError):
    """A scenario's promise was broken (failed requests, wrong versions...).
    `failed_requests` counts the requests the probe saw fail, if any."""

    def __init__(self, message: str, failed_requests: int = 0) -> None:
        super().__init__(message)
        self.failed_requests = failed_requests


@dataclass
class Env:
    server: Any
    """Machine running hitless.socket / hitless.service."""
    client: Any
    """Machine running the probe (may be the server itself)."""
    upgrade: Callable[[str], None]
    """Make `version` the running one, the platform's way (replace the
    binary, restart the service). Returns when the restart is done."""
    versions: Sequence[str] = ("1.0.0", "2.0.0")
    url: str = "http://127.0.0.1:8080"
    """Base URL of the service as the client reaches it (no trailing /)."""
    server_url: str = "http://127.0.0.1:8080"
    """Base URL of the service from the server itself."""
    port: int = 8080
    probe: str = "hitless-probe"
    subtest: Callable[[str], ContextManager[None]] = lambda name: contextlib.nullcontext()
    log: Callable[[str], None] = print
    concurrency: int = 8
    """Probe workers per client mode."""
    rate: int = 300
    """Requests per second per client mode (0: as fast as answered)."""
    hold: float = 1.0
    """Seconds of load on each version before the next upgrade."""
    results: dict = field(default_factory=dict)


def is_subsequence(expected: Sequence[str], seen: Sequence[str]) -> bool:
    it = iter(seen)
    return all(any(got == want for got in it) for want in expected)


def _q(s: str) -> str:
    return shlex.quote(s)


def served(env: Env) -> dict:
    """The running instance's /version, asked from the server itself (this
    starts the service if it was not running)."""
    return json.loads(env.server.succeed(f"curl -sS --fail --max-time 30 {env.server_url}/version"))


def unit_prop(machine: Any, unit: str, prop: str) -> str:
    return machine.succeed(f"systemctl show --property={prop} --value {unit}").strip()


class Probe:
    """hitless-probe running in the background on the client, as a transient
    systemd unit: it survives the command that started it, SIGINT stops it,
    and its exit status stays readable afterwards."""

    _counter = 0

    def __init__(self, env: Env, name: str, path: str = "/", expect: Sequence[str] | None = None,
                 modes: Sequence[str] = MODES, concurrency: int | None = None, rate: int | None = None,
                 request_timeout: str = "10s") -> None:
        Probe._counter += 1
        self.env = env
        self.unit = f"hitless-probe-{name}-{Probe._counter}"
        self.dir = f"/tmp/{self.unit}"
        self.report_path = f"{self.dir}/report.json"
        self.status_path = f"{self.dir}/status.json"
        self.log_path = f"{self.dir}/probe.log"
        self.modes = tuple(modes)
        args = [f"--url={env.url}{path}", f"--concurrency={concurrency or env.concurrency}",
                f"--rate={env.rate if rate is None else rate}", "--duration=900s",
                f"--request-timeout={request_timeout}",
                f"--report={self.report_path}", f"--status-file={self.status_path}"]
        args += [f"--mode={m}" for m in self.modes]
        if expect:
            args.append("--expect-versions=" + ",".join(expect))
        self.args = args

    def start(self) -> "Probe":
        c = self.env.client
        exe = c.succeed(f"command -v {_q(self.env.probe)}").strip()
        c.succeed(
            f"rm -rf {self.dir} && mkdir -p {self.dir} && "
            f"systemd-run --quiet --unit={self.unit} --service-type=exec "
            f"--property=StandardOutput=file:{self.log_path} --property=StandardError=inherit "
            f"{_q(exe)} " + " ".join(_q(a) for a in self.args))
        return self

    def status(self) -> dict | None:
        rc, out = self.env.client.execute(f"cat {self.status_path} 2>/dev/null")
        if rc != 0 or not out.strip():
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def _is_running(self) -> bool:
        return unit_prop(self.env.client, self.unit, "ActiveState") in ("active", "activating", "deactivating")

    def _fail_fast(self, st: dict | None) -> None:
        """Requests already failed: the scenario is lost, stop waiting."""
        failed = sum(m.get("failed", 0) for m in (st or {}).get("modes", {}).values())
        if failed:
            raise ScenarioFailed(f"probe {self.unit}: {failed} request(s) failed; status: {json.dumps(st)}",
                                 failed_requests=failed)

    def wait_seen(self, prefix: Sequence[str], timeout: float = 60.0) -> dict:
        """Wait until every mode has seen `prefix` in order and is now
        answered by its last version. Fails at once if a request failed."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status()
            self._fail_fast(st)
            if st is not None:
                modes = st.get("modes", {})
                if all(m in modes and modes[m]["versions"] and modes[m]["versions"][-1] == prefix[-1]
                       and is_subsequence(prefix, modes[m]["versions"]) for m in self.modes):
                    return st
            if not self._is_running():
                break
            time.sleep(0.1)
        raise ScenarioFailed(f"probe {self.unit}: every mode should have seen {' -> '.join(prefix)}; "
                             f"status: {json.dumps(st)}\n{self.output()}")

    def wait_ok(self, at_least: dict[str, int] | None = None, timeout: float = 60.0,
                fail_fast: bool = True) -> dict:
        """Wait until every mode has more successful requests than in
        `at_least` (default: any)."""
        base = at_least or {}
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status()
            if fail_fast:
                self._fail_fast(st)
            if st is not None and all(st["modes"].get(m, {}).get("ok", 0) > base.get(m, 0) for m in self.modes):
                return st
            time.sleep(0.1)
        raise ScenarioFailed(f"probe {self.unit}: no progress in every mode; status: {json.dumps(st)}")

    def output(self) -> str:
        _, out = self.env.client.execute(f"cat {self.log_path} 2>/dev/null")
        return out

    def stop(self, timeout: float = 120.0) -> tuple[int, dict, str]:
        """SIGINT, wait for the report, log the probe's summary; return
        (exit status, report, summary)."""
        c = self.env.client
        c.execute(f"systemctl kill --signal=SIGINT {self.unit}")
        deadline = time.monotonic() + timeout
        while self._is_running():
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"probe {self.unit} did not stop within {timeout}s")
            time.sleep(0.1)
        status = int(unit_prop(c, self.unit, "ExecMainStatus") or "-1")
        c.execute(f"systemctl reset-failed {self.unit} 2>/dev/null")
        text = self.output()
        self.env.log(f"probe {self.unit} (exit status {status}):\n{text.rstrip()}")
        rc, raw = c.execute(f"cat {self.report_path}")
        if rc != 0:
            raise ScenarioFailed(f"probe {self.unit} wrote no report (exit status {status}):\n{text}")
        return status, json.loads(raw), text


def _require_pass(name: str, status: int, report: dict, text: str) -> None:
    if status != 0 or not report.get("passed"):
        problems = "\n  ".join(report.get("problems") or [f"exit status {status}"])
        failed = sum(m["failed"] for m in report["modes"].values())
        raise ScenarioFailed(f"{name}: the probe failed:\n  {problems}\n{text}", failed_requests=failed)


def _mode_numbers(report: dict) -> dict:
    out = {}
    for mode, m in report["modes"].items():
        w = m.get("worst_second") or {}
        out[mode] = {
            "requests": m["requests"],
            "failed": m["failed"],
            "failures_by_reason": m["failures_by_reason"],
            "p50_ms": round(m["latency"]["p50_ms"], 2),
            "p99_ms": round(m["latency"]["p99_ms"], 2),
            "max_ms": round(m["latency"]["max_ms"], 1),
            "worst_second_max_ms": round(w.get("max_ms", 0.0), 1),
            "versions": m["versions"],
        }
    return out


def _ensure_version(env: Env, version: str) -> dict:
    """Make `version` the one serving (upgrading if needed) and return its
    /version."""
    info = served(env)
    if info["version"] != version:
        env.upgrade(version)
        info = served(env)
    if info["version"] != version:
        raise ScenarioFailed(f"wanted {version} running, /version says {info}")
    return info


def _other(env: Env, version: str) -> str:
    return env.versions[1] if version == env.versions[0] else env.versions[0]


# --- 1 ----------------------------------------------------------------------

def activation_on_demand(env: Env, seconds: int = 3) -> dict:
    """The service is not running; the first request starts it. All three
    client modes start at once, so the first of them activates the service
    and the others queue on the same socket; none may fail."""
    s = env.server
    with env.subtest("activation on demand: a stopped service is started by the first request"):
        s.succeed("systemctl stop hitless.service")
        s.require_unit_state("hitless.service", "inactive")
        s.require_unit_state("hitless.socket", "active")
        s.succeed(f"ss -Hltn 'sport = :{env.port}' | grep LISTEN >/dev/null")
        t0 = time.monotonic()
        rc, out = env.client.execute(
            f"{_q(env.probe)} --url={env.url}/ --duration={seconds}s --concurrency={env.concurrency} "
            f"--rate={env.rate} --report=/tmp/activation.json")
        wall = time.monotonic() - t0
        env.log(out)
        report = json.loads(env.client.succeed("cat /tmp/activation.json"))
        _require_pass("activation on demand", rc, report, out)
        s.require_unit_state("hitless.service", "active")
        info = served(env)
        if not info.get("socket_activated"):
            raise ScenarioFailed(f"the service says it was not socket-activated: {info}")
        first_ms = max(m["latency"]["max_ms"] for m in report["modes"].values())
        res = {"first_request_ms": round(first_ms, 1), "probe_wall_s": round(wall, 1),
               "modes": _mode_numbers(report), "listeners": info.get("listeners")}
        env.log(f"activation on demand: the slowest request (it waited for the start) took {first_ms:.1f} ms; "
                f"{sum(m['requests'] for m in report['modes'].values())} requests, 0 failed")
        env.results["activation"] = res
        return res


# --- 2 ----------------------------------------------------------------------

def upgrade_under_load(env: Env, rounds: int = 10) -> dict:
    """Upgrade in place under load, `rounds` times back to back, alternating
    versions; the probe must see every version in order in every mode and
    no request may fail."""
    v0 = env.versions[0]
    seq = [env.versions[i % 2] for i in range(rounds + 1)]
    with env.subtest(f"in-place upgrade under load, {rounds} times back to back"):
        _ensure_version(env, v0)
        probe = Probe(env, "upgrade", expect=seq).start()
        restarts = []
        try:
            probe.wait_seen(seq[:1])
            time.sleep(env.hold)
            for i in range(1, rounds + 1):
                t0 = time.monotonic()
                env.upgrade(seq[i])
                restarts.append(time.monotonic() - t0)
                env.log(f"upgrade {i}/{rounds}: {seq[i - 1]} -> {seq[i]} took {restarts[-1]:.2f}s")
                probe.wait_seen(seq[:i + 1])
                time.sleep(env.hold)
        finally:
            status, report, text = probe.stop()
        _require_pass("in-place upgrade", status, report, text)
        modes = _mode_numbers(report)
        res = {
            "rounds": rounds,
            "upgrade_s": {"min": round(min(restarts), 2), "median": round(sorted(restarts)[len(restarts) // 2], 2),
                          "max": round(max(restarts), 2)},
            "modes": modes,
        }
        worst = max(m["max_ms"] for m in modes.values())
        env.log(f"in-place upgrade x{rounds}: 0 failed requests in {sum(m['requests'] for m in modes.values())}; "
                f"worst latency {worst:.1f} ms; upgrade (restart) took {res['upgrade_s']}")
        env.results["upgrade"] = res
        return res


# --- 3 ----------------------------------------------------------------------

def restart_with_slow_requests(env: Env, slow_ms: int = 3000, slow_concurrency: int = 2) -> dict:
    """Restart (upgrade) while /slow requests are in flight: they complete on
    the old process; new requests wait in the socket queue meanwhile, and
    that wait is what they pay."""
    with env.subtest(f"restart while /slow?ms={slow_ms} requests are in flight"):
        cur = served(env)["version"]
        nxt = _other(env, cur)
        seq = [cur, nxt]
        slow = Probe(env, "slow", path=f"/slow?ms={slow_ms}", expect=seq, concurrency=slow_concurrency,
                     rate=0, request_timeout=f"{slow_ms // 1000 + 30}s")
        fast = Probe(env, "fast", expect=seq)
        started = []
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
            env.upgrade(nxt)
            restart_s = time.monotonic() - t0
            env.log(f"restart with slow requests in flight took {restart_s:.2f}s")
            fast.wait_seen(seq)
            slow.wait_seen(seq, timeout=slow_ms / 1000 + 60)
            time.sleep(env.hold)
        finally:
            results = [p.stop() for p in started]
        (s_status, s_report, s_text), (f_status, f_report, f_text) = results
        _require_pass("slow requests across a restart", s_status, s_report, s_text)
        _require_pass("new requests during the restart", f_status, f_report, f_text)
        slow_done_old = sum(m["timeline"][0]["count"] for m in s_report["modes"].values())
        # The slow requests in flight at the restart are each worker's first:
        # every one of them must have been answered by the old version.
        for mode, m in s_report["modes"].items():
            first = m["timeline"][0]
            if first["version"] != cur or first["count"] < slow_concurrency:
                raise ScenarioFailed(f"{mode}: slow requests in flight at the restart did not all finish on "
                                     f"{cur}: {m['timeline']}")
        res = {
            "slow_ms": slow_ms,
            "restart_s": round(restart_s, 2),
            "slow_completed_on_old": slow_done_old,
            "slow": _mode_numbers(s_report),
            "fast": _mode_numbers(f_report),
        }
        worst = max(m["max_ms"] for m in res["fast"].values())
        env.log(f"restart with /slow in flight: {slow_done_old} slow requests finished on {cur}, 0 failed; "
                f"restart took {restart_s:.2f}s; new requests waited at most {worst:.1f} ms")
        if remaining > 0.5 and restart_s < remaining - 0.3:
            raise ScenarioFailed(f"the restart took only {restart_s:.2f}s, but slow requests needed {remaining:.2f}s "
                                 "more: they were not waited for")
        env.results["slow"] = res
        return res


# --- 4 ----------------------------------------------------------------------

def sigkill_under_load(env: Env, slow_ms: int = 2000) -> dict:
    """SIGKILL the service under load: systemd restarts it (Restart=on-failure)
    and the socket stays open, so only the requests the killed process held
    can fail, and new connections wait in the queue until the new process
    serves them. Besides the usual load, one /slow request per client mode
    is kept in flight, so the kill certainly hits requests: those (and at
    most one request per fast worker) may fail, nothing else."""
    s = env.server
    with env.subtest("SIGKILL under load: systemd restarts the service"):
        served(env)
        pid = int(unit_prop(s, "hitless.service", "MainPID"))
        restarts0 = int(unit_prop(s, "hitless.service", "NRestarts") or 0)
        fast = Probe(env, "sigkill")
        slow = Probe(env, "sigkill-slow", path=f"/slow?ms={slow_ms}", concurrency=1, rate=0,
                     request_timeout=f"{slow_ms // 1000 + 30}s")
        started = []
        try:
            for p in (fast, slow):
                p.start()
                started.append(p)
            st = fast.wait_ok()
            # Past the first slow requests, into the second round: in flight.
            slow.wait_ok(timeout=slow_ms / 1000 + 30)
            time.sleep(env.hold)
            fast._fail_fast(fast.status())
            # Kill, then time how long a new client waits for an answer, in
            # one shell on the server so no driver latency is counted.
            out = s.succeed(
                f"t0=$(date +%s%N); kill -KILL {pid}; "
                f"curl -sS --fail -o /dev/null --max-time 30 {env.server_url}/healthz; "
                "t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 ))")
            recovery_ms = int(out.strip().splitlines()[-1]) / 1000
            s.wait_for_unit("hitless.service")
            st = fast.status() or st
            fast.wait_ok({m: st["modes"][m]["ok"] for m in fast.modes}, fail_fast=False)
            sst = slow.status() or {"modes": {}}
            slow.wait_ok({m: sst["modes"].get(m, {}).get("ok", 0) for m in slow.modes},
                         timeout=slow_ms / 1000 + 30, fail_fast=False)
            time.sleep(env.hold)
        finally:
            stopped = [p.stop() for p in started]
        (_, report, text), (_, s_report, s_text) = stopped
        new_pid = int(unit_prop(s, "hitless.service", "MainPID"))
        restarts = int(unit_prop(s, "hitless.service", "NRestarts") or 0) - restarts0
        if new_pid in (0, pid) or restarts != 1:
            raise ScenarioFailed(f"expected one automatic restart, got NRestarts +{restarts}, MainPID {pid} -> {new_pid}")

        problems = []
        both = (("fast", report), ("slow", s_report))
        failures = [f for _, r in both for m in r["modes"].values() for f in m["failures"]]
        failed = sum(m["failed"] for m in report["modes"].values())
        slow_failed = sum(m["failed"] for m in s_report["modes"].values())
        in_flight_bound = len(report["modes"]) * report["concurrency"]
        slow_bound = len(s_report["modes"]) * s_report["concurrency"]
        if failed > in_flight_bound:
            problems.append(f"{failed} requests failed, more than the {in_flight_bound} that can be in flight")
        if not 1 <= slow_failed <= slow_bound:
            problems.append(f"{slow_failed} slow requests failed; the {slow_bound} in flight at the kill should")
        if any(f["reason"] in ("connect-refused", "connect-error") for f in failures):
            problems.append("connections were refused: the socket must stay open")
        if failures:
            span = max(f["at_s"] for f in failures) - min(f["at_s"] for f in failures)
            if span > recovery_ms / 1000 + 1.0:
                problems.append(f"failures spread over {span:.1f}s: more than the requests in flight at the kill")
        if any(m["ok"] == 0 for _, r in both for m in r["modes"].values()):
            problems.append("a mode had no successful request")
        if problems:
            raise ScenarioFailed("SIGKILL under load: " + "; ".join(problems) + "\n" + text + "\n" + s_text,
                                 failed_requests=failed + slow_failed)
        res = {
            "recovery_ms": round(recovery_ms, 1),
            "failed": failed,
            "in_flight_bound": in_flight_bound,
            "slow_failed": slow_failed,
            "slow_in_flight": slow_bound,
            "modes": _mode_numbers(report),
            "slow": _mode_numbers(s_report),
        }
        reasons: dict[str, int] = {}
        for f in failures:
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
        env.log(f"SIGKILL under load: {slow_failed} of {slow_bound} in-flight slow requests failed, "
                f"{failed} of {sum(m['requests'] for m in report['modes'].values())} other requests "
                f"(bound {in_flight_bound}); reasons {reasons}; a new client got its answer "
                f"{recovery_ms:.0f} ms after the kill")
        env.results["sigkill"] = res
        return res


ALL = {
    "activation": activation_on_demand,
    "upgrade": upgrade_under_load,
    "slow": restart_with_slow_requests,
    "sigkill": sigkill_under_load,
}


def format_results(results: dict) -> str:
    """A short human table of the numbers the scenarios measured."""
    lines = []
    for name, r in results.items():
        lines.append(f"{name}:")
        for k, v in r.items():
            if k in ("modes", "slow", "fast"):
                for mode, m in v.items():
                    lines.append(f"  {k + ' ' if k != 'modes' else ''}{mode:<10} requests={m['requests']:<7} "
                                 f"failed={m['failed']:<3} p50={m['p50_ms']}ms p99={m['p99_ms']}ms "
                                 f"max={m['max_ms']}ms worst-second-max={m['worst_second_max_ms']}ms "
                                 f"{m['failures_by_reason'] or ''}")
            else:
                lines.append(f"  {k}: {v}")
    return "\n".join(lines)
