"""Debian 12 root file system for the container tests, built with debootstrap
and cached outside the git tree (HITLESS_VM_CACHE, default
/var/cache/hitless-vm-tests).

The cache key is a hash of the recipe (suite, mirror, variant, packages and
the setup steps below), so changing any of them builds a new tree and an
unchanged recipe is built once per machine. A build happens in a temporary
directory next to the cache entry and is renamed into place only when it is
complete, under a lock, so an interrupted or concurrent build never leaves a
half-made tree that a later run would trust.

    python3 -m hitless_testkit.rootfs [--prune]   build if needed, print the path
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EXIT_CANNOT_RUN, CannotRun
from .log import die, log

DEFAULT_CACHE = Path(os.environ.get("HITLESS_VM_CACHE", "/var/cache/hitless-vm-tests"))
DEFAULT_MIRROR = os.environ.get("HITLESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# What the guest needs, and why:
#   systemd, systemd-sysv: PID 1 (the point of the tests) and /sbin/init;
#   dbus: systemctl talks to PID 1 over its private socket, but logind and
#         friends (and `systemctl` in some paths) expect a system bus;
#   curl: the scenarios poke the service by hand (curl -sf ...);
#   iproute2: `ss` for wait_for_open_port;
#   procps: `pgrep`/`ps` when a scenario needs a pid;
#   rpm: the RPM tests install the package inside this guest;
#   nodejs, python3-requests, python3-aiohttp: the real client libraries of
#         the "clients" scenario (vm-tests/clients), Debian's own versions.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "curl",
    "iproute2",
    "procps",
    "rpm",
    "nodejs",
    "python3-requests",
    "python3-aiohttp",
)

# Units that only add noise or delay to a throwaway test container.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "systemd-timesyncd.service",
    "getty.target",
    "console-getty.service",
    "systemd-networkd-wait-online.service",
)

# Bump when setup() below changes in a way the hash would not see.
SETUP_REVISION = 1


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the content of the tree; its hash names it."""

    suite: str
    mirror: str
    variant: str
    packages: list[str]
    masked: list[str]
    setup_revision: int

    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe(suite: str = "bookworm", mirror: str = DEFAULT_MIRROR, extra_packages: tuple[str, ...] = ()) -> Recipe:
    return Recipe(
        suite=suite,
        mirror=mirror,
        variant="minbase",
        packages=sorted(set(PACKAGES) | set(extra_packages)),
        masked=sorted(MASKED_UNITS),
        setup_revision=SETUP_REVISION,
    )


def setup(root: Path, r: Recipe) -> None:
    """Make the fresh debootstrap tree a quiet, bootable container image."""
    (root / "etc/hostname").write_text("hitless-test\n")
    # An empty machine-id makes systemd generate a transient one at each boot
    # (so every container gets its own) without trying to commit it.
    (root / "etc/machine-id").write_text("")
    for unit in r.masked:
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    # The journal stays in memory: the container is ephemeral anyway.
    jd = root / "etc/systemd/journald.conf.d"
    jd.mkdir(parents=True, exist_ok=True)
    (jd / "hitless-test.conf").write_text("[Journal]\nStorage=volatile\nRateLimitBurst=0\n")
    # No apt caches in the image.
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "etc/hitless-test-recipe.json").write_text(
        json.dumps(dataclasses.asdict(r), indent=2, sort_keys=True) + "\n"
    )


def ensure_rootfs(
    cache: Path = DEFAULT_CACHE,
    extra_packages: tuple[str, ...] = (),
    suite: str = "bookworm",
    mirror: str = DEFAULT_MIRROR,
) -> Path:
    """Return the path of a ready root file system, building it if needed.
    Raises CannotRun without debootstrap or when its build fails (no
    network, no mirror): the tests cannot run then."""
    r = recipe(suite, mirror, extra_packages)
    h = r.digest()
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"rootfs-{suite}-{h}"
    if (final / ".complete").exists():
        return final
    with open(cache / f".lock-{h}", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if (final / ".complete").exists():  # somebody else built it meanwhile
            return final
        if shutil.which("debootstrap") is None:
            raise CannotRun("debootstrap not found: apt-get install debootstrap")
        tmp = cache / f".build-{h}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        log(f"building {final} (recipe {h}); this takes a few minutes once")
        t0 = time.monotonic()
        cmd = ["debootstrap", f"--variant={r.variant}", "--include=" + ",".join(r.packages), suite, str(tmp), mirror]
        buildlog = cache / f"build-{h}.log"
        with open(buildlog, "w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = buildlog.read_text(errors="replace").splitlines()[-30:]
            shutil.rmtree(tmp, ignore_errors=True)
            log(f"debootstrap failed; last lines of {buildlog}:\n" + "\n".join(tail))
            raise CannotRun(f"debootstrap failed with exit status {proc.returncode} (log: {buildlog})")
        setup(tmp, r)
        (tmp / ".complete").write_text(h + "\n")
        tmp.rename(final)
        log(f"built in {time.monotonic() - t0:.0f}s")
    return final


def prune(cache: Path = DEFAULT_CACHE, keep: Path | None = None) -> None:
    """Remove cached trees of other recipes (old versions of this one, and
    those with extra packages: only when nobody else is using them)."""
    if not cache.is_dir():
        return
    for p in cache.glob("rootfs-*"):
        if keep is None or p.resolve() != keep.resolve():
            log(f"removing stale {p}")
            shutil.rmtree(p, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m hitless_testkit.rootfs",
        description="Build (or find) the cached Debian root file system of the container tests and print its path.",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="also delete the cached trees of other recipes (run it when no container test is running)",
    )
    args = p.parse_args(argv)
    try:
        path = ensure_rootfs()
    except CannotRun as e:
        die(f"rootfs: cannot run: {e}")
        return EXIT_CANNOT_RUN
    if args.prune:
        prune(keep=path)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
