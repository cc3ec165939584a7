"""Run the hitless scenarios in Debian 12 containers with systemd as PID 1.

Normally started by vm-tests/run-container-tests, which builds what this
needs first. Each test gets a fresh ephemeral container, into which the unit
files and binaries are installed the way a package would; see
docs/container-tests.md.

    python3 -m hitless_testkit.containers --hitless 1.0.0=PATH --hitless 2.0.0=PATH \\
        --probe PATH --units DIR [--only TEST]...
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import scenarios as sc
from .errors import EXIT_CANNOT_RUN, EXIT_USAGE, CannotRun, Failure
from .install import UNIT_DIR, copy_versions, install_probe, install_units, swap_binary
from .log import Interrupted, die, install_signal_handlers, log, set_tag
from .nspawn import Machine, preflight, subtest
from .outcomes import Outcomes
from .rootfs import ensure_rootfs
from .scenarios.records import NegativeControlResult, Record, UnitsResult

HITLESS_UNITS = ("hitless.socket", "hitless.service")
TESTS = ("units", *sc.ALL, "negative-control")


class Runner:
    def __init__(self, args: argparse.Namespace, rootfs: Path) -> None:
        self.args = args
        self.binaries: dict[str, Path] = {}
        for spec in args.hitless:
            v, _, path = spec.partition("=")
            self.binaries[v] = Path(path)
        self.versions = list(self.binaries)
        self.log_dir = Path(args.log_dir) / time.strftime("%Y%m%d-%H%M%S")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.rootfs = rootfs
        self.outcomes = Outcomes("container tests")
        self.results: dict[str, Record] = {}

    # --- a container with hitless installed like a package would ----------

    def setup(self, m: Machine) -> None:
        install_probe(m, Path(self.args.probe))
        copy_versions(m, self.binaries)
        install_units(m, Path(self.args.units), HITLESS_UNITS)
        swap_binary(m, self.versions[0])
        m.succeed("systemctl daemon-reload", "systemctl enable --now hitless.socket")
        m.wait_for_unit("hitless.socket")

    def env(self, m: Machine) -> sc.Env:
        def upgrade(version: str) -> None:
            swap_binary(m, version)
            m.succeed("systemctl restart hitless.service")

        return sc.Env(
            server=m,
            client=m,
            upgrade=upgrade,
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
            with Machine(self.rootfs, log_dir=self.log_dir, name=f"hitless-{name}") as m:
                try:
                    self.setup(m)
                    body(m)
                except Exception:
                    m.dump_journal(*HITLESS_UNITS, lines=300)
                    _, probes = m.execute(
                        "systemctl list-units --all --plain --no-legend 'hitless-probe-*' | awk '{print $1}'"
                    )
                    for unit in probes.split():
                        m.dump_journal(unit, lines=50)
                    raise

        self.outcomes.run(name, fn)

    # --- tests -------------------------------------------------------------

    def test_units(self, m: Machine) -> None:
        with subtest("unit files: systemd-analyze security and verify"):
            units = Path(self.args.units)
            out = subprocess.run(
                ["systemd-analyze", "security", "--offline=true", "--no-pager", str(units / "hitless.service")],
                capture_output=True,
                text=True,
                check=False,
            )
            text = out.stdout + out.stderr
            match = re.search(r"Overall exposure level for hitless\.service: (\d+\.\d+) (\S+)", text)
            if not match:
                raise sc.ScenarioFailed(f"no exposure level in systemd-analyze output:\n{text}")
            score = float(match.group(1))
            for line in text.splitlines():
                if line.startswith("✗"):
                    log(f"security: {' '.join(line.split())}")
            log(
                f"SECURITY SCORE (systemd-analyze security --offline=true): hitless.service "
                f"{score} {match.group(2)} (threshold {self.args.max_exposure})"
            )
            online = m.succeed("systemd-analyze security --no-pager hitless.service | tail -n 1").strip()
            log(f"security, as loaded by systemd in the container: {online}")
            self.results["units"] = UnitsResult(exposure=score, rating=match.group(2), in_container=online)
            if score > self.args.max_exposure:
                raise sc.ScenarioFailed(f"exposure {score} > {self.args.max_exposure}")
            verify = m.succeed(f"systemd-analyze verify {UNIT_DIR}/hitless.socket {UNIT_DIR}/hitless.service 2>&1")
            if verify.strip():
                raise sc.ScenarioFailed(f"systemd-analyze verify is not silent:\n{verify}")
            log("systemd-analyze verify: no findings")

        with subtest("the service runs hardened and socket-activated"):
            info = sc.served(self.env(m))
            if not info.socket_activated or info.listeners[0].name != "hitless.socket":
                raise sc.ScenarioFailed(f"not socket-activated as hitless.socket: {info}")
            props = m.get_unit_info("hitless.service")
            log(
                f"running as {m.succeed('ps -o user=,pid=,args= -C hitless').strip()}; "
                f"NRestarts={props.get('NRestarts')}"
            )
            # stderr is the journal (JOURNAL_STREAM), so hitless logs natively:
            # structured records (_TRANSPORT=journal, with TARGET= and CODE_*),
            # not captured lines. tracing-journald gives INFO priority 5.
            m.succeed(
                "journalctl --sync",
                "journalctl -u hitless.service _TRANSPORT=journal PRIORITY=5 TARGET=hitless::server"
                " -o cat | grep 'Serving on'",
            )
            log("hitless logs to the journal natively (_TRANSPORT=journal, TARGET=, PRIORITY=)")
            m.succeed("systemctl stop hitless.service")

        with subtest("the port changes with a drop-in on the socket"):
            m.succeed(
                "mkdir -p /etc/systemd/system/hitless.socket.d",
                "printf '[Socket]\\nListenStream=\\nListenStream=127.0.0.1:9090\\n'"
                " > /etc/systemd/system/hitless.socket.d/port.conf",
                "systemctl daemon-reload",
                "systemctl restart hitless.socket",
            )
            m.wait_for_open_port(9090)
            m.wait_for_closed_port(8080, timeout=10)
            got = json.loads(m.succeed("curl -sS --fail http://127.0.0.1:9090/version"))
            if got["listeners"][0]["address"] != "127.0.0.1:9090":
                raise sc.ScenarioFailed(f"unexpected listeners: {got['listeners']}")
            m.succeed(
                "rm -r /etc/systemd/system/hitless.socket.d",
                "systemctl daemon-reload",
                "systemctl stop hitless.service",
                "systemctl restart hitless.socket",
            )
            m.wait_for_open_port(8080)

    def negative_control(self, m: Machine) -> None:
        """Break the drain from outside (the stop signal becomes SIGKILL, as
        if the service exited at once on SIGTERM) and check that the slow
        request scenario catches it."""
        with subtest("negative control: with a broken drain the slow-request scenario must fail"):
            m.succeed(
                "mkdir -p /etc/systemd/system/hitless.service.d",
                "printf '[Service]\\nKillSignal=SIGKILL\\n' > /etc/systemd/system/hitless.service.d/break.conf",
                "systemctl daemon-reload",
            )
            env = self.env(m)
            env.results = {}
            try:
                sc.restart_with_slow_requests(env, slow_ms=self.args.slow_ms)
            except sc.ScenarioFailed as e:
                first = [line for line in str(e).splitlines()[:4] if line.strip()]
                if e.failed_requests == 0:
                    raise sc.ScenarioFailed(
                        "negative control: the scenario failed, but not because requests failed: " + " | ".join(first)
                    ) from e
                log(
                    f"negative control: the scenario failed, as it must, with {e.failed_requests} failed "
                    "request(s): " + " | ".join(first)
                )
                self.results["negative_control"] = NegativeControlResult(
                    detected=True, failed_requests=e.failed_requests, reason=first
                )
                return
            raise sc.ScenarioFailed(
                "negative control: the scenario PASSED with a broken drain: the tests cannot tell a drain from a kill"
            )

    def main(self) -> int:
        log(f"root file system: {self.rootfs}; logs: {self.log_dir}")
        a = self.args
        bodies: dict[str, Callable[[Machine], object]] = {
            "units": self.test_units,
            "activation": lambda m: sc.activation_on_demand(self.env(m)),
            "upgrade": lambda m: sc.upgrade_under_load(self.env(m), rounds=a.rounds),
            "slow": lambda m: sc.restart_with_slow_requests(self.env(m), slow_ms=a.slow_ms),
            "sigkill": lambda m: sc.sigkill_under_load(self.env(m)),
            "negative-control": self.negative_control,
        }
        for name in a.only or TESTS:
            self.in_container(name, bodies[name])

        results_path = self.log_dir / "results.json"
        results_path.write_text(sc.as_json(self.results))
        print(f"\n==== measured (also in {results_path})")
        print(sc.format_results(self.results))
        return self.outcomes.summary()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vm-tests/run-container-tests", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--hitless",
        action="append",
        required=True,
        metavar="VERSION=PATH",
        help="a hitless binary and the version it reports; the first is installed first (twice)",
    )
    p.add_argument("--probe", required=True, help="hitless-probe binary")
    p.add_argument("--units", required=True, help="directory with hitless.socket and hitless.service")
    p.add_argument("--only", action="append", metavar="TEST", choices=TESTS, help="run only these: " + ", ".join(TESTS))
    p.add_argument("--rounds", type=int, default=10, help="upgrades in the upgrade scenario (default 10)")
    p.add_argument("--slow-ms", type=int, default=3000, help="duration of the slow requests (default 3000)")
    p.add_argument("--concurrency", type=int, default=8, help="probe workers per client mode (default 8)")
    p.add_argument("--rate", type=int, default=300, help="requests/s per client mode (default 300)")
    p.add_argument(
        "--max-exposure",
        type=float,
        default=sc.MAX_EXPOSURE,
        help="highest acceptable security score (default %(default)s)",
    )
    p.add_argument("--log-dir", default="/tmp/hitless-container-tests", help="where logs and results go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    set_tag("vmtest")
    args = parse_args(argv)
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
        return Runner(args, ensure_rootfs()).main()
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
