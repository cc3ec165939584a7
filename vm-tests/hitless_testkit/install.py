"""Putting hitless into a guest the way a package manager does: unit files
into the vendor unit directory, binaries into a store of versions, and an
upgrade that renames the new binary over the old one."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from .nspawn import Machine

UNIT_DIR = "/usr/lib/systemd/system"
"""Where packages put unit files (systemd.unit(5): the vendor directory)."""
STORE = "/usr/local/lib/hitless-versions"
"""Where the guest keeps every version's binary, as `<name>-<version>`."""
PROBE = "/usr/local/bin/hitless-probe"
HELPER = "/usr/libexec/hitless/hitless-slots"
"""Where packages put hitless-slots, which hitless.service runs."""
UNIT_FILES = ("hitless.socket", "hitless.service", "hitless@.service")

# Broken builds, by the way they are broken: each is installed as
# <store>/hitless-<name> like a version, and started the same way.
BROKEN_BUILDS = {
    # Exits before READY=1, as a build that cannot parse its flags would.
    "broken-exits": '#!/bin/sh\necho "hitless: this build is broken on purpose" >&2\nexit 1\n',
    # Never says READY=1: the slot's start times out (TimeoutStartSec=).
    "broken-hangs": "#!/bin/sh\nexec sleep 3600\n",
    # Passes its ready check, says READY=1, serves, then crashes (abort())
    # a second after its start; and again each time it is restarted.
    "broken-crashes": '#!/bin/sh\nexec {store}/hitless-{version} --simulate-fault crash-after=1s "$@"\n',
    # Answers every request with a 500, the ready check's too.
    "broken-answers-500": '#!/bin/sh\nexec {store}/hitless-{version} --simulate-fault answer-500 "$@"\n',
}
"""What Env.broken maps "exits", "hangs", "crashes" and "answers-500" to.
The last two are a working build run with the hidden --simulate-fault flag
(app/src/fault.rs)."""


def install_units(m: Machine, units_dir: Path, names: Iterable[str]) -> None:
    """Copy the unit files `names` from `units_dir` into UNIT_DIR (no
    daemon-reload: the caller does it once after everything is in place)."""
    for name in names:
        m.copy_from_host(units_dir / name, f"{UNIT_DIR}/{name}")


def copy_versions(m: Machine, binaries: Mapping[str, Path], name: str = "hitless", store: str = STORE) -> None:
    """Copy each version's binary to `<store>/<name>-<version>`."""
    for version, path in binaries.items():
        m.copy_from_host(path, f"{store}/{name}-{version}")


def install_probe(m: Machine, probe: Path) -> None:
    m.copy_from_host(probe, PROBE)


CLIENT_PROGRAMS = (
    "client_report.py",
    "requests_client.py",
    "aiohttp_client.py",
    "curl_client.py",
    "fetch_client.mjs",
    "idle_close_server.py",
)
"""The programs of vm-tests/clients that the clients scenario runs."""
GO_CLIENT = "hitless-go-client"


def install_clients(m: Machine, clients_dir: Path, go_client: Path, target: str) -> None:
    """The real-client programs (vm-tests/clients) and the built Go client
    into `target`, where the clients scenario expects them."""
    for name in CLIENT_PROGRAMS:
        m.copy_from_host(clients_dir / name, f"{target}/{name}")
    m.copy_from_host(go_client, f"{target}/{GO_CLIENT}")


def install_helper(m: Machine, units_dir: Path) -> None:
    """hitless-slots, where the units expect it."""
    m.copy_from_host(units_dir / "hitless-slots", HELPER)
    m.succeed(f"chmod 0755 {HELPER}")


def install_broken_builds(m: Machine, working_version: str, store: str = STORE) -> dict[str, str]:
    """Put BROKEN_BUILDS into the store (the crashing one runs
    `working_version`); return Env.broken's mapping."""
    for name, script in BROKEN_BUILDS.items():
        text = script.replace("{store}", store).replace("{version}", working_version)
        m.succeed(f"printf '%s' {shlex.quote(text)} > {store}/hitless-{name} && chmod 0755 {store}/hitless-{name}")
    return {name.removeprefix("broken-"): name for name in BROKEN_BUILDS}


def swap_binary(
    m: Machine, version: str, target: str = "/usr/bin/hitless", name: str = "hitless", store: str = STORE
) -> None:
    """Replace `target` with `<store>/<name>-<version>` the way a package
    manager does: write the new file under a temporary name beside it, then
    rename it over the old one. A running process keeps its inode, so it is
    undisturbed until it is restarted."""
    t = PurePosixPath(target)
    tmp = shlex.quote(str(t.with_name(f".{t.name}.new")))
    src = shlex.quote(f"{store}/{name}-{version}")
    m.succeed(f"install -m 0755 {src} {tmp} && mv -f {tmp} {shlex.quote(target)}")
