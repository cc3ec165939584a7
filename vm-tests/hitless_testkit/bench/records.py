"""What the benchmark measures, as written to results.json (dataclasses.asdict
of these; the report reads the JSON back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Measured(Protocol):
    """A run that noise handling (host.retried) can mark."""

    other_cores: float
    noisy: bool


# --- 1. steady state ------------------------------------------------------------


@dataclass
class LoadOutput:
    """What wrk or h2load reported for one run; latencies in ms."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass(kw_only=True)
class SteadyRun(LoadOutput):
    server: str
    mode: str
    round: int
    server_cpu_s: float
    server_user_s: float
    server_sys_s: float
    server_core_busy: float
    """Server CPU time over wall time: below 1 the client was the bottleneck."""
    client_cpu_s: float
    other_cores: float
    """CPU used by everything else on the machine meanwhile, in cores."""
    us_per_req: float | None
    user_us_per_req: float | None
    sys_us_per_req: float | None
    wall_s: float
    noisy: bool = False


@dataclass
class TlsParams:
    """The tls part's TLS (bench/tls.py)."""

    suite: str
    group: str
    negotiated: dict[str, str]
    """Per server: what `openssl s_client` with the clients' OPENSSL_CONF
    negotiated ("PROTO SUITE GROUP")."""
    control: str
    """The negative control: a client offering another suite gets nothing."""
    ab_conns: int
    """ab's concurrency for a handshake per request."""


@dataclass
class SteadyParams:
    seconds: float
    rounds: int
    wrk_conns: int
    h2_conns: int
    h2_streams: int
    h2_1conn_streams: int
    paths: dict[str, str]
    server_cpu: int
    client_cpu: int
    tls: TlsParams | None = None
    """The tls part only."""


@dataclass
class Rss:
    idle: int
    """kB (VmRSS) after start."""
    peak: int
    """kB (VmHWM) after the runs."""


@dataclass
class SteadyResults:
    params: SteadyParams
    runs: list[SteadyRun]
    repeated_for_noise: int
    rss_kb: dict[str, Rss]


@dataclass
class TailRun:
    """One h2load run of the HTTP/2 tail part; latencies in ms."""

    server: str
    scheduler: str
    """tokio's scheduler: "multi-thread" (one worker) or "current-thread"."""
    connections: int
    streams: int
    """Concurrent streams per connection (h2load -m)."""
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    other_cores: float
    noisy: bool = False


@dataclass
class TailResults:
    runs: list[TailRun]


# --- 2. upgrade under load --------------------------------------------------------


@dataclass
class ModeWindow:
    """One client mode around one upgrade; latencies in ms."""

    requests: int
    failed: int
    failures_by_reason: dict[str, int]
    started_during: int
    during_p99_ms: float | None
    during_max_ms: float | None
    baseline_p99_ms: float
    disturbed_ms: float
    new_version_seen: bool
    new_serving_after_ms: float | None


@dataclass
class SlowOutcome:
    requests: int
    failed: int
    failures_by_reason: dict[str, int]
    max_ms: float | None
    answered_by: list[str]


@dataclass(kw_only=True)
class UpgradeRun:
    variant: str
    load: str
    """"open", "open+slow", "open+dead-peer" (bench/loadgen) or "wrk"."""
    round: int
    from_version: str
    to_version: str
    upgrade_cmd: str
    """`systemctl reload|restart UNIT`."""
    upgrade_cmd_ms: float
    """How long the upgrade command took, timed in the guest."""
    other_cores: float = 0.0
    noisy: bool = False


@dataclass(kw_only=True)
class OpenRun(UpgradeRun):
    """An upgrade under bench/loadgen's open-loop load."""

    modes: dict[str, ModeWindow]
    loadgen: dict[str, str]
    slow: SlowOutcome | None = None
    dead_peer: str | None = None
    """The dead peer connected to the old process ("h2" or "h1"), if any."""
    old_stopped_after_ms: float | None = None
    """After a flip: when the old slot had drained and stopped, in ms after
    the command returned (the flip does not wait for it)."""


@dataclass(kw_only=True)
class WrkRun(UpgradeRun):
    """An upgrade under `wrk` (closed loop, counts only)."""

    requests: int
    rps: float
    socket_errors: dict[str, int]
    non2xx: int
    lost: int
    """Read errors + timeouts + non-2xx: requests sent that got no good answer."""


@dataclass
class FailedUpgrade:
    """A run whose upgrade command failed: not measured, repeated."""

    variant: str
    load: str
    round: int
    why: str
    """The command's exit status and the unit's last journal lines."""


@dataclass
class UpgradeParams:
    rate_per_mode: int
    keepalive_conns: int
    tail_s: float
    """The open-loop load goes on this long after the upgrade command returned."""
    slow_count: int
    slow_ms: int
    rounds: int
    dead_peer_rounds: int
    dead_peer_age_s: float
    """How long the dead peer has been connected when the upgrade begins."""
    wrk_seconds: float
    systemd: str
    upgrade_after_s: float
    slow_sent_after_s: float


@dataclass
class UpgradeResults:
    start_ms: dict[str, list[float]]
    """`systemctl start` of one slot, by unit variant ("as shipped", ...)."""
    params: UpgradeParams
    h2c_served: dict[str, bool]
    dead_peers: dict[str, str]
    """Which dead peer each variant gets: "h2" or "h1"."""
    runs: list[OpenRun | WrkRun]
    repeated_for_noise: int
    failed_upgrades: list[FailedUpgrade] = field(default_factory=list)


# --- 3. cost ---------------------------------------------------------------------------


@dataclass
class CostResults:
    ready_ms: dict[str, list[float]]
    """exec -> READY=1, by "socket" (fd 3) and "listen" (binds itself)."""
    idle_rss_kb: dict[str, list[int]]
    baseline_go_idle_rss_kb: list[int]
    rss_breakdown_kb: dict[str, Any]
    exit_codes: dict[str, int]
    size_bytes: dict[str, int]
    runs: int


# --- the run ------------------------------------------------------------------------------


@dataclass
class QuietCheck:
    waited_s: int
    load: list[float]
    quiet: bool


@dataclass
class Phase:
    seconds: int
    load_before: list[float]
    load_after: list[float]


@dataclass
class Meta:
    cpu: str
    cores: int
    mem_gib: float
    kernel: str
    os: str
    virtualization: str
    tools: dict[str, str]
    quick: bool = False
    started: str = ""
    finished: str = ""
    parts_run: list[str] = field(default_factory=list)
    noise_limit: float = 0.0
    quiet_check: QuietCheck | None = None
    phases: dict[str, Phase] = field(default_factory=dict)
    kept_from_previous: dict[str, str] = field(default_factory=dict)
    """Parts taken from --previous: when the run that measured them started."""
