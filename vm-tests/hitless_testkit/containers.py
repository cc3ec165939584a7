"""Run the hitless scenarios in Debian containers with systemd as PID 1:
every test on Debian 12 (systemd 252), the slots' scenarios (SLOT_TESTS)
also on Debian 13 (systemd 257) and Debian 11 (systemd 247).

Normally started by vm-tests/run-container-tests, which builds what this
needs first. Each test gets a fresh ephemeral container, into which the unit
files and binaries are installed the way a package would; see
docs/container-tests.md.

    python3 -m hitless_testkit.containers --hitless 1.0.0=PATH --hitless 2.0.0=PATH \\
        --probe PATH --units DIR [--only TEST]...
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import scenarios as sc
from .errors import EXIT_CANNOT_RUN, EXIT_USAGE, CannotRun, Failure
from .install import (
    UNIT_DIR,
    UNIT_FILES,
    copy_versions,
    install_broken_builds,
    install_clients,
    install_helper,
    install_probe,
    install_units,
    swap_binary,
)
from .log import Interrupted, die, install_signal_handlers, log, set_tag
from .nspawn import Machine, preflight, subtest
from .outcomes import Outcomes
from .rootfs import ensure_rootfs
from .scenarios.backlog import backlog_cap_effect
from .scenarios.overlap import SLOW_MS
from .scenarios.records import NegativeControlResult, Record, UnitsResult
from .test_ca import TestCa

JOURNAL_UNITS = (sc.SOCKET, sc.CONTROLLER, *sc.SLOTS)
NEGATIVE_CONTROLS = (
    "control-broken-drain",
    "control-stop-then-start",
    "control-start-limit",
    "control-no-probation",
    "control-no-ready-check",
    "control-unpinned",
    "control-stop-skips-slots",
    "control-two-slots",
    "control-stop-timeout",
)
TESTS = ("units", *sc.ALL, "clients", "backlog", "tls", "tls-clients", *NEGATIVE_CONTROLS)
SUITES = {
    "bookworm": "Debian 12, systemd 252",
    "trixie": "Debian 13, systemd 257",
    "bullseye": "Debian 11, systemd 247",
}
"""The Debian releases the tests can boot; every test runs on the first one
given (--suite), the SLOT_TESTS on the others. One build of the binaries
runs on all of them: scripts/build-versions links against glibc 2.17."""
DEFAULT_SUITES = ("bookworm", "trixie", "bullseye")
SLOT_TESTS = ("bad-build-answers-500", "bad-build-crashes", "pinned", "verbs-mid-flip", "long-drain", "stalled-peers")
"""What the other suites run by default: the scenarios of the slots'
probation, pinned builds, verbs in the middle of a flip, and reloads behind
a long drain (their negative controls run on the first suite)."""
TLS_DROP_IN = "hitless-tls.conf.example"
"""The commented drop-in of units/ that serves HTTPS from credentials."""
TLS_FILES = "/etc/hitless/tls"
"""Where that drop-in's LoadCredential= reads the certificate and key."""
TEST_CA = "/etc/hitless/test-ca"
"""The test CA's files in the container."""
OTHER_CA = "/etc/hitless/other-ca.pem"
"""A CA that signed nothing the service presents (for the negative controls)."""
STOP_THEN_START = """#!/bin/sh
# An upgrade that is not an overlap: stop the serving slot, then start the other.
for live in blue green; do
    [ "$(systemctl show -P ActiveState hitless@$live.service)" = active ] && break
done
new=blue; [ "$live" = blue ] && new=green
systemctl stop hitless@$live.service
pin=/var/lib/hitless-slots/$new
mkdir -p -m 0755 $pin && cp /usr/bin/hitless $pin/.new && chmod 0755 $pin/.new && mv -f $pin/.new $pin/hitless
systemctl start hitless@$new.service
"""
NO_PROBATION = "[Service]\nEnvironment=HITLESS_PROBATION_SEC=0\n"
"""A controller drop-in that turns the probation window off."""


class Runner:
    def __init__(self, args: argparse.Namespace, rootfs: dict[str, Path]) -> None:
        self.args = args
        self.binaries: dict[str, Path] = {}
        for spec in args.hitless:
            v, _, path = spec.partition("=")
            self.binaries[v] = Path(path)
        self.versions = list(self.binaries)
        self.log_dir = Path(args.log_dir) / time.strftime("%Y%m%d-%H%M%S")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.suites = rootfs
        self.suite = next(iter(rootfs))
        self.rootfs = rootfs[self.suite]
        self.outcomes = Outcomes("container tests")
        self.results: dict[str, Record] = {}
        self.broken: dict[str, str] = {}

    # --- a container with hitless installed like a package would ----------

    def setup(self, m: Machine) -> None:
        install_probe(m, Path(self.args.probe))
        copy_versions(m, self.binaries)
        self.broken = install_broken_builds(m, self.versions[0])
        install_units(m, Path(self.args.units), UNIT_FILES)
        install_helper(m, Path(self.args.units))
        swap_binary(m, self.versions[0])
        m.succeed("systemctl daemon-reload", "systemctl enable --now hitless.socket")
        m.wait_for_unit("hitless.socket")

    def env(self, m: Machine) -> sc.Env:
        """Upgrades the way the README says: install the new binary, then
        `systemctl reload hitless.service`."""

        def attempt(version: str) -> sc.Attempt:
            swap_binary(m, version)
            t0 = time.monotonic()
            rc, out = m.execute(f"systemctl reload {sc.CONTROLLER} 2>&1")
            took = time.monotonic() - t0
            # hitless-slots' own last line: what the flip did.
            _, said = m.execute(f"journalctl --sync; journalctl -u {sc.CONTROLLER} -t hitless-slots -n 1 -o cat")
            return sc.Attempt(ok=rc == 0, seconds=took, output=(out + said).strip())

        def upgrade(version: str) -> None:
            got = attempt(version)
            if not got.ok:
                raise sc.ScenarioFailed(f"systemctl reload {sc.CONTROLLER} to {version} failed: {got.output}")

        return sc.Env(
            server=m,
            client=m,
            upgrade=upgrade,
            attempt=attempt,
            broken=self.broken,
            versions=self.versions,
            subtest=subtest,
            log=log,
            concurrency=self.args.concurrency,
            rate=self.args.rate,
            results=self.results,
        )

    def in_container(self, name: str, body: Callable[[Machine], object]) -> None:
        """Run body(machine) in a fresh container; on failure print the
        journal of the hitless units (and the probes) before tearing down."""

        def fn() -> None:
            first = self.suite == next(iter(self.suites))
            label = name if first else f"{name}-{self.suite}"
            with Machine(self.rootfs, log_dir=self.log_dir, name=f"hitless-{label}") as m:
                try:
                    self.setup(m)
                    body(m)
                except Exception:
                    m.dump_journal(*JOURNAL_UNITS, lines=300)
                    _, probes = m.execute(
                        "systemctl list-units --all --plain --no-legend 'hitless-probe-*' 'hitless-client-*'"
                        " | awk '{print $1}'"
                    )
                    for unit in probes.split():
                        m.dump_journal(unit, lines=50)
                    raise

        first = self.suite == next(iter(self.suites))
        self.outcomes.run(name if first else f"{name} ({SUITES[self.suite]})", fn)

    # --- tests -------------------------------------------------------------

    def security(self, m: Machine, unit_file: str, bound: float) -> UnitsResult:
        """`systemd-analyze security --offline=true` of a unit file of ours
        (a template is scored as an instance), and of the unit as loaded in
        the container."""
        units = Path(self.args.units)
        out = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--no-pager", str(units / unit_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        text = out.stdout + out.stderr
        match = re.search(r"Overall exposure level for (\S+): (\d+\.\d+) (\S+)", text)
        if not match:
            raise sc.ScenarioFailed(f"no exposure level in systemd-analyze output:\n{text}")
        score = float(match.group(2))
        for line in text.splitlines():
            if line.startswith("✗"):
                log(f"security {unit_file}: {' '.join(line.split())}")
        loaded = unit_file.replace("@.", "@blue.")
        online = m.succeed(f"systemd-analyze security --no-pager {loaded} | tail -n 1").strip()
        log(
            f"SECURITY SCORE (systemd-analyze security --offline=true): {unit_file} {score} {match.group(3)} "
            f"(bound {bound}); as loaded in the container: {online}"
        )
        if score > bound:
            raise sc.ScenarioFailed(f"{unit_file}: exposure {score} > {bound}")
        return UnitsResult(unit=unit_file, exposure=score, rating=match.group(3), in_container=online)

    def test_units(self, m: Machine) -> None:
        with subtest("unit files: systemd-analyze security and verify"):
            # Started once, so that the slot's pinned binary exists for verify.
            sc.served(self.env(m))
            self.results["units-slot"] = self.security(m, "hitless@.service", self.args.max_exposure)
            self.results["units-controller"] = self.security(m, sc.CONTROLLER, sc.CONTROLLER_MAX_EXPOSURE)
            # The template as its instance hitless@blue: verify checks that
            # ExecStart= exists, and a slot's pinned binary exists only once
            # that slot has started.
            files = " ".join(f"{UNIT_DIR}/{u}" for u in UNIT_FILES if u != "hitless@.service")
            verify = m.succeed(f"systemd-analyze verify {files} {UNIT_DIR}/hitless@blue.service 2>&1")
            if verify.strip():
                raise sc.ScenarioFailed(f"systemd-analyze verify is not silent:\n{verify}")
            log("systemd-analyze verify: no findings")

        with subtest("a slot runs hardened and socket-activated, and logs to the journal natively"):
            env = self.env(m)
            info = sc.served(env)
            if not info.socket_activated or info.listeners[0].name != sc.SOCKET:
                raise sc.ScenarioFailed(f"not socket-activated as {sc.SOCKET}: {info}")
            log(f"running as {m.succeed('ps -o user=,pid=,args= -C hitless').strip()}")
            # stderr is the journal (JOURNAL_STREAM), so hitless logs natively:
            # structured records (_TRANSPORT=journal, with TARGET= and CODE_*),
            # not captured lines. tracing-journald gives INFO priority 5.
            m.succeed(
                "journalctl --sync",
                "journalctl -u 'hitless@*' _TRANSPORT=journal PRIORITY=5 TARGET=hitless::server"
                " -o cat | grep 'Serving on'",
            )
            log("hitless logs to the journal natively (_TRANSPORT=journal, TARGET=, PRIORITY=)")

        with subtest("the socket serves IPv4 and IPv6 whatever net.ipv6.bindv6only says"):
            # BindIPv6Only=both; with the host default (bindv6only=1 here)
            # IPv4 clients would be refused.
            m.succeed(
                f"systemctl stop {sc.CONTROLLER} {sc.SOCKET}",
                "sysctl -q -w net.ipv6.bindv6only=1",
                f"systemctl start {sc.SOCKET}",
            )
            for url in ("http://127.0.0.1:8080/healthz", "http://[::1]:8080/healthz"):
                m.succeed(f"curl -sS --fail --max-time 30 {url}")
            m.succeed("sysctl -q -w net.ipv6.bindv6only=0")
            log("IPv4 and IPv6 served with net.ipv6.bindv6only=1")

        with subtest("the port changes with a drop-in on the socket, as the README says"):
            m.succeed(
                "mkdir -p /etc/systemd/system/hitless.socket.d",
                "printf '[Socket]\\nListenStream=\\nListenStream=127.0.0.1:9090\\n'"
                " > /etc/systemd/system/hitless.socket.d/listen.conf",
                "systemctl daemon-reload",
                f"systemctl restart {sc.SOCKET}",
            )
            m.wait_for_open_port(9090)
            m.wait_for_closed_port(8080, timeout=10)
            got = json.loads(m.succeed("curl -sS --fail http://127.0.0.1:9090/version"))
            if got["listeners"][0]["address"] != "127.0.0.1:9090":
                raise sc.ScenarioFailed(f"unexpected listeners: {got['listeners']}")
            m.succeed(
                "rm -r /etc/systemd/system/hitless.socket.d",
                "systemctl daemon-reload",
                f"systemctl restart {sc.SOCKET}",
            )
            m.wait_for_open_port(8080)

    def drop_in(self, m: Machine, unit: str, text: str) -> None:
        m.succeed(
            f"mkdir -p /etc/systemd/system/{unit}.d",
            f"printf '%s' {shlex.quote(text)} > /etc/systemd/system/{unit}.d/control.conf",
            "systemctl daemon-reload",
        )

    def control(self, name: str, m: Machine, scenario: Callable[[sc.Env], object], how: str, because: str = "") -> None:
        """Run `scenario` with a defect planted (`how` describes it); it must
        fail, with `because` in its message; record the control."""
        env = self.env(m)
        env.results = {}
        try:
            scenario(env)
        except sc.ScenarioFailed as e:
            first = [line for line in str(e).splitlines()[:4] if line.strip()]
            if because not in str(e):
                raise sc.ScenarioFailed(f"{name}: the scenario failed, but not because {because!r}: {first}") from e
            log(f"{name}: the scenario failed, as it must: " + " | ".join(first))
            self.results[name] = NegativeControlResult(detected=True, failed_requests=e.failed_requests, reason=first)
            return
        raise sc.ScenarioFailed(f"{name}: the scenario PASSED with {how}: it cannot see that defect")

    def control_broken_drain(self, m: Machine) -> None:
        """The stop signal becomes SIGKILL, as if hitless exited at once on
        SIGTERM: the overlap scenario must lose requests."""
        with subtest("negative control: with a broken drain the overlap scenario must fail"):
            self.drop_in(m, "hitless@.service", "[Service]\nKillSignal=SIGKILL\n")
            self.control("control-broken-drain", m, sc.upgrade_with_slow_requests, "a drain that kills")
            got = self.results["control-broken-drain"]
            assert isinstance(got, NegativeControlResult)
            if got.failed_requests == 0:
                raise sc.ScenarioFailed("control-broken-drain: the scenario failed, but not because requests failed")

    def control_stop_then_start(self, m: Machine) -> None:
        """A reload that stops the old slot first and then starts the new one
        (what `systemctl restart` does): the overlap scenario must see new
        requests wait for the old version's slow requests."""
        with subtest("negative control: a stop-then-start upgrade must fail the overlap scenario"):
            script = "/usr/local/sbin/stop-then-start"
            m.succeed(
                f"printf '%s' {shlex.quote(STOP_THEN_START)} > {script}",
                f"chmod 0755 {script}",
            )
            self.drop_in(m, sc.CONTROLLER, f"[Service]\nExecReload=\nExecReload={script}\n")
            self.control(
                "control-stop-then-start",
                m,
                sc.upgrade_with_slow_requests,
                "stop-then-start upgrades",
                "over the bound",
            )

    def control_start_limit(self, m: Machine) -> None:
        """systemd's default start limit on the slots: the crash loop
        scenario must see hitless.socket fail. Then the documented recovery
        (a good binary, `systemctl start hitless.socket`) must work."""
        with subtest("negative control: with the default start limit a crash loop fails the socket"):
            self.drop_in(m, sc.CONTROLLER, NO_PROBATION)
            self.drop_in(m, "hitless@.service", "[Unit]\nStartLimitIntervalSec=10s\nStartLimitBurst=5\n")
            self.control(
                "control-start-limit", m, sc.crash_loop_survives, "the default start limit", "was not always active"
            )
        with subtest("recovery from a failed socket: a good build, then systemctl start hitless.socket"):
            state = m.get_unit_property(sc.SOCKET, "ActiveState")
            log(f"{sc.SOCKET} is {state} (Result={m.get_unit_property(sc.SOCKET, 'Result')})")
            m.succeed(f"systemctl reset-failed; systemctl stop {sc.CONTROLLER}")
            swap_binary(m, self.versions[0])
            m.succeed(f"systemctl start {sc.SOCKET}")
            info = sc.served(self.env(m))
            if info.version != self.versions[0]:
                raise sc.ScenarioFailed(f"after the recovery {info.version} serves")
            log(f"recovered: {info.version} serves again")

    def crash_loop(self, m: Machine) -> None:
        """A crash loop that the probation window did not catch (a build
        that crashes only later): here the window is turned off."""
        self.drop_in(m, sc.CONTROLLER, NO_PROBATION)
        sc.crash_loop_survives(self.env(m))

    def control_no_probation(self, m: Machine) -> None:
        with subtest("negative control: without the probation window a build that crashes after READY=1 takes over"):
            self.drop_in(m, sc.CONTROLLER, NO_PROBATION)
            self.control("control-no-probation", m, sc.ALL["bad-build-crashes"], "no probation", "reported success")

    def control_no_ready_check(self, m: Machine) -> None:
        with subtest("negative control: without the ready check a build that answers 500 takes over"):
            self.drop_in(
                m,
                "hitless@.service",
                "[Service]\nExecStart=\nExecStart=/var/lib/hitless-slots/%i/hitless --no-ready-check\n",
            )
            self.control(
                "control-no-ready-check", m, sc.ALL["bad-build-answers-500"], "no ready check", "reported success"
            )

    def control_unpinned(self, m: Machine) -> None:
        with subtest("negative control: a slot that runs the binary on disk comes back broken after SIGKILL"):
            self.drop_in(m, "hitless@.service", "[Service]\nExecStart=\nExecStart=/usr/bin/hitless\n")
            self.control("control-unpinned", m, sc.pinned_after_failed_upgrade, "unpinned slots", "did not come back")

    def control_stop_skips_slots(self, m: Machine) -> None:
        with subtest("negative control: slots stopped by ExecStop= stay up when a stop interrupts a reload"):
            self.drop_in(m, sc.CONTROLLER, f"[Service]\nExecStopPost=\nExecStop={sc.SLOTS_HELPER} stop\n")
            self.control(
                "control-stop-skips-slots", m, sc.verbs_mid_flip, "ExecStop= instead of ExecStopPost=", "after a stop"
            )

    def control_two_slots(self, m: Machine) -> None:
        with subtest("negative control: with two slots the second upgrade waits for the first one's drain"):
            self.drop_in(m, sc.CONTROLLER, '[Service]\nEnvironment="HITLESS_SLOTS=blue green"\n')
            self.control("control-two-slots", m, sc.reloads_behind_long_request, "two slots", "waited for its drain")

    def control_stop_timeout(self, m: Machine) -> None:
        with subtest("negative control: a stop timeout shorter than the drain leaves the stalled slot failed"):
            # systemd kills the slot before its drain deadline ends the
            # peers' connections: what a slot left failed by stalled peers
            # looks like.
            self.drop_in(m, "hitless@.service", "[Service]\nTimeoutStopSec=5s\n")
            self.control("control-stop-timeout", m, sc.stalled_peers, "TimeoutStopSec=5s", "failed while stopping")

    def test_clients(self, m: Machine) -> None:
        """Real client libraries through upgrades (container only: the
        Debian root file system has them)."""
        if not self.args.clients or not self.args.go_client:
            raise CannotRun("the clients test needs --clients and --go-client")
        install_clients(m, Path(self.args.clients), Path(self.args.go_client), sc.CLIENT_DIR)
        sc.real_clients(self.env(m), rounds=self.args.rounds)

    def install_tls_pair(self, m: Machine, name: str) -> None:
        """Put certificate `name` and its key (`name` "mismatch": the third
        certificate with the second's key) where the drop-in's
        LoadCredential= reads them, as an admin would: write, then rename."""
        cert, key = (
            (f"{TEST_CA}/server-3.pem", f"{TEST_CA}/server-2.key")
            if name == "mismatch"
            else (
                f"{TEST_CA}/{name}.pem",
                f"{TEST_CA}/{name}.key",
            )
        )
        m.succeed(
            f"mkdir -p {TLS_FILES}",
            f"install -m 0644 {cert} {TLS_FILES}/.cert.pem && mv {TLS_FILES}/.cert.pem {TLS_FILES}/cert.pem",
            f"install -m 0600 {key} {TLS_FILES}/.key.pem && mv {TLS_FILES}/.key.pem {TLS_FILES}/key.pem",
        )

    def tls_env(self, m: Machine) -> sc.Env:
        """Serve HTTPS as the units' example drop-in does (certificate and key
        as credentials), with certificates of a test CA made now; the Env
        for it, with its own results."""
        with subtest("HTTPS with the certificate and key as credentials (the units' example drop-in)"):
            ca = TestCa(self.log_dir / "tls-ca")
            for name in ("server-1", "server-2", "server-3"):
                ca.issue(name)
            other = TestCa(self.log_dir / "tls-other-ca")
            m.copy_from_host(ca.dir, TEST_CA)
            m.copy_from_host(other.cert, OTHER_CA)
            self.install_tls_pair(m, "server-1")
            example = (Path(self.args.units) / TLS_DROP_IN).read_text()
            # The example with its directives uncommented, nothing else.
            drop_in = "".join(
                line[1:]
                for line in example.splitlines(keepends=True)
                if re.match(r"#(\[Service\]|LoadCredential=|ExecStart=)", line)
            )
            log(f"drop-in hitless@.service.d/tls.conf:\n{drop_in.rstrip()}")
            m.succeed(
                "mkdir -p /etc/systemd/system/hitless@.service.d",
                f"printf '%s' {shlex.quote(drop_in)} > /etc/systemd/system/hitless@.service.d/tls.conf",
                "systemctl daemon-reload",
            )
            env = self.env(m)
            env.url = env.server_url = "https://127.0.0.1:8080"
            env.ca = f"{TEST_CA}/ca.pem"
            env.results = {}
            info = sc.served(env)
            m.fail("curl -sS --fail --max-time 10 http://127.0.0.1:8080/healthz")
            log(f"HTTPS served by {info.version} (pid {info.pid}); cleartext refused")
        return env

    def keep_tls_results(self, env: sc.Env) -> None:
        for name, record in env.results.items():
            self.results[f"tls-{name}"] = record

    def test_tls(self, m: Machine) -> None:
        """The upgrade, overlap, bad-build and dead-peer scenarios over HTTPS
        (HTTP/1.1 and HTTP/2 by ALPN), then certificate rotation."""
        env = self.tls_env(m)
        with subtest("negative control: the probe trusts only the test CA"):
            rc, out = m.execute(
                f"hitless-probe --url={env.url}/ --ca={OTHER_CA} --duration=1s --rate=20 --concurrency=1"
            )
            if rc == 0 or "invalid peer certificate" not in out:
                raise sc.ScenarioFailed(f"the probe passed against a certificate it must not trust:\n{out}")
            log("the probe refused a certificate of another CA, as it must")
        try:
            sc.upgrade_under_load(env, rounds=self.args.rounds)
            sc.upgrade_with_slow_requests(env, slow_ms=self.args.slow_ms)
            sc.bad_build_rejected(env, "exits")
            sc.dead_h2_peer(env)
            sc.certificate_rotation(env, lambda name: self.install_tls_pair(m, name), new="server-2", broken="mismatch")
        finally:
            self.keep_tls_results(env)

    def test_tls_clients(self, m: Machine) -> None:
        """Real client libraries over HTTPS through upgrades."""
        if not self.args.clients or not self.args.go_client:
            raise CannotRun("the tls-clients test needs --clients and --go-client")
        install_clients(m, Path(self.args.clients), Path(self.args.go_client), sc.CLIENT_DIR)
        env = self.tls_env(m)
        try:
            sc.clients_refuse_other_ca(env, OTHER_CA, sc.CLIENT_DIR, sc.TLS_CLIENTS)
            sc.real_clients(env, rounds=self.args.rounds, clients=sc.TLS_CLIENTS, checks=False)
        finally:
            self.keep_tls_results(env)

    def scenario(self, fn: Callable[[sc.Env], object], m: Machine) -> None:
        fn(self.env(m))

    def main(self) -> int:
        log(f"root file systems: {self.suites}; logs: {self.log_dir}")
        a = self.args
        bodies: dict[str, Callable[[Machine], object]] = {
            "units": self.test_units,
            **{name: functools.partial(self.scenario, fn) for name, fn in sc.ALL.items()},
            "upgrade": lambda m: sc.upgrade_under_load(self.env(m), rounds=a.rounds),
            "overlap": lambda m: sc.upgrade_with_slow_requests(self.env(m), slow_ms=a.slow_ms),
            "clients": self.test_clients,
            # Changes sysctls of the guest: container-only.
            "backlog": lambda m: backlog_cap_effect(self.env(m)),
            "tls": self.test_tls,
            "tls-clients": self.test_tls_clients,
            "control-broken-drain": self.control_broken_drain,
            "control-stop-then-start": self.control_stop_then_start,
            "control-start-limit": self.control_start_limit,
            "crash-loop": self.crash_loop,
            "control-no-probation": self.control_no_probation,
            "control-no-ready-check": self.control_no_ready_check,
            "control-unpinned": self.control_unpinned,
            "control-stop-skips-slots": self.control_stop_skips_slots,
            "control-two-slots": self.control_two_slots,
            "control-stop-timeout": self.control_stop_timeout,
        }
        everything: dict[str, Record] = {}
        for i, (suite, rootfs) in enumerate(self.suites.items()):
            self.suite, self.rootfs, self.results = suite, rootfs, {}
            for name in a.only or (TESTS if i == 0 else SLOT_TESTS):
                self.in_container(name, bodies[name])
            everything.update({k if i == 0 else f"{k} ({suite})": v for k, v in self.results.items()})

        results_path = self.log_dir / "results.json"
        results_path.write_text(sc.as_json(everything))
        print(f"\n==== measured (also in {results_path})")
        print(sc.format_results(everything))
        return self.outcomes.summary()


def parser(wrapper: bool = False) -> argparse.ArgumentParser:
    """The options; `wrapper`: as vm-tests/run-container-tests offers them,
    which passes the binaries and directories itself."""
    p = argparse.ArgumentParser(
        prog="vm-tests/run-container-tests", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if not wrapper:
        p.add_argument(
            "--hitless",
            action="append",
            required=True,
            metavar="VERSION=PATH",
            help="a hitless binary and the version it reports; the first is installed first (twice)",
        )
        p.add_argument("--probe", required=True, help="hitless-probe binary")
        p.add_argument("--units", required=True, help="the units/ directory: unit files and hitless-slots")
        p.add_argument("--clients", help="vm-tests/clients: the real-client programs (for the clients test)")
        p.add_argument("--go-client", help="the built Go client of vm-tests/clients/go (for the clients test)")
    p.add_argument("--only", action="append", metavar="TEST", choices=TESTS, help="run only these: " + ", ".join(TESTS))
    p.add_argument(
        "--suite",
        action="append",
        choices=SUITES,
        help="Debian releases to boot, in order: every test (or --only) on the first, the slots' scenarios "
        f"({', '.join(SLOT_TESTS)}) or --only on the others (default: {' '.join(DEFAULT_SUITES)})",
    )
    p.add_argument("--rounds", type=int, default=10, help="upgrades in the upgrade and clients scenarios (default 10)")
    p.add_argument(
        "--slow-ms",
        type=int,
        default=SLOW_MS,
        help="duration of the overlap scenario's slow requests (default %(default)s: longer than an upgrade)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="probe workers per client mode (default 8)")
    p.add_argument("--rate", type=int, default=300, help="requests/s per client mode (default 300)")
    p.add_argument(
        "--max-exposure",
        type=float,
        default=sc.MAX_EXPOSURE,
        help="highest acceptable security score (default %(default)s)",
    )
    p.add_argument("--log-dir", default="/tmp/hitless-container-tests", help="where logs and results go")
    return p


def main(argv: list[str] | None = None) -> int:
    set_tag("vmtest")
    if "--help-wrapper" in (sys.argv[1:] if argv is None else argv):
        parser(wrapper=True).print_help()
        return 0
    args = parser().parse_args(argv)
    if len(args.hitless) != 2:
        die("run-container-tests: give exactly two --hitless VERSION=PATH")
        return EXIT_USAGE
    install_signal_handlers()
    try:
        problems = preflight()
        missing = [
            p for p in [args.probe, args.units, *(h.partition("=")[2] for h in args.hitless)] if not Path(p).exists()
        ]
        if missing:
            problems.append("not found: " + ", ".join(missing))
        if problems:
            raise CannotRun("; ".join(problems))
        rootfs = {suite: ensure_rootfs(suite=suite) for suite in args.suite or DEFAULT_SUITES}
        return Runner(args, rootfs).main()
    except CannotRun as e:
        die(f"container tests: cannot run: {e}")
        return EXIT_CANNOT_RUN
    except Failure as e:
        die(f"container tests: {e}")
        return 1
    except Interrupted as e:
        log(f"interrupted ({e}); containers were torn down")
        return e.exit_status


if __name__ == "__main__":
    sys.exit(main())
