"""What every scenario gets: the machines, the platform's way to upgrade,
the load parameters, and where to record the numbers.

A scenario only calls what both drivers' machine objects have (GuestMachine:
the container driver's nspawn.Machine and the NixOS test driver's Machine).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .records import Listener, Record, ServiceInfo

MODES = ("new-conn", "keep-alive", "h2")
"""The probe's client modes: HTTP/1.1 with a new connection per request,
HTTP/1.1 keep-alive, cleartext HTTP/2 (RFC 9113 section 3.3, prior knowledge)."""

MAX_EXPOSURE = 1.0
"""Highest `systemd-analyze security` exposure hitless.service may score; the
container tests and the NixOS VM test enforce the same bound."""


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
class Env:
    server: GuestMachine
    """Machine running hitless.socket / hitless.service."""
    client: GuestMachine
    """Machine running the probe (may be the server itself)."""
    upgrade: Callable[[str], None] | None = None
    """Make `version` the running one, the platform's way (replace the
    binary, restart the service). Returns when the restart is done. Only
    the scenarios that upgrade need it."""
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

    def upgrade_to(self, version: str) -> None:
        if self.upgrade is None:
            raise ScenarioFailed(f"this scenario upgrades to {version}, but Env has no upgrade callback")
        self.upgrade(version)


def served(env: Env) -> ServiceInfo:
    """The running instance's /version, asked from the server itself (this
    starts the service if it was not running)."""
    doc: dict[str, Any] = json.loads(env.server.succeed(f"curl -sS --fail --max-time 30 {env.server_url}/version"))
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
