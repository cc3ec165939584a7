"""A small container test driver: boots a Debian root file system with
systemd-nspawn (systemd is PID 1 inside) and drives it with nsenter.

The Machine API mirrors the NixOS test driver's (nixos/lib/test-driver), so
one scenario script runs under both: succeed, fail, execute,
wait_until_succeeds, wait_until_fails, wait_for_unit, require_unit_state,
wait_for_open_port, wait_for_closed_port, systemctl, get_unit_info,
copy_from_host, sleep, start, shutdown, crash; and a module-level
`subtest(name)` context manager.

Differences worth knowing:
  * wait_for_open_port checks for a *listening* socket with `ss` instead of
    connecting: a connect would socket-activate the service under test.
  * Commands run as root with `bash -c` in all the container's namespaces,
    with a clean environment.

Every container is ephemeral (--volatile=overlay: writes go to a tmpfs over
the cached, read-only-in-practice root file system) and has a private
network, so port 8080 never collides with the host or another container: by
default only loopback; with `netns=` the network namespace the caller made
for it (netns.Lan: a test network of several machines).
Containers are always torn down: Machine is a context manager, `shutdown()`
is idempotent, SIGINT/SIGTERM raise through the `with` block
(log.install_signal_handlers), and nspawn gets SIGTERM if the driver process dies
(PR_SET_PDEATHSIG).

Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import itertools
import os
import shlex
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .errors import Failure
from .log import log

GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}

_names = itertools.count(1)


class MachineError(Failure):
    """A command or wait in the guest failed."""


@contextlib.contextmanager
def subtest(name: str) -> Iterator[None]:
    """Like the NixOS driver's subtest: log start, end and duration; on
    failure log it and re-raise."""
    log(f"=== subtest: {name}")
    t0 = time.monotonic()
    try:
        yield
    except BaseException as e:
        log(f"=== subtest FAILED after {time.monotonic() - t0:.1f}s: {name}: {type(e).__name__}: {e}")
        raise
    log(f"=== subtest ok ({time.monotonic() - t0:.1f}s): {name}")


_PR_SET_PDEATHSIG = 1


def _child_setup(cgroups: list[Path]) -> None:
    """Runs in the child between fork and exec. If the driver dies (even by
    SIGKILL), nspawn gets SIGTERM, which halts the container cleanly. And
    nspawn moves into the container's own cgroups (see own_cgroups)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass
    os.setsid()
    for cg in cgroups:
        with contextlib.suppress(OSError):
            (cg / "cgroup.procs").write_text(f"{os.getpid()}\n")


def own_cgroups(name: str) -> list[Path]:
    """A cgroup of its own for the container, in every hierarchy this
    process is in (created here, joined by nspawn in _child_setup).

    With --keep-unit and no host systemd, nspawn runs the container in the
    caller's cgroup, and the container's systemd creates its slices under
    it. Two containers started from the same cgroup would then manage the
    same /system.slice/..., and one can remove the other's unit cgroups
    (seen as "Failed to attach to cgroup ...: No such file or directory").
    Returns [] (sharing, as before) when the cgroups cannot be made."""
    mounts: list[tuple[set[str], str, str]] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, info = left.split(), right.split()
            if len(fields) < 5 or len(info) < 3 or info[0] not in ("cgroup", "cgroup2"):
                continue
            keys = {"0"} if info[0] == "cgroup2" else set(info[2].split(","))
            mounts.append((keys, fields[3], fields[4]))
    dirs = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            want = {"0"} if hierarchy == "0" else set(controllers.split(","))
            match = next(((root, mp) for keys, root, mp in mounts if want <= keys), None)
            if match is None or not path.startswith(match[0]):
                return []
            rel = path[len(match[0]) :].lstrip("/")
            dirs.append(Path(match[1]) / rel / f"hitless-vm-{name}-{os.getpid()}")
        for d in dirs:
            d.mkdir(exist_ok=True)
    except (OSError, ValueError):
        remove_cgroups(dirs)
        return []
    return dirs


def remove_cgroups(dirs: list[Path]) -> None:
    """Remove the container's cgroups (deepest first); leftovers of a
    container that is not gone yet stay."""
    for d in dirs:
        if not d.is_dir():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            d.rmdir()


class Machine:
    def __init__(
        self,
        rootfs: Path,
        name: str | None = None,
        log_dir: Path | None = None,
        boot_timeout: float = 60.0,
        netns: Path | None = None,
    ) -> None:
        self.rootfs = Path(rootfs)
        self.name = name or f"hitless-{os.getpid()}-{next(_names)}"
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="hitless-vm-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.console_log = self.log_dir / f"{self.name}.console.log"
        self.boot_timeout = boot_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.cgroups: list[Path] = []
        self.netns = netns
        """A network namespace to join (/run/netns/NAME) instead of a private one."""

    # --- lifecycle ----------------------------------------------------------

    def __enter__(self) -> Machine:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def is_up(self) -> bool:
        return self.process is not None and self.process.poll() is None and self.leader is not None

    def start(self) -> None:
        if self.process is not None:
            return
        cmd = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={self.rootfs}",
            f"--machine={self.name}",
            "--boot",
            # No host systemd/machined to register with, and the container
            # stays in our cgroup instead of asking for a scope unit.
            "--register=no",
            "--keep-unit",
            # Writes go to a tmpfs overlay: the cached tree stays pristine
            # and the container leaves nothing behind.
            "--volatile=overlay",
            # Only loopback inside, or the test network the caller made:
            # port 8080 is the container's own either way.
            f"--network-namespace-path={self.netns}" if self.netns else "--private-network",
            "--console=passive",
            # Halting (not killing) on SIGTERM: shutdown() uses it.
            "--kill-signal=SIGRTMIN+3",
        ]
        log(f"{self.name}: starting container ({self.rootfs.name})")
        self.cgroups = own_cgroups(self.name)
        if not self.cgroups:
            log(f"{self.name}: no cgroups of its own; containers run at the same time may disturb each other")
        with open(self.console_log, "wb") as out:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Before any thread of ours runs (Machine is started first).
                preexec_fn=functools.partial(_child_setup, self.cgroups),  # noqa: PLW1509
            )
        try:
            self.leader = self._find_leader()
            self._wait_booted()
        except BaseException:
            self._print_console()
            self.shutdown()
            raise
        log(f"{self.name}: up (leader pid {self.leader})")

    def _find_leader(self) -> int:
        """The container's PID 1, as seen from the host: the child of nspawn
        whose innermost pid is 1."""
        assert self.process is not None
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MachineError(f"systemd-nspawn exited with {self.process.returncode} (see {self.console_log})")
            for pid in _children(self.process.pid):
                nspid = _status_field(pid, "NSpid")
                if nspid and nspid.split()[-1] == "1":
                    return pid
            time.sleep(0.05)
        raise MachineError(f"container {self.name} did not start within {self.boot_timeout}s")

    def _wait_booted(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while True:
            # Waits for the boot job to finish; "degraded" is a finished
            # boot too (and is reported by wait_for_unit on what matters).
            rc, out = self.execute(
                "systemctl is-system-running --wait 2>/dev/null",
                check_output=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            state = out.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    log(
                        f"{self.name}: boot finished degraded: "
                        + self.execute("systemctl --failed --no-legend --plain")[1].strip()
                    )
                return
            if time.monotonic() > deadline:
                raise MachineError(f"{self.name}: boot did not finish (state {state!r})")
            time.sleep(0.1)

    def shutdown(self, timeout: float = 20.0) -> None:
        """Halt the container and wait for nspawn to exit; kill if it hangs.
        Safe to call more than once."""
        p = self.process
        if p is None:
            return
        try:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # nspawn: halt the container
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log(f"{self.name}: did not halt in {timeout}s, killing it")
                    self.crash()
        finally:
            self.process = None
            self.leader = None
            remove_cgroups(self.cgroups)
            self.cgroups = []
            log(f"{self.name}: torn down")

    def crash(self) -> None:
        """Kill the container at once (like pulling the plug)."""
        if self.leader:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)  # PID 1 dies: the pid namespace dies
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)

    def _print_console(self) -> None:
        with contextlib.suppress(OSError):
            text = self.console_log.read_text(errors="replace")
            if text.strip():
                log(f"{self.name}: console output:\n{text[-4000:]}")

    # --- commands -----------------------------------------------------------

    def _nsenter(self) -> list[str]:
        if not self.leader:
            raise MachineError(f"{self.name} is not running")
        return ["nsenter", f"--target={self.leader}", "--all", "--"]

    def execute(
        self,
        command: str,
        check_return: bool = True,
        check_output: bool = True,
        timeout: float | None = 900,
        stdin: bytes | None = None,
    ) -> tuple[int, str]:
        """Run `command` with bash in the guest; return (exit status, stdout).
        stderr is passed through to our stderr, as the NixOS driver logs it."""
        env_args = [f"{k}={v}" for k, v in GUEST_ENV.items()]
        argv = [*self._nsenter(), "/usr/bin/env", "-i", *env_args, "/bin/bash", "-c", command]
        p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,
        )
        try:
            out, _ = p.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise MachineError(f"{self.name}: command timed out after {timeout}s: {command}") from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            raise
        return p.returncode, out.decode(errors="replace") if check_output else ""

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        output = ""
        for command in commands:
            log(f"{self.name}: must succeed: {command}")
            rc, out = self.execute(command, timeout=timeout or 900)
            if rc != 0:
                if out.strip():
                    log(f"{self.name}: output:\n{out.rstrip()}")
                raise MachineError(f"{self.name}: command `{command}` failed (exit code {rc})")
            output += out
        return output

    def fail(self, *commands: str, timeout: float | None = None) -> str:
        output = ""
        for command in commands:
            log(f"{self.name}: must fail: {command}")
            rc, out = self.execute(command, timeout=timeout or 900)
            if rc == 0:
                raise MachineError(f"{self.name}: command `{command}` unexpectedly succeeded")
            output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        log(f"{self.name}: waiting for success: {command}")
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(command, timeout=max(1.0, deadline - time.monotonic()))
            if rc == 0:
                return out
            if time.monotonic() > deadline:
                raise MachineError(f"{self.name}: `{command}` did not succeed within {timeout}s; last output:\n{out}")
            time.sleep(0.2)

    def wait_until_fails(self, command: str, timeout: int = 900) -> str:
        log(f"{self.name}: waiting for failure: {command}")
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(command, timeout=max(1.0, deadline - time.monotonic()))
            if rc != 0:
                return out
            if time.monotonic() > deadline:
                raise MachineError(f"{self.name}: `{command}` did not fail within {timeout}s")
            time.sleep(0.2)

    def sleep(self, secs: float) -> None:
        time.sleep(secs)

    # --- systemd ------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        if user is not None:
            q = f"--user -M {shlex.quote(user)}@ {q}"
        return self.execute(f"systemctl {q}")

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        rc, out = self.systemctl(f"--no-pager show {shlex.quote(unit)}", user)
        if rc != 0:
            raise MachineError(f"{self.name}: cannot get info for {unit} (exit {rc})")
        info: dict[str, str] = {}
        for line in out.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                info[k] = v
        return info

    def get_unit_property(self, unit: str, prop: str) -> str:
        rc, out = self.systemctl(f"show --property={shlex.quote(prop)} --value {shlex.quote(unit)}")
        if rc != 0:
            raise MachineError(f"{self.name}: cannot read {prop} of {unit}")
        return out.strip()

    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        state = self.get_unit_property(unit, "ActiveState")
        if state != require_state:
            self.dump_journal(unit)
            raise MachineError(f"{self.name}: expected {unit} to be {require_state}, it is {state}")

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
        """Wait until `unit` is active; fail at once if it failed, or is
        inactive with no job queued (nothing will start it)."""
        log(f"{self.name}: waiting for unit {unit}")
        deadline = time.monotonic() + timeout
        while True:
            info = self.get_unit_info(unit, user)
            state = info.get("ActiveState", "")
            if state == "active":
                return
            if state == "failed":
                self.dump_journal(unit)
                raise MachineError(f"{self.name}: unit {unit} reached state failed (Result={info.get('Result')})")
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs:
                    self.dump_journal(unit)
                    raise MachineError(f"{self.name}: unit {unit} is inactive and there are no pending jobs")
            if time.monotonic() > deadline:
                self.dump_journal(unit)
                raise MachineError(f"{self.name}: unit {unit} not active after {timeout}s (state {state})")
            time.sleep(0.2)

    def _port_cmd(self, port: int, addr: str | None) -> str:
        # Listening sockets only; no connection is made (see module docs).
        # grep without -q reads all of its input: no SIGPIPE for ss under pipefail.
        ss = f"ss -Hltn {shlex.quote(f'sport = :{int(port)}')}"
        if addr is None or addr == "localhost":
            return f"{ss} | grep . >/dev/null"
        return f"{ss} | grep -F {shlex.quote(addr + ':')} >/dev/null"

    def wait_for_open_port(self, port: int, addr: str | None = "localhost", timeout: int = 900) -> None:
        self.wait_until_succeeds(self._port_cmd(port, addr), timeout=timeout)

    def wait_for_closed_port(self, port: int, addr: str | None = "localhost", timeout: int = 900) -> None:
        self.wait_until_fails(self._port_cmd(port, addr), timeout=timeout)

    def journal(self, *units: str, lines: int = 200) -> str:
        sel = " ".join(f"--unit={shlex.quote(u)}" for u in units)
        _, out = self.execute(
            f"journalctl --no-pager --output=short-monotonic {sel} | tail -n {int(lines)}", timeout=30
        )
        return out

    def dump_journal(self, *units: str, lines: int = 200) -> None:
        if not self.is_up():
            return
        try:
            text = self.journal(*units, lines=lines)
        except Exception as e:  # never hide the original failure
            text = f"(cannot read the journal: {e})"
        log(f"{self.name}: journal of {', '.join(units) or 'the system'} (last {lines} lines):\n{text.rstrip()}")

    # --- files --------------------------------------------------------------

    def copy_from_host(self, source: str | os.PathLike[str], target: str) -> None:
        """Copy a file or directory from the host to `target` in the guest
        (created or replaced), keeping its mode."""
        source = Path(source)
        log(f"{self.name}: copy {source} -> {target}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(source), arcname="x")
        tq = shlex.quote(target)
        # Unpack next to the target, then rename into place.
        cmd = (
            f'set -e; d=$(dirname {tq}); mkdir -p "$d"; t=$(mktemp -d "$d/.copy.XXXXXX"); '
            f'tar -C "$t" -xf - --no-same-owner; rm -rf {tq}; mv "$t/x" {tq}; rmdir "$t"'
        )
        rc, _ = self.execute(cmd, stdin=buf.getvalue(), timeout=120)
        if rc != 0:
            raise MachineError(f"{self.name}: copy of {source} to {target} failed (exit {rc})")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _status_field(pid: int, field: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def preflight() -> list[str]:
    """What is missing on this host to run containers, in words."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (systemd-nspawn, debootstrap)")
    for tool in ("systemd-nspawn", "nsenter", "debootstrap"):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":")):
            problems.append(f"{tool} not found")
    return problems
