"""hitless-probe running in the background on the client machine."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .env import LATENCY_SLACK_MS, MODES, Env, ScenarioFailed, unit_prop
from .records import ProbeReport, ProbeStatus


def is_subsequence(expected: Sequence[str], seen: Sequence[str]) -> bool:
    it = iter(seen)
    return all(any(got == want for got in it) for want in expected)


@dataclass
class Stopped:
    """A probe's end: its exit status, report and printed summary."""

    status: int
    report: ProbeReport
    text: str

    def require_pass(self, name: str) -> None:
        if self.status != 0 or not self.report.passed:
            problems = "\n  ".join(self.report.problems or [f"exit status {self.status}"])
            raise ScenarioFailed(
                f"{name}: the probe failed:\n  {problems}\n{self.text}", failed_requests=self.report.failed()
            )


class Probe:
    """hitless-probe running in the background on the client, as a transient
    systemd unit: it survives the command that started it, SIGINT stops it,
    and its exit status stays readable afterwards."""

    _counter = 0

    def __init__(
        self,
        env: Env,
        name: str,
        path: str = "/",
        expect: Sequence[str] | None = None,
        modes: Sequence[str] = MODES,
        concurrency: int | None = None,
        rate: int | None = None,
        request_timeout: str = "10s",
    ) -> None:
        Probe._counter += 1
        self.env = env
        self.unit = f"hitless-probe-{name}-{Probe._counter}"
        self.dir = f"/tmp/{self.unit}"
        self.report_path = f"{self.dir}/report.json"
        self.status_path = f"{self.dir}/status.json"
        self.log_path = f"{self.dir}/probe.log"
        self.modes = tuple(modes)
        args = [
            f"--url={env.url}{path}",
            f"--concurrency={concurrency or env.concurrency}",
            f"--rate={env.rate if rate is None else rate}",
            "--duration=900s",
            f"--request-timeout={request_timeout}",
            f"--report={self.report_path}",
            f"--status-file={self.status_path}",
        ]
        args += [f"--mode={m}" for m in self.modes]
        if env.ca:
            args.append(f"--ca={env.ca}")
        if expect:
            args.append("--expect-versions=" + ",".join(expect))
        self.args = args

    def start(self) -> Probe:
        c = self.env.client
        exe = c.succeed(f"command -v {shlex.quote(self.env.probe)}").strip()
        c.succeed(
            f"rm -rf {self.dir} && mkdir -p {self.dir} && "
            f"systemd-run --quiet --unit={self.unit} --service-type=exec "
            f"--property=StandardOutput=file:{self.log_path} --property=StandardError=inherit "
            f"{shlex.quote(exe)} " + " ".join(shlex.quote(a) for a in self.args)
        )
        return self

    def status(self) -> ProbeStatus | None:
        rc, out = self.env.client.execute(f"cat {self.status_path} 2>/dev/null")
        if rc != 0 or not out.strip():
            return None
        try:
            return ProbeStatus.from_json(json.loads(out))
        except (ValueError, KeyError, TypeError):
            return None

    def _is_running(self) -> bool:
        return unit_prop(self.env.client, self.unit, "ActiveState") in ("active", "activating", "deactivating")

    def fail_fast(self, st: ProbeStatus | None) -> None:
        """Requests already failed: the scenario is lost, stop waiting."""
        failed = st.failed() if st else 0
        if failed:
            raise ScenarioFailed(f"probe {self.unit}: {failed} request(s) failed; status: {st}", failed_requests=failed)

    def wait_seen(self, prefix: Sequence[str], timeout: float = 60.0, lossy: bool = False) -> ProbeStatus:
        """Wait until every mode has seen `prefix` in order and is now
        answered by its last version. Fails at once if a request failed,
        unless `lossy` (a process was made to crash: the caller judges the
        failures it may have cost)."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status()
            if not lossy:
                self.fail_fast(st)
            if st is not None:
                modes = st.modes
                if all(
                    m in modes
                    and modes[m].versions
                    and modes[m].versions[-1] == prefix[-1]
                    and is_subsequence(prefix, modes[m].versions)
                    for m in self.modes
                ):
                    return st
            if not self._is_running():
                break
            time.sleep(0.1)
        raise ScenarioFailed(
            f"probe {self.unit}: every mode should have seen {' -> '.join(prefix)}; status: {st}\n{self.output()}"
        )

    def wait_ok(
        self, at_least: Mapping[str, int] | None = None, timeout: float = 60.0, fail_fast: bool = True
    ) -> ProbeStatus:
        """Wait until every mode has more successful requests than in
        `at_least` (default: any)."""
        base = at_least or {}
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status()
            if fail_fast:
                self.fail_fast(st)
            if st is not None and all(st.ok(m) > base.get(m, 0) for m in self.modes):
                return st
            time.sleep(0.1)
        raise ScenarioFailed(f"probe {self.unit}: no progress in every mode; status: {st}")

    def output(self) -> str:
        _, out = self.env.client.execute(f"cat {self.log_path} 2>/dev/null")
        return out

    def stop(self, timeout: float = 120.0) -> Stopped:
        """SIGINT, wait for the report, log the probe's summary."""
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
        return Stopped(status, ProbeReport.from_json(json.loads(raw)), text)


def steady_p99_ms(env: Env, seconds: int = 3) -> float:
    """The worst per-mode p99 latency of a short run of the usual load while
    nothing happens: the yardstick for latency during an upgrade."""
    report_path = "/tmp/hitless-probe-steady.json"
    rc, out = env.client.execute(
        f"{shlex.quote(env.probe)} --url={env.url}/ --duration={seconds}s --concurrency={env.concurrency} "
        f"--rate={env.rate} --report={report_path} {env.probe_tls}"
    )
    report = ProbeReport.from_json(json.loads(env.client.succeed(f"cat {report_path}")))
    Stopped(rc, report, out).require_pass("steady state")
    return max(m.latency.p99_ms for m in report.modes.values())


def latency_bound_ms(steady_p99: float) -> float:
    """What an upgrade may cost a new request (see LATENCY_SLACK_MS)."""
    return 2 * steady_p99 + LATENCY_SLACK_MS
