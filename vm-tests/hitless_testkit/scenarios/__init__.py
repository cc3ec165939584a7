"""The hitless test scenarios, written once for two drivers: the container
driver (hitless_testkit.nspawn: Debian + systemd-nspawn) and the NixOS test
driver (the package reaches it through extraPythonPackages).

A scenario only calls what both drivers' machine objects have (GuestMachine:
succeed, execute, require_unit_state, wait_for_unit) plus the callbacks the
platform provides in Env: `upgrade(version)` (container: rename the new
binary over /usr/bin/hitless, `systemctl reload hitless.service`; RPM:
`rpm -U`; NixOS: switch-to-configuration) and, for the broken builds,
`attempt(version)`.

From a NixOS testScript:

    from hitless_testkit import scenarios as sc

    env = sc.Env(server=server, client=client, upgrade=switch_to,
                 versions=["1.0.0", "2.0.0"], url="http://server:8080",
                 subtest=subtest, log=print)
    sc.activation_on_demand(env)
    sc.upgrade_under_load(env, rounds=10)
    sc.upgrade_with_slow_requests(env)
    print(sc.format_results(env.results))

Assumptions about the machines when a scenario starts: hitless.socket is
listening (on `port`), versions[0] or versions[1] is installed, and
`hitless-probe` and `curl` are on the client's PATH. Every scenario asserts
that no request failed in any client mode (except where a process is killed
or crashes: then only the requests it held may fail) and records its numbers
in env.results.

real_clients (the container tests' "clients") also needs the programs of
vm-tests/clients in CLIENT_DIR and the libraries they use (Node.js, Python
requests and aiohttp); the container tests install them.
"""

from __future__ import annotations

from collections.abc import Callable

from .activation import activation_on_demand
from .admin import admin_verbs
from .back_to_back import upgrades_back_to_back
from .bad_build import bad_build_rejected
from .clients import CLIENT_DIR, CLIENTS, TLS_CLIENTS, clients_refuse_other_ca, real_clients
from .crash_loop import crash_loop_survives
from .dead_peer import dead_h2_peer
from .env import (
    CONTROLLER,
    CONTROLLER_MAX_EXPOSURE,
    MAX_EXPOSURE,
    MODES,
    SLOTS,
    SLOTS_HELPER,
    SOCKET,
    Attempt,
    Env,
    GuestMachine,
    ScenarioFailed,
    served,
)
from .long_drain import reloads_behind_long_request
from .overlap import upgrade_with_slow_requests
from .pinned import pinned_after_failed_upgrade
from .records import Record
from .report import as_json, format_results
from .rotation import certificate_rotation
from .sigkill import sigkill_under_load
from .stalled_peers import stalled_peers
from .upgrade import upgrade_under_load
from .verbs import verbs_mid_flip

ALL: dict[str, Callable[[Env], Record]] = {
    "activation": activation_on_demand,
    "upgrade": upgrade_under_load,
    "overlap": upgrade_with_slow_requests,
    "back-to-back": upgrades_back_to_back,
    "bad-build-exits": lambda env: bad_build_rejected(env, "exits"),
    "bad-build-hangs": lambda env: bad_build_rejected(env, "hangs"),
    "dead-h2-peer": dead_h2_peer,
    "sigkill": sigkill_under_load,
    "crash-loop": crash_loop_survives,
    "admin": admin_verbs,
    "bad-build-answers-500": lambda env: bad_build_rejected(env, "answers-500"),
    "bad-build-crashes": lambda env: bad_build_rejected(env, "crashes"),
    "pinned": pinned_after_failed_upgrade,
    "verbs-mid-flip": verbs_mid_flip,
    "long-drain": reloads_behind_long_request,
    "stalled-peers": stalled_peers,
}
"""Every scenario by its short name, in the order the container tests run them."""

__all__ = [
    "ALL",
    "CLIENTS",
    "CLIENT_DIR",
    "CONTROLLER",
    "CONTROLLER_MAX_EXPOSURE",
    "MAX_EXPOSURE",
    "MODES",
    "SLOTS",
    "SLOTS_HELPER",
    "SOCKET",
    "TLS_CLIENTS",
    "Attempt",
    "Env",
    "GuestMachine",
    "ScenarioFailed",
    "activation_on_demand",
    "admin_verbs",
    "as_json",
    "bad_build_rejected",
    "certificate_rotation",
    "clients_refuse_other_ca",
    "crash_loop_survives",
    "dead_h2_peer",
    "format_results",
    "pinned_after_failed_upgrade",
    "real_clients",
    "reloads_behind_long_request",
    "served",
    "sigkill_under_load",
    "stalled_peers",
    "upgrade_under_load",
    "upgrade_with_slow_requests",
    "upgrades_back_to_back",
    "verbs_mid_flip",
]
