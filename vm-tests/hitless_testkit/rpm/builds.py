"""Building the packages: v1, v1 again elsewhere (reproducibility), v2."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..log import log
from .host import V2, CheckFailed, RpmRun, need, rpm_files, run


def snapshot(repo: Path, dest: Path) -> Path:
    """A git repository at `dest` holding the work tree as it is now
    (committed or not): every build of one run reads the same source even
    while people keep editing the checkout. A clean checkout gives a plain
    clone, as CI has."""
    run(["git", "clone", "-q", "--no-hardlinks", str(repo), str(dest)])
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo)
    for rel in filter(None, listed.split("\0")):
        src, dst = repo / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
    if run(["git", "status", "--porcelain"], cwd=dest).strip():
        run(
            "git add -A && git -c user.name=rpm-test -c user.email=rpm-test@localhost "
            "commit -q -m 'rpm/test: work tree snapshot'",
            cwd=dest,
        )
        log(f"snapshot of the work tree with uncommitted changes in {dest}")
    return dest


def take_snapshots(r: RpmRun, repro: bool) -> None:
    """Both copies now, before anything is built: the second build must
    read the same source as the first, however long that takes."""
    for attempt in range(3):
        r.src = snapshot(r.repo, r.tmp / f"src{attempt}" / "hitless")
        if not repro:
            return
        r.src_again = snapshot(r.repo, r.tmp / f"elsewhere{attempt}" / "hitless")
        digest = "git ls-files -z | xargs -0 sha256sum"
        if run(digest, cwd=r.src) == run(digest, cwd=r.src_again):
            return
        log("the work tree changed while it was being copied; copying again")
    raise CheckFailed("the work tree keeps changing; cannot take a stable copy")


def build(r: RpmRun, dest: Path, version: str | None = None, src: Path | None = None) -> float:
    """rpm/build of `src` (default: the snapshot) into `dest`; seconds taken."""
    shutil.rmtree(dest, ignore_errors=True)
    src = src or r.src
    env = {k: v for k, v in os.environ.items() if k != "HITLESS_VERSION"}
    env["SOURCE_DATE_EPOCH"] = r.sde
    if version:
        env["HITLESS_VERSION"] = version
    t0 = time.monotonic()
    run([str(src / "rpm/build"), str(dest)], cwd=src, env=env)
    return time.monotonic() - t0


def build_v1(r: RpmRun) -> None:
    s = build(r, r.out / "v1")
    r.results.build_v1_s = round(s, 1)
    log(f"v1 built in {s:.0f}s: {', '.join(rpm_files(r.out / 'v1'))}")


def build_again(r: RpmRun) -> None:
    """The same source at another path, built from scratch."""
    other = r.src_again
    if other is None:
        raise CheckFailed("no second snapshot of the source")
    s = build(r, r.out / "v1-again", src=other)
    shutil.rmtree(other, ignore_errors=True)
    a, b = rpm_files(r.out / "v1"), rpm_files(r.out / "v1-again")
    need(sorted(a) == sorted(b), f"different package sets: {sorted(a)} vs {sorted(b)}")
    differ = [n for n in a if a[n].read_bytes() != b[n].read_bytes()]
    need(
        not differ,
        f"not reproducible: {differ} differ between the two builds (diffoscope {a[differ[0]] if differ else ''} ...)",
    )
    r.results.reproducible = {n: run(["sha256sum", str(p)]).split()[0] for n, p in a.items()}
    log(f"second build ({s:.0f}s) from {other}: all {len(a)} packages identical, byte for byte")


def build_v2(r: RpmRun) -> None:
    s = build(r, r.out / "v2", version=V2)
    r.results.build_v2_s = round(s, 1)


BROKEN_VERSION = "3.0.0"
"""The version of the package whose binary is broken on purpose."""

BROKEN_SPEC = """\
Name:           hitless
Version:        {version}
Release:        1
Summary:        hitless with a binary that exits at once: a test of failed upgrades
License:        MIT OR Apache-2.0
Source0:        hitless-broken
Source1:        hitless.socket
Source2:        hitless.service
Source3:        hitless@.service
Source4:        hitless-slots

%description
The units and scriptlets of the real package, with a binary that exits
before it is ready, as a broken release would.

%install
install -Dpm 0755 %{{SOURCE0}} %{{buildroot}}%{{_bindir}}/hitless
install -Dpm 0644 %{{SOURCE1}} %{{buildroot}}%{{_unitdir}}/hitless.socket
install -Dpm 0644 %{{SOURCE2}} %{{buildroot}}%{{_unitdir}}/hitless.service
install -Dpm 0644 %{{SOURCE3}} %{{buildroot}}%{{_unitdir}}/hitless@.service
install -Dpm 0755 %{{SOURCE4}} %{{buildroot}}%{{_libexecdir}}/hitless/hitless-slots

{scriptlets}
%files
%{{_bindir}}/hitless
%{{_unitdir}}/hitless.socket
%{{_unitdir}}/hitless.service
%{{_unitdir}}/hitless@.service
%dir %{{_libexecdir}}/hitless
%{{_libexecdir}}/hitless/hitless-slots
"""


def build_broken(r: RpmRun) -> Path:
    """A hitless package whose binary exits before READY=1, with the real
    package's units, helper and scriptlets (taken verbatim from
    rpm/hitless.spec): what a broken release looks like to the host."""
    spec = (r.src / "rpm/hitless.spec").read_text()
    start, end = spec.index("\n%post\n"), spec.index("\n%files\n")
    top = r.tmp / "broken"
    sources = top / "SOURCES"
    sources.mkdir(parents=True, exist_ok=True)
    (sources / "hitless-broken").write_text('#!/bin/sh\necho "hitless: this build is broken on purpose" >&2\nexit 1\n')
    for name in ("hitless.socket", "hitless.service", "hitless@.service", "hitless-slots"):
        shutil.copy(r.src / "units" / name, sources / name)
    path = top / "hitless-broken.spec"
    path.write_text(BROKEN_SPEC.format(version=BROKEN_VERSION, scriptlets=spec[start + 1 : end + 1]))
    run(
        [
            "rpmbuild",
            "-bb",
            "--nodeps",
            "--quiet",
            "--target",
            "x86_64",
            "--define",
            f"_topdir {top}",
            "--define",
            "_unitdir /usr/lib/systemd/system",
            "--define",
            "debug_package %{nil}",
            str(path),
        ]
    )
    rpm = top / "RPMS/x86_64" / f"hitless-{BROKEN_VERSION}-1.x86_64.rpm"
    need(rpm.is_file(), f"rpmbuild made no {rpm.name}")
    return rpm
