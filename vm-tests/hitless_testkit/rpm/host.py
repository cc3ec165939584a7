"""Host commands the RPM checks use, and the run's shared state."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Failure
from ..scenarios.records import BadBuildResult, UpgradeResult

V2 = "2.0.0"
"""The version the second package reports (HITLESS_VERSION for rpm/build)."""


class CheckFailed(Failure):
    pass


def need(cond: object, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def run(
    cmd: str | list[str], cwd: Path | None = None, env: dict[str, str] | None = None, stdout_only: bool = False
) -> str:
    """Run a host command (a string goes to the shell), return its output
    (stdout and stderr, or with `stdout_only` stdout alone: for output that
    is compared, which cargo's notes on stderr must not join); raise
    CheckFailed with its output on failure."""
    p = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=None if stdout_only else subprocess.STDOUT,
        text=True,
        shell=isinstance(cmd, str),
        cwd=cwd,
        env=env,
        check=False,
    )
    if p.returncode != 0:
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
        raise CheckFailed(f"`{shown}` exited {p.returncode}:\n{p.stdout[-3000:]}")
    return p.stdout


def cargo_field(src: Path, path: str, key: str) -> str:
    m = re.search(rf'^{key}\s*=\s*"([^"]+)"', (src / path).read_text(), re.M)
    if not m:
        raise CheckFailed(f"no {key} in {path}")
    return m.group(1)


def rpm_files(d: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(d.glob("*.rpm"))}


def qp(fmt_or_flag: str, rpm: Path) -> str:
    """`rpm -qp --qf FORMAT` or `rpm -qp --FLAG` on a package file."""
    if fmt_or_flag.startswith("--"):
        return run(["rpm", "-qp", *fmt_or_flag.split(), str(rpm)], env={**os.environ, "LC_ALL": "C"})
    return run(["rpm", "-qp", "--qf", fmt_or_flag, str(rpm)])


def extract(rpm: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    run(f"rpm2cpio {shlex.quote(str(rpm))} | (cd {shlex.quote(str(dest))} && cpio -idm --quiet)")
    return dest


@dataclass
class RpmUpgrade:
    to: str
    rpm_u_s: float
    """How long `rpm -U` took, scriptlets and the flip included."""
    slots: list[str]
    """The serving slot and its pid before and after."""


@dataclass
class FlavorResult:
    """One container (EL8 or EL9 behaviour)."""

    upgrade: UpgradeResult | None = None
    rpm_upgrades: list[RpmUpgrade] = field(default_factory=list)
    bad_package: BadBuildResult | None = None
    flips: int = 0
    """Flips hitless-slots reported (one per upgrade under load, and the rest)."""
    after_erase_loadstate: dict[str, str] = field(default_factory=dict)


@dataclass
class RpmlintResult:
    errors: int
    warnings: list[str]


@dataclass
class RpmResults:
    build_v1_s: float | None = None
    build_v2_s: float | None = None
    reproducible: dict[str, str] = field(default_factory=dict)
    """sha256 of every package, identical in both builds."""
    glibc_max: str = ""
    build_id: str = ""
    bundled_crates: int = 0
    rpmlint: RpmlintResult | None = None
    el8: FlavorResult | None = None
    el9: FlavorResult | None = None
    total_s: float = 0.0


@dataclass
class RpmRun:
    """What every check of one run shares."""

    repo: Path
    """The checkout rpm/test belongs to."""
    out: Path
    """Packages, logs and results.json go here."""
    probe: Path
    """hitless-probe binary (scripts/build-versions)."""
    tmp: Path
    rounds: int
    src: Path = Path()
    """The source that is built: a snapshot of the work tree, or the
    checkout itself with --reuse."""
    src_again: Path | None = None
    """A second snapshot, elsewhere, for the reproducibility build."""
    sde: str = ""
    """SOURCE_DATE_EPOCH: the time of the checkout's last commit."""
    v1: str = ""
    results: RpmResults = field(default_factory=RpmResults)
    extracted: dict[str, Path] = field(default_factory=dict)

    def main_rpm(self, which: str) -> Path:
        version = self.v1 if which == "v1" else V2
        return self.out / which / f"hitless-{version}-1.x86_64.rpm"

    def root(self, which: str) -> Path:
        """The main package of v1 or v2, unpacked."""
        if which not in self.extracted:
            self.extracted[which] = extract(self.main_rpm(which), self.tmp / f"x-{which}")
        return self.extracted[which]
