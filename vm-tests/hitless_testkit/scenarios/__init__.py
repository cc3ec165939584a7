"""The hitless test scenarios, written once for two drivers: the container
driver (hitless_testkit.nspawn: Debian + systemd-nspawn) and the NixOS test
driver (the package reaches it through extraPythonPackages).

A scenario only calls what both drivers' machine objects have (GuestMachine:
succeed, execute, require_unit_state, wait_for_unit) plus an
`upgrade(version)` callback that the platform provides (container: rename
the new binary over /usr/bin/hitless, `systemctl restart hitless.service`;
RPM: `rpm -U`; NixOS: switch-to-configuration).

From a NixOS testScript:

    from hitless_testkit import scenarios as sc

    env = sc.Env(server=server, client=client, upgrade=switch_to,
                 versions=["1.0.0", "2.0.0"], url="http://server:8080",
                 subtest=subtest, log=print)
    sc.activation_on_demand(env)
    sc.upgrade_under_load(env, rounds=10)
    sc.restart_with_slow_requests(env)
    sc.sigkill_under_load(env)
    print(sc.format_results(env.results))

Assumptions about the machines when a scenario starts: hitless.socket is
listening (on `port`), versions[0] or versions[1] is installed, and
`hitless-probe` and `curl` are on the client's PATH. Every scenario asserts
that no request failed in any client mode (except sigkill_under_load, where
only requests in flight may fail) and records its numbers in env.results.
"""

from __future__ import annotations

from collections.abc import Callable

from .activation import activation_on_demand
from .env import MAX_EXPOSURE, MODES, Env, GuestMachine, ScenarioFailed, served
from .records import Record
from .report import as_json, format_results
from .sigkill import sigkill_under_load
from .slow import restart_with_slow_requests
from .upgrade import upgrade_under_load

ALL: dict[str, Callable[[Env], Record]] = {
    "activation": activation_on_demand,
    "upgrade": upgrade_under_load,
    "slow": restart_with_slow_requests,
    "sigkill": sigkill_under_load,
}
"""Every scenario by its short name, in the order the container tests run them."""

__all__ = [
    "ALL",
    "MAX_EXPOSURE",
    "MODES",
    "Env",
    "GuestMachine",
    "ScenarioFailed",
    "activation_on_demand",
    "as_json",
    "format_results",
    "restart_with_slow_requests",
    "served",
    "sigkill_under_load",
    "upgrade_under_load",
]
