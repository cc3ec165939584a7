"""Debian 12 root file system for the container tests, built with debootstrap
and cached outside the git tree.

The cache key is a hash of the recipe (suite, mirror, variant, packages and
the setup steps below), so changing any of them builds a new tree and an
unchanged recipe is built once per machine. A build happens in a temporary
directory next to the cache entry and is renamed into place only when it is
complete, under a lock, so an interrupted or concurrent build never leaves a
half-made tree that a later run would trust.

Standard library only (the NixOS test driver has no third-party packages
either, and the scenarios must run there too).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("HITLESS_VM_CACHE", "/var/cache/hitless-vm-tests"))
DEFAULT_MIRROR = os.environ.get("HITLESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# What the guest needs, and why:
#   systemd, systemd-sysv: PID 1 (the point of the tests) and /sbin/init;
#   dbus: systemctl talks to PID 1 over its private socket, but logind and
#         friends (and `systemctl` in some paths) expect a system bus;
#   curl: the scenarios poke the service by hand (curl -sf ...);
#   iproute2: `ss` for wait_for_open_port;
#   procps: `pgrep`/`ps` when a scenario needs a pid;
#   rpm: the RPM tests (issue 4) install the package inside this guest.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "curl", "iproute2", "procps", "rpm")

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


def recipe(suite: str = "bookworm", mirror: str = DEFAULT_MIRROR,
           extra_packages: tuple[str, ...] = ()) -> dict:
    return {
        "suite": suite,
        "mirror": mirror,
        "variant": "minbase",
        "packages": sorted(set(PACKAGES) | set(extra_packages)),
        "masked": sorted(MASKED_UNITS),
        "setup_revision": SETUP_REVISION,
    }


def recipe_hash(r: dict) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


def log(msg: str) -> None:
    print(f"[rootfs] {msg}", file=sys.stderr, flush=True)


def setup(root: Path, r: dict) -> None:
    """Make the fresh debootstrap tree a quiet, bootable container image."""
    (root / "etc/hostname").write_text("hitless-test\n")
    # An empty machine-id makes systemd generate a transient one at each boot
    # (so every container gets its own) without trying to commit it.
    (root / "etc/machine-id").write_text("")
    for unit in r["masked"]:
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
    (root / "etc/hitless-test-recipe.json").write_text(json.dumps(r, indent=2, sort_keys=True) + "\n")


def ensure_rootfs(cache: Path = DEFAULT_CACHE, extra_packages: tuple[str, ...] = (),
                  suite: str = "bookworm", mirror: str = DEFAULT_MIRROR) -> Path:
    """Return the path of a ready root file system, building it if needed."""
    r = recipe(suite, mirror, extra_packages)
    h = recipe_hash(r)
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"rootfs-{suite}-{h}"
    if (final / ".complete").exists():
        return final
    with open(cache / f".lock-{h}", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if (final / ".complete").exists():  # somebody else built it meanwhile
            return final
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap not found: apt-get install debootstrap")
        tmp = cache / f".build-{h}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        log(f"building {final} (recipe {h}); this takes a few minutes once")
        t0 = time.monotonic()
        cmd = ["debootstrap", f"--variant={r['variant']}",
               "--include=" + ",".join(r["packages"]), suite, str(tmp), mirror]
        buildlog = cache / f"build-{h}.log"
        with open(buildlog, "w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = buildlog.read_text(errors="replace").splitlines()[-30:]
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"debootstrap failed ({proc.returncode}); last lines of {buildlog}:\n"
                               + "\n".join(tail))
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


if __name__ == "__main__":
    # rootfs.py            build (if needed) and print the path
    # rootfs.py --prune    also delete cached trees of other recipes
    path = ensure_rootfs()
    if "--prune" in sys.argv[1:]:
        prune(keep=path)
    print(path)
