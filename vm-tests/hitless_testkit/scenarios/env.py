"""What every scenario gets: the machines, the platform's way to upgrade,
the load parameters, and where to record the numbers.

A scenario only calls what both drivers' machine objects have (GuestMachine:
the container driver's nspawn.Machine and the NixOS test driver's Machine).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .records import Listener, Record, ServiceInfo

MODES = ("new-conn", "keep-alive", "h2")
"""The probe's client modes: HTTP/1.1 with a new connection per request,
HTTP/1.1 keep-alive, cleartext HTTP/2 (RFC 9113 section 3.3, prior knowledge)."""

MAX_EXPOSURE = 1.0
"""Highest `systemd-analyze security` exposure a slot (hitless@.service) may
score; the container tests and the NixOS VM test enforce the same bound."""

CONTROLLER_MAX_EXPOSURE = 1.5
"""The same for hitless.service, which only runs systemctl, but as root (PID 1
accepts root on its private socket; running as root alone weighs 0.4)."""

CONTROLLER = "hitless.service"
"""The unit admins and package managers address; `reload` flips slots."""
SOCKET = "hitless.socket"
SLOTS = ("hitless@blue.service", "hitless@green.service", "hitless@red.service")
"""The slots hitless runs in; all are passed hitless.socket."""
SLOTS_HELPER = "/usr/libexec/hitless/hitless-slots"

UPGRADE_BOUND_S = 1.0
"""An upgrade must not wait for an old version's drain: it returns within
this many seconds after the new version's probation window (Env.probation_s)
whatever the old versions still hold."""

LATENCY_SLACK_MS = 50.0
"""During an upgrade, new requests may take at most twice the steady-state
p99 plus this much: they must not wait for the old version's drain."""


class GuestMachine(Protocol):
    """The part of the NixOS test driver's Machine API the scenarios use
    (nixos/lib/test-driver/src/test_driver/machine); timeouts in seconds."""

    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: int | None = 900
    ) -> tuple[int, str]: ...

    def succeed(self, *commands: str, timeout: int | None = None) -> str: ...

    def require_unit_state(self, unit: str, require_state: str = "active") -> None: ...

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None: ...


class ScenarioFailed(AssertionError):
    """A scenario's promise was broken (failed requests, wrong versions...).
    `failed_requests` counts the requests the probe saw fail, if any."""

    def __init__(self, message: str, failed_requests: int = 0) -> None:
        super().__init__(message)
        self.failed_requests = failed_requests


def _no_subtest(_name: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


@dataclass
class Attempt:
    """An upgrade that is allowed to fail: what the platform's upgrade
    command said."""

    ok: bool
    """The upgrade command succeeded (for a package manager: and reported no
    failed reload)."""
    seconds: float
    output: str


@dataclass
class Env:
    server: GuestMachine
    """Machine running hitless.socket / hitless.service."""
    client: GuestMachine
    """Machine running the probe (may be the server itself)."""
    upgrade: Callable[[str], None] | None = None
    """Make `version` the running one, the platform's way (replace the
    binary, `systemctl reload hitless.service`). Returns when the new
    version serves; raises when it does not. Only the scenarios that upgrade
    need it."""
    attempt: Callable[[str], Attempt] | None = None
    """Try to upgrade to `version`, which may be one of the platform's
    broken builds (`broken`): returns what happened instead of raising."""
    broken: dict[str, str] = field(default_factory=dict)
    """The platform's broken builds by kind: "exits" (exits before READY=1),
    "hangs" (never sends READY=1), "answers-500" (answers every request,
    its own ready check's too, with a 500), "crashes" (serves, then crashes
    a second after its start, again and again). Each value is a name
    `attempt` accepts."""
    slots_status: str = f"{SLOTS_HELPER} status"
    """The command that shows which slot and version serve."""
    probation_s: float = 3.0
    """The platform's probation window (HITLESS_PROBATION_SEC): a reload
    returns no sooner, whatever the old version still holds."""
    versions: Sequence[str] = ("1.0.0", "2.0.0")
    url: str = "http://127.0.0.1:8080"
    """Base URL of the service as the client reaches it (no trailing /)."""
    server_url: str = "http://127.0.0.1:8080"
    """Base URL of the service from the server itself."""
    port: int = 8080
    probe: str = "hitless-probe"
    subtest: Callable[[str], AbstractContextManager[None]] = _no_subtest
    log: Callable[[str], None] = print
    concurrency: int = 8
    """Probe workers per client mode."""
    rate: int = 300
    """Requests per second per client mode (0: as fast as answered)."""
    hold: float = 1.0
    """Seconds of load on each version before the next upgrade."""
    results: dict[str, Record] = field(default_factory=dict)
    """What the scenarios measured, by scenario name."""
    ca: str = ""
    """For an https `url`: the PEM file (on the client and the server) of
    the CA whose certificate the service presents; the probe and curl trust
    it and nothing else."""

    @property
    def curl(self) -> str:
        """curl, trusting `ca` when one is set."""
        return f"curl --cacert {shlex.quote(self.ca)}" if self.ca else "curl"

    @property
    def probe_tls(self) -> str:
        """hitless-probe's TLS option for `url` (empty for http)."""
        return f"--ca={shlex.quote(self.ca)}" if self.ca else ""

    def upgrade_to(self, version: str) -> None:
        if self.upgrade is None:
            raise ScenarioFailed(f"this scenario upgrades to {version}, but Env has no upgrade callback")
        self.upgrade(version)

    def attempt_upgrade(self, version: str) -> Attempt:
        if self.attempt is None:
            raise ScenarioFailed(f"this scenario tries {version}, but Env has no attempt callback")
        return self.attempt(version)

    def broken_build(self, kind: str) -> str:
        if kind not in self.broken:
            raise ScenarioFailed(f"this scenario needs a broken build that {kind}; the platform has {self.broken}")
        return self.broken[kind]


def served(env: Env) -> ServiceInfo:
    """The running instance's /version, asked from the server itself (this
    starts the service if it was not running)."""
    out = env.server.succeed(f"{env.curl} -sS --fail --max-time 30 {env.server_url}/version")
    doc: dict[str, Any] = json.loads(out)
    return ServiceInfo(
        version=doc["version"],
        pid=int(doc.get("pid", 0)),
        socket_activated=bool(doc.get("socket_activated")),
        listeners=[
            Listener(name=x.get("name", ""), kind=x.get("kind", ""), address=x.get("address", ""))
            for x in doc.get("listeners", [])
        ],
    )


def unit_prop(machine: GuestMachine, unit: str, prop: str) -> str:
    return machine.succeed(f"systemctl show --property={prop} --value {unit}").strip()


def ensure_version(env: Env, version: str) -> ServiceInfo:
    """Make `version` the one serving (upgrading if needed) and return its
    /version."""
    info = served(env)
    if info.version != version:
        env.upgrade_to(version)
        info = served(env)
    if info.version != version:
        raise ScenarioFailed(f"wanted {version} running, /version says {info}")
    return info


def other_version(env: Env, version: str) -> str:
    return env.versions[1] if version == env.versions[0] else env.versions[0]


def unit_props(machine: GuestMachine, unit: str, *props: str) -> dict[str, str]:
    """Several properties of a unit in one call."""
    out = machine.succeed(f"systemctl show --property={','.join(props)} {unit}")
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {p: got.get(p, "") for p in props}


@dataclass
class SlotState:
    unit: str
    active_state: str
    """systemd's ActiveState: active, activating, deactivating, inactive, failed."""
    main_pid: int
    n_restarts: int


def slot_states(env: Env) -> dict[str, SlotState]:
    """Every slot's state, by unit name."""
    states = {}
    for unit in SLOTS:
        p = unit_props(env.server, unit, "ActiveState", "MainPID", "NRestarts")
        states[unit] = SlotState(unit, p["ActiveState"], int(p["MainPID"] or 0), int(p["NRestarts"] or 0))
    return states


def live_slot(env: Env) -> SlotState:
    """The slot whose process answers /version."""
    pid = served(env).pid
    for state in slot_states(env).values():
        if state.main_pid == pid:
            return state
    raise ScenarioFailed(f"no slot runs pid {pid}, which answers /version: {slot_states(env)}")


def wait_slot_inactive(env: Env, unit: str, timeout: float) -> float:
    """Wait until `unit` is inactive (its drain is over); seconds waited."""
    t0 = time.monotonic()
    while True:
        state = unit_props(env.server, unit, "ActiveState")["ActiveState"]
        if state in ("inactive", "failed"):
            if state == "failed":
                raise ScenarioFailed(f"{unit} failed while stopping")
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise ScenarioFailed(f"{unit} still {state} after {timeout:.0f}s")
        time.sleep(0.1)


def socket_invocation(env: Env) -> str:
    """hitless.socket's InvocationID: it changes only if the socket restarts."""
    return unit_props(env.server, SOCKET, "InvocationID")["InvocationID"]


def require_socket_untouched(env: Env, invocation: str) -> None:
    p = unit_props(env.server, SOCKET, "ActiveState", "InvocationID")
    if p["ActiveState"] != "active" or p["InvocationID"] != invocation:
        raise ScenarioFailed(f"{SOCKET} was stopped or restarted: {p} (was invocation {invocation})")


def require_no_failed_slot(env: Env) -> None:
    failed = [s.unit for s in slot_states(env).values() if s.active_state == "failed"]
    if failed:
        raise ScenarioFailed(f"left in failed state: {failed}")
