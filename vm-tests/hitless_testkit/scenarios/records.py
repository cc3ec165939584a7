"""The records the scenarios read and write: hitless's /version document,
hitless-probe's report and status files (vm-tests/probe/src/report.rs and
main.rs), and what each scenario measured. JSON through dataclasses.asdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Listener:
    name: str
    """The socket's FileDescriptorName= (sd_listen_fds_with_names(3)), or
    "fallback" when hitless bound an address itself (--listen or the
    default)."""
    kind: str
    address: str


@dataclass
class ServiceInfo:
    """GET /version of the running instance."""

    version: str
    pid: int
    socket_activated: bool
    listeners: list[Listener]


# --- hitless-probe's files ----------------------------------------------------


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Segment:
    """A run of consecutive answers from one version."""

    version: str
    count: int


@dataclass
class ProbeFailure:
    at_s: float
    """Seconds since the probe started."""
    reason: str


@dataclass
class ModeReport:
    requests: int
    ok: int
    failed: int
    failures_by_reason: dict[str, int]
    latency: Latency
    worst_second_max_ms: float
    versions: list[str]
    timeline: list[Segment]
    failures: list[ProbeFailure]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModeReport:
        lat = d["latency"]
        return cls(
            requests=int(d["requests"]),
            ok=int(d["ok"]),
            failed=int(d["failed"]),
            failures_by_reason={str(k): int(v) for k, v in d["failures_by_reason"].items()},
            latency=Latency(float(lat["p50_ms"]), float(lat["p99_ms"]), float(lat["max_ms"])),
            worst_second_max_ms=float((d.get("worst_second") or {}).get("max_ms", 0.0)),
            versions=[str(v) for v in d["versions"]],
            timeline=[Segment(str(s["version"]), int(s["count"])) for s in d["timeline"]],
            failures=[ProbeFailure(float(f["at_s"]), str(f["reason"])) for f in d["failures"]],
        )


@dataclass
class ProbeReport:
    """The probe's --report file, written when it stops."""

    concurrency: int
    passed: bool
    problems: list[str]
    modes: dict[str, ModeReport]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProbeReport:
        return cls(
            concurrency=int(d["concurrency"]),
            passed=bool(d["passed"]),
            problems=[str(p) for p in d.get("problems") or []],
            modes={str(k): ModeReport.from_json(v) for k, v in d["modes"].items()},
        )

    def failed(self) -> int:
        return sum(m.failed for m in self.modes.values())

    def requests(self) -> int:
        return sum(m.requests for m in self.modes.values())


@dataclass
class ModeStatus:
    ok: int
    failed: int
    versions: list[str]


@dataclass
class ProbeStatus:
    """The probe's --status-file, rewritten while it runs."""

    modes: dict[str, ModeStatus]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProbeStatus:
        return cls(
            modes={
                str(k): ModeStatus(int(v["ok"]), int(v["failed"]), [str(x) for x in v["versions"]])
                for k, v in d.get("modes", {}).items()
            }
        )

    def failed(self) -> int:
        return sum(m.failed for m in self.modes.values())

    def ok(self, mode: str) -> int:
        m = self.modes.get(mode)
        return m.ok if m else 0


# --- what the scenarios measured ------------------------------------------------


@dataclass
class ModeNumbers:
    """One client mode's numbers over a scenario; latencies in ms."""

    requests: int
    failed: int
    failures_by_reason: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    worst_second_max_ms: float
    versions: list[str]

    @classmethod
    def of(cls, m: ModeReport) -> ModeNumbers:
        return cls(
            requests=m.requests,
            failed=m.failed,
            failures_by_reason=m.failures_by_reason,
            p50_ms=round(m.latency.p50_ms, 2),
            p99_ms=round(m.latency.p99_ms, 2),
            max_ms=round(m.latency.max_ms, 1),
            worst_second_max_ms=round(m.worst_second_max_ms, 1),
            versions=m.versions,
        )


def mode_numbers(report: ProbeReport) -> dict[str, ModeNumbers]:
    return {mode: ModeNumbers.of(m) for mode, m in report.modes.items()}


@dataclass
class ActivationResult:
    first_request_ms: float
    """The slowest request: it waited for the service to start."""
    probe_wall_s: float
    modes: dict[str, ModeNumbers]
    listeners: list[Listener]


@dataclass
class Spread:
    min: float
    median: float
    max: float


@dataclass
class UpgradeResult:
    rounds: int
    upgrade_s: Spread
    """How long each upgrade (the platform's restart) took, in seconds."""
    modes: dict[str, ModeNumbers]


@dataclass
class OverlapResult:
    slow_ms: int
    upgrade_s: float
    """How long the upgrade command took (it returns once the new version
    serves), in seconds."""
    old_slot_drained_s: float
    """From the upgrade's return until the old slot had stopped, in seconds."""
    steady_p99_ms: float
    latency_bound_ms: float
    overlap_seen: bool
    """The new version answered while the old one still held slow requests."""
    slow_completed_on_old: int
    slow: dict[str, ModeNumbers]
    fast: dict[str, ModeNumbers]


@dataclass
class BackToBackResult:
    both_s: float
    """Both upgrades, in seconds."""
    pids: list[int]
    """The serving process before, between and after."""
    modes: dict[str, ModeNumbers]


@dataclass
class BacklogResult:
    somaxconn: int
    backlog_cap: int
    """The listening socket's accept queue limit (ss's Send-Q)."""
    connections: int
    failed: int
    listen_overflows: int
    """Connections the kernel dropped with the queue full (TcpExtListenOverflows)."""
    waited_for_retransmit: int
    """Requests answered half a second or more after the first one: their
    connection waited for a SYN retransmit."""
    slowest_s: float


@dataclass
class BadBuildResult:
    kind: str
    """How the build is broken: "exits" before READY=1, "hangs" without it,
    "answers-500" (its ready check fails), "crashes" a second after READY=1."""
    attempt_s: float
    """How long the failed upgrade took before it gave up, in seconds."""
    attempt_output: str
    modes: dict[str, ModeNumbers]
    next_upgrade_s: float
    """The good upgrade after it, in seconds."""
    failed: int = 0
    """Requests that failed: only a crashing build may lose some, those it
    held when it crashed."""
    status: str = ""
    """What `hitless-slots status` said about the failed upgrade."""


@dataclass
class PinnedResult:
    slot: str
    version: str
    """The version the slot ran before and after the SIGKILL."""
    on_disk: str
    """What the binary on disk was meanwhile (a failed upgrade's)."""
    failed: int
    in_flight_bound: int
    modes: dict[str, ModeNumbers]


@dataclass
class StopDuringReloadResult:
    stop_during_reload_s: float
    """How long `systemctl stop` took while a reload was in its probation."""
    reload_output: str
    """What the interrupted reload said."""
    reload_during_stop_output: str
    """What a reload sent during a stop said (refused)."""
    stop_with_reload_s: float
    stop_with_reload_output: str
    """What that stop's client said (systemd may report its job canceled
    by the reload's, while the stop itself completes)."""
    restart_during_reload_s: float
    slow_answered: bool
    """The request in flight when the stop began was answered (drained)."""


@dataclass
class LongDrainReloadsResult:
    slow_s: float
    """The request that kept the first old slot draining, in seconds."""
    first_s: float
    second_s: float
    """The second reload, sent while the first one's old slot drained."""
    draining_at_second: list[str]
    """Slots still draining when the second reload returned."""
    slow_answered: bool
    modes: dict[str, ModeNumbers]


@dataclass
class DeadPeerResult:
    upgrade_s: float
    """The upgrade with a dead HTTP/2 peer on the old slot, in seconds."""
    old_slot_drained_s: float
    """From the upgrade's return until the old slot had stopped, in seconds."""
    steady_p99_ms: float
    latency_bound_ms: float
    modes: dict[str, ModeNumbers]


@dataclass
class StalledPeersResult:
    upgrade_s: float
    """The upgrade with the stalled peers on the old slot, in seconds."""
    old_slot_stopped_s: float
    """From the upgrade's return until the old slot had stopped, in seconds."""
    old_slot_result: str
    """systemd's Result= of the old slot once stopped ("success")."""
    old_slot_status: str
    """Its main process' exit status (ExecMainStatus=)."""
    warning: str
    """The old slot's log line about the connections it cut."""
    modes: dict[str, ModeNumbers]


@dataclass
class CrashLoopResult:
    seconds: float
    """How long the crashing build ran, in seconds."""
    restarts: int
    """How often systemd restarted it meanwhile."""
    failed: int
    """Requests that failed while it crashed (those it held)."""
    failures_by_reason: dict[str, int]
    socket_state: str
    recovered_with: str
    """What brought the good version back."""
    modes_after: dict[str, ModeNumbers]


@dataclass
class AdminResult:
    status_line: str
    """What the slots' status command printed for the serving slot."""
    restart_s: float
    restart_modes: dict[str, ModeNumbers]


@dataclass
class SigkillResult:
    slot: str
    recovery_ms: float
    """From the kill until a new client got its answer."""
    failed: int
    in_flight_bound: int
    slow_failed: int
    slow_in_flight: int
    modes: dict[str, ModeNumbers]
    slow: dict[str, ModeNumbers]


@dataclass
class ClientNumbers:
    """One real client library's numbers over the clients scenario."""

    library: str
    """The library and its version, as it reports them."""
    method: str
    requests: int
    ok: int
    failed: int
    documented_failures: int
    """Of `failed`, those of the library's own documented fault."""
    idle_close_failures: int
    """Of `failed`, requests lost to the idle-close race by a library that
    does not retry it (its error as seen in the same run's idle-close check)."""
    errors: dict[str, int]
    """Failures by the library's error."""
    connections: int | None
    """Connections the library opened, when it tells."""
    versions: list[str]
    """The versions that answered, in order, repeats collapsed."""


@dataclass
class IdleCloseNumbers:
    """A client against a server that closes every second request on a
    connection unanswered (the clients scenario's idle-close race)."""

    retries: bool
    """The library retries such a request by default (then none failed)."""
    requests: int
    failed: int
    connections: int | None
    errors: dict[str, int]


@dataclass
class ClientsResult:
    rounds: int
    seconds: float
    """From the clients' start until they stopped."""
    upgrade_s: Spread
    """How long each upgrade took, in seconds."""
    clients: dict[str, ClientNumbers]
    idle_close: dict[str, IdleCloseNumbers]
    """The same clients (HTTP/1.1 only) through the idle-close race."""


@dataclass
class UnitsResult:
    unit: str
    exposure: float
    rating: str
    in_container: str


@dataclass
class NegativeControlResult:
    detected: bool
    failed_requests: int
    reason: list[str] = field(default_factory=list)


@dataclass
class RotationResult:
    rotate_s: float
    """`systemctl reload hitless.service` with the new certificate, in seconds."""
    served_before: str
    served_after: str
    """The common names of the certificates served before and after it."""
    broken_rejected_s: float
    """The reload with a certificate that does not match its key, which must
    fail, in seconds."""
    broken_said: str
    """What the rejected slot logged."""
    modes: dict[str, ModeNumbers]


Record = (
    ActivationResult
    | UpgradeResult
    | OverlapResult
    | BackToBackResult
    | BacklogResult
    | BadBuildResult
    | PinnedResult
    | StopDuringReloadResult
    | LongDrainReloadsResult
    | DeadPeerResult
    | StalledPeersResult
    | SigkillResult
    | CrashLoopResult
    | AdminResult
    | ClientsResult
    | UnitsResult
    | NegativeControlResult
    | RotationResult
)
"""Anything a scenario or check records in Env.results."""
