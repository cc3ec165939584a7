"""The fleet test: three hitless hosts behind HAProxy on a private network,
upgraded host by host with Ansible, drained, cut off, and given a bad build,
with clients going through the balancer all along.

Machines (systemd-nspawn containers with systemd as PID 1, each in a network
namespace of netns.Lan, bridged on 10.89.0.0/24; nothing on the host's
network):
  h1, h2, h3   10.89.0.11-13  hitless installed from units/ like a package,
                              sshd for Ansible;
  lb           10.89.0.2      HAProxy (Debian's package and unit) with
                              deploy/haproxy/hitless.cfg; the probe runs here
                              and goes through HAProxy's frontend;
  ctl          10.89.0.3      no container: the namespace where
                              ansible-playbook (ansible-core from PyPI, in a
                              venv) runs on this host, over SSH to h1-h3.

Cases, each with a negative control that must lose requests:
  rolling      deploy/ansible/upgrade.yml (serial: 1, a flip per host) to
               the other version: 0 failed. Control: the same rollout done
               by stopping and starting hitless.
  bad-build    the playbook with a build that exits at start: the play
               fails on the first host and stops, every host still serves
               the old version (and has its binary): 0 failed. Control: the
               bad build rolled out by stop-and-start.
  leave        `hitless-slots leave 5` on h2: HAProxy sees 404 (NOLB), then
               the host drains and its socket closes (DOWN); then
               `systemctl start hitless.socket` brings it back: 0 failed.
               Control: `hitless-slots leave 0` (no grace).
  cut          h3 unplugged from the network: HAProxy takes it out within
               fall x (inter + timeout check) + inter; only requests sent
               to it before that fail; counted. Control: the same with
               h3's health checks disabled: failures go on.

    python3 -m hitless_testkit.fleet --hitless 1.0.0=PATH --hitless 2.0.0=PATH \\
        --probe PATH --units DIR --deploy DIR [--only CASE]...

Results go to LOG_DIR/<time>/fleet-results.json and, as a Markdown table,
to stdout (docs/fleet.md's results are that table).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import scenarios as sc
from .errors import EXIT_CANNOT_RUN, CannotRun, Failure
from .install import (
    BROKEN_BUILDS,
    STORE,
    UNIT_FILES,
    copy_versions,
    install_broken_builds,
    install_helper,
    install_probe,
    install_units,
    swap_binary,
)
from .log import Interrupted, die, install_signal_handlers, log, set_tag
from .netns import Lan
from .nspawn import Machine, preflight, subtest
from .outcomes import Outcomes
from .rootfs import DEFAULT_CACHE, ensure_rootfs
from .scenarios.clients import CLIENT_DIR, CLIENTS, RunningClient, judge, read_reports, stop_all
from .scenarios.probe import Probe, Stopped

NETWORK = "10.89.0.0/24"
LB_ADDR = "10.89.0.2"
HOSTS = {"h1": "10.89.0.11", "h2": "10.89.0.12", "h3": "10.89.0.13"}
PORT = 8080
STATS = "http://127.0.0.1:8404/stats;csv"
"""HAProxy's statistics page, added on the balancer's loopback for the test."""
BACKEND = "hitless"
# The recipe's check settings (deploy/haproxy/hitless.cfg), which the
# bounds below follow.
CHECK_INTER_S = 1.0
CHECK_FALL = 2
CHECK_TIMEOUT_S = 1.0
LEAVE_GRACE_S = 5
REQUEST_TIMEOUT_S = 10
"""The probe's: a request with no answer by then has failed."""
ANSIBLE_CORE = "ansible-core==2.19.14"
"""Pinned: the playbook is tested with this one."""
REAL_CLIENTS = tuple(
    c for c in CLIENTS if c.name in ("node-fetch", "python-requests", "python-aiohttp", "curl-http1.1")
)
"""Client libraries that also go through the balancer in the cases that
must lose nothing: Debian's own (the Go client and curl's prior-knowledge
HTTP/2 stay in the container tests)."""
CLIENT_PROGRAMS = ("client_report.py", "requests_client.py", "aiohttp_client.py", "curl_client.py", "fetch_client.mjs")
GUEST_EXTRA_PACKAGES = ("haproxy", "openssh-server")
"""Beyond the container tests' packages: the balancer and Ansible's way in."""
CASES = ("rolling", "bad-build", "leave", "cut")
ADMIN_SOCKET_CLIENT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect('/run/haproxy/admin.sock')\n"
    "s.sendall(sys.argv[1].encode() + b'\\n')\n"
    "print(s.recv(4096).decode())\n"
)
"""One command to HAProxy's runtime API (the guest has no socat)."""

NAIVE_PLAYBOOK = """\
# NEGATIVE CONTROL, not a recipe: the rollout many playbooks do, stop the
# service, replace the binary, start it, with nothing telling the balancer.
- name: Upgrade hitless by stopping and starting it
  hosts: hitless
  serial: 1
  max_fail_percentage: 0
  gather_facts: false
  tasks:
    - name: Copy the new binary
      ansible.builtin.copy:
        src: "{{ hitless_binary }}"
        dest: /usr/bin/.hitless.new
        mode: "0755"
    - name: Stop, replace, start
      ansible.builtin.shell: >-
        systemctl stop hitless.socket &&
        mv -f /usr/bin/.hitless.new /usr/bin/hitless &&
        systemctl start hitless.socket
      changed_when: true
"""


@dataclass
class CaseResult:
    """One case or control through the balancer: the probe's requests and
    failures per client mode, and what else it measured."""

    failed: dict[str, int]
    requests: dict[str, int]
    notes: dict[str, float | int | str] = field(default_factory=dict)

    @classmethod
    def of(cls, stopped: Stopped, **notes: float | int | str) -> CaseResult:
        modes = stopped.report.modes
        return cls(
            failed={m: r.failed for m, r in modes.items()},
            requests={m: r.requests for m, r in modes.items()},
            notes=dict(notes),
        )

    def total_failed(self) -> int:
        return sum(self.failed.values())


class Fleet:
    def __init__(self, args: argparse.Namespace, rootfs: Path, lan: Lan, work: Path, log_dir: Path) -> None:
        self.args = args
        self.rootfs = rootfs
        self.lan = lan
        self.work = work
        self.log_dir = log_dir
        self.binaries: dict[str, Path] = {v: Path(p) for v, _, p in (str(s).partition("=") for s in args.hitless)}
        self.versions = list(self.binaries)
        self.deploy = Path(args.deploy)
        self.hosts: dict[str, Machine] = {}
        self.lb: Machine | None = None
        self.venv = Path(args.ansible_venv)
        self.key = work / "id_ed25519"
        self.results: dict[str, CaseResult] = {}
        self.probe_started = 0.0

    # --- machines -------------------------------------------------------------

    def boot(self, stack: contextlib.ExitStack) -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hitless-fleet-test", "-f", str(self.key)],
            check=True,
        )
        pub = self.key.with_suffix(".pub").read_text()
        for name, addr in HOSTS.items():
            ns = self.lan.add(name, addr)
            m = stack.enter_context(Machine(self.rootfs, name=f"hitless-fleet-{name}", log_dir=self.log_dir, netns=ns))
            self.hosts[name] = m
            copy_versions(m, self.binaries)
            install_broken_builds(m, self.versions[0])
            install_units(m, Path(self.args.units), UNIT_FILES)
            install_helper(m, Path(self.args.units))
            swap_binary(m, self.versions[0])
            m.succeed(
                "install -d -m 0700 /root/.ssh",
                f"printf '%s' {shlex.quote(pub)} > /root/.ssh/authorized_keys",
                "systemctl daemon-reload",
                "systemctl enable --now hitless.socket ssh.service",
            )
            m.wait_for_unit("hitless.socket")
        self.lan.add("ctl", "10.89.0.3")
        ns = self.lan.add("lb", LB_ADDR)
        lb = stack.enter_context(Machine(self.rootfs, name="hitless-fleet-lb", log_dir=self.log_dir, netns=ns))
        self.lb = lb
        install_probe(lb, Path(self.args.probe))
        for name in CLIENT_PROGRAMS:
            lb.copy_from_host(Path(self.args.clients) / name, f"{CLIENT_DIR}/{name}")
        cfg = (self.deploy / "haproxy/hitless.cfg").read_text()
        cfg += "".join(f"    server {n} {a}:{PORT}\n" for n, a in HOSTS.items())
        # For the test only: the statistics page, on the balancer's loopback.
        cfg += "\nlisten stats\n    bind 127.0.0.1:8404\n    stats enable\n    stats uri /stats\n"
        lb.succeed(
            f"printf '%s' {shlex.quote(cfg)} > /etc/haproxy/haproxy.cfg",
            "haproxy -c -f /etc/haproxy/haproxy.cfg",
            "systemctl restart haproxy.service",
        )
        lb.wait_for_unit("haproxy.service")
        for name in HOSTS:
            self.wait_state(name, "UP", timeout=30)

    def machine_lb(self) -> Machine:
        if self.lb is None:
            raise CannotRun("the balancer is not up")
        return self.lb

    def env(self) -> sc.Env:
        lb = self.machine_lb()
        return sc.Env(
            server=lb,
            client=lb,
            versions=self.versions,
            url="http://127.0.0.1",
            subtest=subtest,
            log=log,
            concurrency=self.args.concurrency,
            rate=self.args.rate,
        )

    # --- the balancer's view --------------------------------------------------

    def states(self) -> dict[str, str]:
        """HAProxy's status of each host: UP, NOLB, DOWN, "UP 1/2"..."""
        rows = self.stats()
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == BACKEND and r["svname"] in HOSTS}

    def stats(self) -> list[dict[str, str]]:
        """HAProxy's statistics, a row per proxy and server (read quietly:
        the cases poll them)."""
        rc, out = self.machine_lb().execute(f"curl -sS --fail --max-time 5 '{STATS}'")
        if rc != 0:
            raise Failure(f"cannot read HAProxy's statistics (curl exit {rc})")
        return list(csv.DictReader(io.StringIO(out.lstrip("# "))))

    def wait_state(self, host: str, want: str, timeout: float) -> float:
        """Seconds until HAProxy says `want` of `host`."""
        t0 = time.monotonic()
        while True:
            state = self.states().get(host, "")
            if state == want:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise Failure(f"HAProxy: {host} is {state!r}, not {want} after {timeout:.0f}s")
            time.sleep(0.05)

    # --- hosts ------------------------------------------------------------------

    def served(self, host: str) -> str:
        """The version host answers /version with, asked on the host."""
        out = self.hosts[host].succeed(f"curl -sS --fail --max-time 10 http://127.0.0.1:{PORT}/version")
        return str(json.loads(out)["version"])

    def on_disk(self, host: str) -> str:
        """Which stored build /usr/bin/hitless is, by content."""
        m = self.hosts[host]
        same = m.execute(f'for f in {STORE}/hitless-*; do cmp -s "$f" /usr/bin/hitless && basename "$f"; done; true')[1]
        return same.strip().removeprefix("hitless-") or "unknown"

    def require_fleet_on(self, version: str) -> None:
        for host in HOSTS:
            got, disk = self.served(host), self.on_disk(host)
            if got != version or disk != version:
                raise Failure(f"{host} serves {got} with {disk} on disk; want {version}")

    def restore(self, version: str) -> None:
        """Every host back to `version`, serving, and UP in HAProxy."""
        for name, m in self.hosts.items():
            swap_binary(m, version)
            m.succeed(
                "systemctl reset-failed hitless.socket hitless.service 'hitless@*' || true",
                "systemctl start hitless.socket",
            )
            if self.served(name) != version:
                m.succeed("systemctl reload hitless.service")
        for name in HOSTS:
            self.wait_state(name, "UP", timeout=30)
        self.require_fleet_on(version)

    # --- Ansible ----------------------------------------------------------------

    def ansible_env(self) -> dict[str, str]:
        home = self.work / "ansible-home"
        home.mkdir(exist_ok=True)
        return {
            "PATH": f"{self.venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
        }

    def inventory(self) -> Path:
        path = self.work / "inventory.ini"
        lines = ["[hitless]", *(f"{n} ansible_host={a}" for n, a in HOSTS.items()), "", "[hitless:vars]"]
        lines += [
            "ansible_user=root",
            "ansible_python_interpreter=/usr/bin/python3",
            f"ansible_ssh_private_key_file={self.key}",
            "ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no'",
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def playbook(self, playbook: Path, binary: Path, version: str) -> tuple[int, str]:
        """ansible-playbook in the controller's namespace; (exit status, output)."""
        argv = [
            f"{self.venv}/bin/ansible-playbook",
            "-i",
            str(self.inventory()),
            str(playbook),
            "-e",
            f"hitless_binary={binary}",
            "-e",
            f"hitless_version={version}",
        ]
        log(f"ansible-playbook {playbook.name}: {binary.name} as {version}")
        t0 = time.monotonic()
        proc = self.lan.run(
            "ctl", argv, env=self.ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600
        )
        log(f"ansible-playbook exited {proc.returncode} after {time.monotonic() - t0:.1f}s:\n{proc.stdout.rstrip()}")
        return proc.returncode, proc.stdout

    def broken_binary(self) -> Path:
        path = self.work / "hitless-broken-exits"
        path.write_text(BROKEN_BUILDS["broken-exits"])
        path.chmod(0o755)
        return path

    def naive_playbook(self) -> Path:
        path = self.work / "stop-start.yml"
        path.write_text(NAIVE_PLAYBOOK)
        return path

    # --- load through the balancer ------------------------------------------------

    @contextlib.contextmanager
    def load(self, name: str) -> Iterator[list[Stopped]]:
        """The probe through HAProxy in every client mode while the body
        runs; the list gets its result when the body is over."""
        self.probe_started = time.monotonic()
        probe = Probe(self.env(), f"fleet-{name}", request_timeout=f"{REQUEST_TIMEOUT_S}s").start()
        got: list[Stopped] = []
        try:
            probe.wait_ok(timeout=30, fail_fast=False)
            time.sleep(1)
            yield got
            time.sleep(1)
        finally:
            got.append(probe.stop())

    @contextlib.contextmanager
    def clients(self, name: str, versions: list[str]) -> Iterator[None]:
        """REAL_CLIENTS through HAProxy while the body runs; each must lose
        nothing and see `versions` in order (answers from several hosts
        may interleave them). Their requests and failures are recorded as
        case `name`."""
        env = self.env()
        running = [RunningClient(env, c, CLIENT_DIR, env.url, role=f"fleet-{name}") for c in REAL_CLIENTS]
        try:
            for r in running:
                r.start()
            deadline = time.monotonic() + 30
            while True:
                reports = read_reports(env, running)
                if len(reports) == len(running) and all(rep.ok for rep in reports.values()):
                    break
                if time.monotonic() > deadline:
                    raise Failure(f"the clients got no answer through HAProxy: {reports}")
                time.sleep(0.2)
            yield
        finally:
            stop_all(running)
        reports = read_reports(env, running)
        problems = []
        for r in running:
            rep = reports.get(r.client.name)
            if rep is None or not rep.final:
                problems.append(f"{r.client.name}: no final report:\n{r.output()}")
                continue
            found, _, _ = judge(r.client, rep, versions, None)
            problems += [f"{r.client.name} ({rep.library}): {p}" for p in found]
        self.results[name] = CaseResult(
            failed={n: rep.failed for n, rep in reports.items()},
            requests={n: rep.requests for n, rep in reports.items()},
        )
        log(
            f"{name}: "
            + "; ".join(f"{n} {rep.library}: {rep.failed} failed of {rep.requests}" for n, rep in reports.items())
        )
        if problems:
            raise Failure("real clients through HAProxy:\n  " + "\n  ".join(problems))

    def other(self, version: str) -> str:
        return self.versions[1] if version == self.versions[0] else self.versions[0]

    def current(self) -> str:
        return self.served("h1")

    def record(self, name: str, result: CaseResult) -> CaseResult:
        self.results[name] = result
        log(f"{name}: {result.total_failed()} failed of {sum(result.requests.values())}: {result}")
        return result

    def require_control(self, name: str, result: CaseResult) -> None:
        if result.total_failed() == 0:
            raise Failure(f"negative control {name} lost no request: the case cannot show what it claims")

    # --- cases ------------------------------------------------------------------

    def case_rolling(self) -> None:
        start = self.current()
        new = self.other(start)
        upgrade = self.deploy / "ansible/upgrade.yml"
        with subtest(f"rolling upgrade {start} -> {new} with Ansible, serial: 1"):
            with self.clients("rolling-clients", [start, new]), self.load("rolling") as got:
                rc, out = self.playbook(upgrade, self.binaries[new], new)
            self.record("rolling", CaseResult.of(got[0]))
            if rc != 0:
                raise Failure(f"the rollout failed (exit {rc})")
            self.require_fleet_on(new)
            got[0].require_pass("rolling upgrade through HAProxy")
            seen = {v for m in got[0].report.modes.values() for v in m.versions}
            if seen != {start, new}:
                raise Failure(f"the clients saw versions {sorted(seen)}, want {start} and {new}")
        with subtest(f"negative control: the same rollout by stop and start, {new} -> {start}"):
            with self.load("rolling-control") as got:
                rc, _ = self.playbook(self.naive_playbook(), self.binaries[start], start)
            res = self.record("rolling-control", CaseResult.of(got[0]))
            self.require_control("rolling-control", res)
            self.restore(start)

    def case_bad_build(self) -> None:
        start = self.current()
        upgrade = self.deploy / "ansible/upgrade.yml"
        with subtest(f"a bad build rolled out over {start}: the play stops at the first host"):
            with self.load("bad-build") as got:
                rc, out = self.playbook(upgrade, self.broken_binary(), "broken")
            self.record("bad-build", CaseResult.of(got[0]))
            if rc == 0:
                raise Failure("the rollout of a build that cannot start succeeded")
            recap = out.rpartition("PLAY RECAP")[2]
            touched = [h for h in HOSTS if h in recap]
            if touched != ["h1"]:
                raise Failure(f"the play should have stopped at h1; its recap names {touched}")
            self.require_fleet_on(start)
            got[0].require_pass("a bad build through HAProxy")
        with subtest("negative control: the bad build rolled out by stop and start"):
            with self.load("bad-build-control") as got:
                self.playbook(self.naive_playbook(), self.broken_binary(), "broken")
                # Long enough for HAProxy to take the broken host out.
                time.sleep(CHECK_FALL * (CHECK_INTER_S + CHECK_TIMEOUT_S) + CHECK_INTER_S)
            res = self.record("bad-build-control", CaseResult.of(got[0]))
            self.require_control("bad-build-control", res)
            self.restore(start)

    def leave(self, host: str, grace: int, flip: bool) -> tuple[float, float]:
        """`hitless-slots leave GRACE` on host (it returns once the host has
        drained), with a slow request on the host in flight from the start
        (it must be answered: it holds the drain); with `flip`, a flip once
        HAProxy sees the 404, whose new slot must say 404 too. Returns the
        seconds until HAProxy said NOLB (-1: it never did) and DOWN."""
        m = self.hosts[host]
        slow_ms = (grace + 2) * 1000
        slow: list[tuple[int, str]] = []
        left: list[tuple[int, str]] = []
        slow_cmd = f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 60 http://127.0.0.1:{PORT}/slow?ms={slow_ms}"
        leave_cmd = f"/usr/libexec/hitless/hitless-slots leave {grace} 2>&1"
        workers = [
            threading.Thread(target=lambda: slow.append(m.execute(slow_cmd, timeout=120))),
            threading.Thread(target=lambda: left.append(m.execute(leave_cmd, timeout=120))),
        ]
        workers[0].start()
        time.sleep(0.5)
        log(f"{host}: hitless.service is {m.get_unit_property('hitless.service', 'ActiveState')} before leave")
        t0 = time.monotonic()
        workers[1].start()
        nolb = down = -1.0
        while down < 0:
            state = self.states().get(host, "")
            if state == "NOLB" and nolb < 0:
                nolb = time.monotonic() - t0
                if flip:
                    self.flip_while_leaving(host)
            if state == "DOWN":
                down = time.monotonic() - t0
            elif time.monotonic() - t0 > grace + 60:
                raise Failure(f"HAProxy: {host} still {state} {grace + 60}s after leave")
            time.sleep(0.05)
        for w in workers:
            w.join(timeout=120)
        if not left or left[0][0] != 0:
            raise Failure(f"hitless-slots leave {grace} on {host} failed: {left}")
        log(f"{host}: {left[0][1].strip()}")
        if not slow or slow[0][1].strip() != "200":
            raise Failure(f"the request in flight on {host} when it left was not answered: {slow}")
        return nolb, down

    def flip_while_leaving(self, host: str) -> None:
        """A flip during the grace: the new slot, another process started
        from the hardened unit, must see the flag too."""
        m = self.hosts[host]
        before = m.succeed(f"curl -sS --fail --max-time 5 http://127.0.0.1:{PORT}/version")
        m.succeed("systemctl reload hitless.service")
        after = m.succeed(f"curl -sS --fail --max-time 5 http://127.0.0.1:{PORT}/version")
        if json.loads(before)["pid"] == json.loads(after)["pid"]:
            raise Failure(f"{host}: the flip did not start a new process")
        code = m.succeed(f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 http://127.0.0.1:{PORT}/healthz")
        if code.strip() != "404":
            raise Failure(f"{host}: the slot started while leaving answers /healthz with {code}, not 404")
        log(f"{host}: flipped while leaving; the new slot answers /healthz with 404")

    def case_leave(self) -> None:
        host = "h2"
        with subtest(f"{host} leaves the pool (hitless-slots leave {LEAVE_GRACE_S}) and comes back"):
            with self.clients("leave-clients", [self.current()]), self.load("leave") as got:
                nolb, down = self.leave(host, LEAVE_GRACE_S, flip=True)
                if nolb < 0:
                    raise Failure(f"HAProxy never saw {host} answer 404 (NOLB)")
                self.hosts[host].fail(f"curl -sS --max-time 2 http://127.0.0.1:{PORT}/healthz")
                time.sleep(1)
                self.hosts[host].succeed("systemctl start hitless.socket")
                back = self.wait_state(host, "UP", timeout=30)
            notes = {"nolb_after_s": round(nolb, 1), "down_after_s": round(down, 1), "up_after_start_s": round(back, 1)}
            self.record("leave", CaseResult.of(got[0], **notes))
            got[0].require_pass("a host leaving and coming back through HAProxy")
        with subtest(f"negative control: {host} leaves with no grace (hitless-slots leave 0)"):
            with self.load("leave-control") as got:
                self.leave(host, 0, flip=False)
                self.hosts[host].succeed("systemctl start hitless.socket")
                self.wait_state(host, "UP", timeout=30)
            res = self.record("leave-control", CaseResult.of(got[0]))
            self.require_control("leave-control", res)

    def attempts(self, host: str) -> int:
        """How often HAProxy has chosen `host` for a request (the
        statistics' lbtot), whatever came of it."""
        for r in self.stats():
            if r["pxname"] == BACKEND and r["svname"] == host:
                return int(r["lbtot"] or 0)
        raise Failure(f"HAProxy's statistics have no {BACKEND}/{host}")

    def cut(self, host: str, name: str) -> tuple[CaseResult, float, int, float]:
        """Unplug host under load. Returns the result, the seconds until
        HAProxy said DOWN (-1: not within the checks' bound), how many more
        times HAProxy tried the host over the probe's request timeout after
        that bound, and the latest failure's time after the cut."""
        bound = CHECK_FALL * (CHECK_INTER_S + CHECK_TIMEOUT_S) + CHECK_INTER_S
        with self.load(name) as got:
            t0 = time.monotonic()
            self.lan.cut(host)
            down = -1.0
            while time.monotonic() < t0 + bound + 1:
                if self.states().get(host) == "DOWN":
                    down = time.monotonic() - t0
                    break
                time.sleep(0.05)
            time.sleep(max(0.0, t0 + bound + 1 - time.monotonic()))
            # Whatever was sent to it before times out at the probe's
            # timeout; anything HAProxy tries after this is its own doing.
            before = self.attempts(host)
            time.sleep(REQUEST_TIMEOUT_S + 2)
            more = self.attempts(host) - before
            self.lan.mend(host)
        res = CaseResult.of(got[0], down_after_s=round(down, 1), tried_after_s=more)
        at = [f.at_s for m in got[0].report.modes.values() for f in m.failures]
        last = max(at) - (t0 - self.probe_started) if at else 0.0
        return res, down, more, last

    def case_cut(self) -> None:
        host = "h3"
        bound = CHECK_FALL * (CHECK_INTER_S + CHECK_TIMEOUT_S) + CHECK_INTER_S
        with subtest(f"{host} cut off the network under load"):
            res, down, more, last = self.cut(host, "cut")
            self.record("cut", res)
            if down < 0:
                raise Failure(f"HAProxy did not take {host} out within {bound:.0f}s (its checks' bound)")
            if more:
                raise Failure(f"HAProxy tried {host} {more} more times after taking it out")
            # Only requests sent to it before it was out may fail: they fail
            # at the latest one request timeout after that (+1 s of slack
            # for the probe's clock against ours).
            if last > down + REQUEST_TIMEOUT_S + 1:
                raise Failure(f"a request failed {last:.1f}s after the cut, later than those sent before {down:.1f}s")
            self.wait_state(host, "UP", timeout=30)
        with subtest(f"negative control: {host} cut off with its health checks off"):
            lb = self.machine_lb()
            admin = f"python3 -c {shlex.quote(ADMIN_SOCKET_CLIENT)}"
            lb.succeed(f"{admin} 'disable health {BACKEND}/{host}'")
            try:
                res, down, more, last = self.cut(host, "cut-control")
            finally:
                lb.succeed(f"{admin} 'enable health {BACKEND}/{host}'")
            self.record("cut-control", res)
            if more == 0:
                raise Failure(f"negative control: without checks HAProxy should go on trying {host}")
            self.wait_state(host, "UP", timeout=30)


def ensure_venv(venv: Path) -> None:
    """ansible-core from PyPI in its own venv (made once, then reused)."""
    stamp = venv / ".hitless-complete"
    if stamp.exists() and stamp.read_text().strip() == ANSIBLE_CORE:
        return
    shutil.rmtree(venv, ignore_errors=True)
    log(f"making {venv} with {ANSIBLE_CORE}")
    for argv in ([sys.executable, "-m", "venv", str(venv)], [f"{venv}/bin/pip", "install", "-q", ANSIBLE_CORE]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CannotRun(f"{' '.join(argv)}: {proc.stderr.strip()[-2000:]}")
    stamp.write_text(ANSIBLE_CORE + "\n")


def main(argv: list[str] | None = None) -> int:
    set_tag("fleet")
    p = argparse.ArgumentParser(prog="python3 -m hitless_testkit.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--hitless", action="append", required=True, metavar="VERSION=PATH")
    p.add_argument("--probe", required=True)
    p.add_argument("--units", required=True)
    p.add_argument("--deploy", required=True, help="the deploy/ directory (HAProxy config, Ansible playbook)")
    p.add_argument("--clients", required=True, help="the vm-tests/clients directory (real client programs)")
    p.add_argument("--only", action="append", choices=CASES, help="run only this case (repeatable)")
    p.add_argument("--concurrency", type=int, default=4, help="probe workers per client mode")
    p.add_argument("--rate", type=int, default=150, help="requests per second per client mode")
    p.add_argument("--log-dir", default="/tmp/hitless-fleet-tests")
    p.add_argument("--ansible-venv", default=str(DEFAULT_CACHE / "ansible-venv"))
    args = p.parse_args(argv)
    if len(args.hitless) != 2:
        p.error("give two versions with --hitless")
    install_signal_handlers()
    problems = preflight() + [f"{t} not found" for t in ("ssh", "ssh-keygen", "ip") if shutil.which(t) is None]
    if problems:
        die("fleet: cannot run: " + "; ".join(problems))
        return EXIT_CANNOT_RUN
    log_dir = Path(args.log_dir) / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes = Outcomes("fleet")
    try:
        rootfs = ensure_rootfs(extra_packages=GUEST_EXTRA_PACKAGES)
        ensure_venv(Path(args.ansible_venv))
        with (
            tempfile.TemporaryDirectory(prefix="hitless-fleet-") as tmp,
            Lan(f"hlf{os.getpid()}", NETWORK) as lan,
            contextlib.ExitStack() as stack,
        ):
            fleet = Fleet(args, rootfs, lan, Path(tmp), log_dir)
            if not outcomes.run("boot", lambda: fleet.boot(stack)):
                return outcomes.summary()
            cases: dict[str, Callable[[], None]] = {
                "rolling": fleet.case_rolling,
                "bad-build": fleet.case_bad_build,
                "leave": fleet.case_leave,
                "cut": fleet.case_cut,
            }
            for name in args.only or CASES:
                outcomes.run(name, cases[name])
            results = {k: dataclasses.asdict(v) for k, v in fleet.results.items()}
            (log_dir / "fleet-results.json").write_text(json.dumps(results, indent=2) + "\n")
            print(results_table(fleet.results), flush=True)
    except CannotRun as e:
        die(f"fleet: cannot run: {e}")
        return EXIT_CANNOT_RUN
    except Interrupted as e:
        return 128 + e.signum
    return outcomes.summary()


def results_table(results: dict[str, CaseResult]) -> str:
    """Failed requests of each case per client mode (the probe), and per
    client library, as Markdown tables."""
    tables = []
    probe = {k: r for k, r in results.items() if set(r.requests) <= set(sc.MODES)}
    libraries = {k: r for k, r in results.items() if k not in probe}
    for title, group in (("client mode", probe), ("client library", libraries)):
        if not group:
            continue
        columns = sorted({m for r in group.values() for m in r.requests})
        lines = [
            f"Failed / requests by {title}:",
            "",
            "| case | " + " | ".join(columns) + " | notes |",
            "|---|" + "---|" * len(columns) + "---|",
        ]
        for name, r in group.items():
            cells = [f"{r.failed.get(m, 0)} / {r.requests.get(m, 0)}" for m in columns]
            notes = ", ".join(f"{k} {v}" for k, v in r.notes.items())
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {notes} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


if __name__ == "__main__":
    sys.exit(main())
