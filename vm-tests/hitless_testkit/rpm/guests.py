"""The package in systemd containers: one acting as EL8 (no
systemd-update-helper), one as EL9 (a stand-in helper and systemd's RPM
file triggers, rpm/tests/)."""

from __future__ import annotations

import functools
import json
import re
import shutil
import time
from pathlib import Path

from .. import scenarios as sc
from ..install import install_probe
from ..log import log
from ..nspawn import Machine, preflight, subtest
from ..outcomes import Outcomes
from ..rootfs import ensure_rootfs
from ..scenarios.env import live_slot, slot_states
from .builds import BROKEN_VERSION, build_broken
from .host import V2, CheckFailed, FlavorResult, RpmRun, RpmUpgrade, need, run

# README.md and docs/rpm.md tell users exactly this; the containers run it verbatim.
ENABLE_CMD = "systemctl enable --now hitless.socket"
FLAVORS = ("el8", "el9")


def standins(r: RpmRun) -> Path:
    """Build the noarch stand-in packages of rpm/tests/systemd-standin.spec."""
    top = r.tmp / "standin"
    (top / "SOURCES").mkdir(parents=True, exist_ok=True)
    shutil.copy(r.src / "rpm/tests/systemd-update-helper", top / "SOURCES/")
    run(
        [
            "rpmbuild",
            "-bb",
            "--nodeps",
            "--quiet",
            "--define",
            f"_topdir {top}",
            str(r.src / "rpm/tests/systemd-standin.spec"),
        ]
    )
    return top / "RPMS/noarch"


def containers(r: RpmRun, outcomes: Outcomes) -> None:
    """One check per flavor; raises CheckFailed when none can start."""
    problems = preflight()
    if problems:
        raise CheckFailed("cannot run containers: " + "; ".join(problems))
    for doc in ("README.md", "docs/rpm.md"):
        need(ENABLE_CMD in (r.src / doc).read_text(), f"{doc} does not tell users `{ENABLE_CMD}`")
    rootfs = ensure_rootfs()
    stand = standins(r)
    broken = build_broken(r)
    log_dir = r.out / "containers"
    for flavor in FLAVORS:
        outcomes.run(
            f"container {flavor}: rpm -i, enable, rpm -U under load, rpm -e",
            functools.partial(container_flow, r, flavor, rootfs, stand, broken, log_dir),
        )


def container_flow(r: RpmRun, flavor: str, rootfs: Path, standin_dir: Path, broken: Path, log_dir: Path) -> None:
    res = FlavorResult()
    if flavor == "el8":
        r.results.el8 = res
    else:
        r.results.el9 = res
    rpms = {r.v1: r.main_rpm("v1"), V2: r.main_rpm("v2"), BROKEN_VERSION: broken}
    helper = "/usr/lib/systemd/systemd-update-helper"
    with Machine(rootfs, name=f"hitless-rpm-{flavor}", log_dir=log_dir) as m:
        try:
            install_probe(m, r.probe)
            for p in rpms.values():
                m.copy_from_host(p, f"/root/rpms/{p.name}")
            standin = standin_dir / f"systemd-standin-{flavor}-1-1.noarch.rpm"
            m.copy_from_host(standin, f"/root/rpms/{standin.name}")
            # EL and Fedora ship a "disable *" preset (Debian enables
            # everything by default): installing must not enable anything.
            m.succeed(
                "mkdir -p /usr/lib/systemd/system-preset && "
                "echo 'disable *' > /usr/lib/systemd/system-preset/99-default-disable.preset"
            )
            m.succeed(f"rpm -i --nodeps /root/rpms/{standin.name} 2>/dev/null")
            if flavor == "el9":
                m.succeed(f"test -x {helper}")
            else:
                m.succeed(f"test ! -e {helper}")

            with subtest(f"{flavor}: rpm -i {r.v1}"):
                # EL8's kernel default; the package must warn about it. The
                # EL9 container keeps Linux >= 5.4's 4096: no warning.
                somaxconn = "128" if flavor == "el8" else "4096"
                m.succeed(f"sysctl -q -w net.core.somaxconn={somaxconn}")
                said = m.succeed(f"rpm -i --nodeps /root/rpms/{rpms[r.v1].name} 2>&1")
                warned = "net.core.somaxconn is 128, below the Backlog=4096" in said
                need(warned == (flavor == "el8"), f"rpm -i with somaxconn={somaxconn} said: {said!r}")
                m.succeed("sysctl -q -w net.core.somaxconn=4096")
                m.succeed(
                    "test -x /usr/bin/hitless",
                    "test -f /usr/lib/systemd/system/hitless.socket",
                    "test -f /usr/lib/systemd/system/hitless.service",
                    "test -f /usr/lib/systemd/system/hitless@.service",
                    "test -x /usr/libexec/hitless/hitless-slots",
                    "test -f /usr/share/licenses/hitless/LICENSE.dependencies",
                )
                # "indirect": the service has only Also=hitless.socket in [Install].
                for u, want in (("hitless.socket", "disabled"), ("hitless.service", "indirect")):
                    state = m.execute(f"systemctl is-enabled {u}")[1].strip()
                    need(state == want, f"after rpm -i, {u} is {state!r}, want {want!r} (preset: disable)")
                    m.require_unit_state(u, "inactive")
                if flavor == "el9":
                    m.succeed(
                        "grep -qx 'install-system-units hitless.socket hitless.service' "
                        "<(sed 's/^systemd-update-helper //' /run/systemd-update-helper.log)"
                    )

            with subtest(f"{flavor}: enable as docs/rpm.md says: {ENABLE_CMD}"):
                m.succeed(ENABLE_CMD)
                m.wait_for_unit("hitless.socket")
                info = json.loads(m.succeed("curl -sS --fail --max-time 30 http://127.0.0.1:8080/version"))
                need(info["version"] == r.v1 and info["socket_activated"], f"/version: {info}")
                need(
                    m.execute("systemctl is-enabled hitless.socket")[1].strip() == "enabled",
                    "hitless.socket not enabled",
                )

            sock_id = m.get_unit_property("hitless.socket", "InvocationID")
            upgrades: list[RpmUpgrade] = []

            def rpm_u(version: str) -> sc.Attempt:
                t0 = time.monotonic()
                rc, out = m.execute(
                    f"rpm -U --oldpackage --nodeps /root/rpms/{rpms[version].name} 2>&1 "
                    "| grep -v -e 'should not be used directly' -e 'assuming you know'; exit ${PIPESTATUS[0]}"
                )
                took = time.monotonic() - t0
                if out.strip():
                    log(f"rpm -U to {version} said: {out.strip()}")
                # What a failed flip prints: the scriptlet's line (EL8), or
                # systemctl's from systemd's file trigger (EL9).
                said_failed = "did not start" in out or "failed" in out.lower()
                return sc.Attempt(ok=rc == 0 and not said_failed, seconds=took, output=out)

            def rpm_upgrade(version: str) -> None:
                before = live_slot(env)
                got = rpm_u(version)
                need(got.ok, f"rpm -U to {version} failed: {got.output}")
                after = live_slot(env)
                need(
                    m.get_unit_property("hitless.socket", "InvocationID") == sock_id,
                    "hitless.socket was restarted by the upgrade",
                )
                need(
                    after.unit != before.unit and after.main_pid != before.main_pid,
                    f"rpm -U to {version} did not flip slots ({before} -> {after})",
                )
                need(sc.served(env).version == version, f"rpm -U to {version}: another version serves")
                markers = m.get_unit_property("hitless.service", "Markers")
                need(markers == "", f"hitless.service still marked {markers!r} after the transaction")
                need(m.succeed("rpm -q --qf '%{VERSION}' hitless").strip() == version, "rpm -q disagrees")
                upgrades.append(
                    RpmUpgrade(
                        to=version,
                        rpm_u_s=round(got.seconds, 2),
                        slots=[f"{before.unit} pid {before.main_pid}", f"{after.unit} pid {after.main_pid}"],
                    )
                )

            env = sc.Env(
                server=m,
                client=m,
                upgrade=rpm_upgrade,
                attempt=rpm_u,
                broken={"exits": BROKEN_VERSION},
                versions=[r.v1, V2],
                subtest=subtest,
                log=log,
            )
            res.upgrade = sc.upgrade_under_load(env, rounds=r.rounds)
            res.rpm_upgrades = upgrades

            with subtest(f"{flavor}: the package's own %posttrans did the flips, not a restart marker"):
                journal = m.succeed("journalctl -b --no-pager -o cat")
                flips = len(re.findall(r"hitless-slots: flip: hitless@\S+ serving", journal))
                need(flips >= r.rounds, f"hitless-slots reported only {flips} flips for {r.rounds} upgrades")
                if flavor == "el9":
                    hl = m.succeed("cat /run/systemd-update-helper.log")
                    need("mark-restart" not in hl, f"the package marked units for a restart:\n{hl}")
                res.flips = flips

            bad = sc.bad_build_rejected(env, "exits")
            res.bad_package = bad
            need(
                "hitless: the new version did not start; the old one keeps serving" in bad.attempt_output,
                f"rpm -U of the broken package did not say the new version failed: {bad.attempt_output!r}",
            )

            with subtest(f"{flavor}: rpm -U with the service stopped leaves it stopped"):
                cur = m.succeed("rpm -q --qf '%{VERSION}' hitless").strip()
                other = V2 if cur == r.v1 else r.v1
                m.succeed("systemctl stop hitless.service")
                m.succeed(f"rpm -U --oldpackage --nodeps /root/rpms/{rpms[other].name} 2>/dev/null")
                m.require_unit_state("hitless.service", "inactive")
                states = {u: st.active_state for u, st in slot_states(env).items()}
                need(set(states.values()) == {"inactive"}, f"a slot runs after rpm -U of a stopped service: {states}")
                m.require_unit_state("hitless.socket", "active")
                info = json.loads(m.succeed("curl -sS --fail --max-time 30 http://127.0.0.1:8080/version"))
                need(info["version"] == other, f"after the upgrade the socket started {info['version']}")

            with subtest(f"{flavor}: rpm -e"):
                m.succeed("rpm -e hitless 2>/dev/null")
                for slot in sc.SLOTS:
                    state = m.get_unit_property(slot, "ActiveState")
                    need(state in ("inactive", ""), f"{slot} is {state} after rpm -e")
                for u in ("hitless.socket", "hitless.service"):
                    state = m.get_unit_property(u, "ActiveState")
                    need(state in ("inactive", ""), f"{u} is {state} after rpm -e")
                    enabled = m.execute(f"systemctl is-enabled {u} 2>&1")[1].strip()
                    need("enabled" not in enabled.split(), f"{u} is-enabled: {enabled}")
                    # EL8's triggers reload systemd after the removal; EL9's
                    # reload comes from a %transfiletriggerpostun that rpm
                    # releases without the fix of rpm PR #3267 (Debian's
                    # 4.18 among them) never run for /usr/lib/systemd/system:
                    # the removed units stay loaded (inactive) until the next
                    # daemon-reload. See docs/rpm.md.
                    load = m.get_unit_property(u, "LoadState")
                    res.after_erase_loadstate[u] = load
                    if flavor == "el8":
                        need(load == "not-found", f"{u} LoadState={load} after rpm -e (no daemon-reload?)")
                m.fail("pgrep -x hitless")
                m.succeed("test -z \"$(find /etc/systemd/system -name 'hitless*')\"")
                for f in (
                    "/usr/bin/hitless",
                    "/usr/lib/systemd/system/hitless.socket",
                    "/usr/lib/systemd/system/hitless.service",
                    "/usr/lib/systemd/system/hitless@.service",
                    "/usr/libexec/hitless",
                    "/usr/share/licenses/hitless",
                    "/usr/share/doc/hitless",
                ):
                    m.succeed(f"test ! -e {f}")
                m.fail("ss -Hltn 'sport = :8080' | grep -q .")
                m.fail("rpm -q hitless")
        except Exception:
            m.dump_journal(sc.SOCKET, sc.CONTROLLER, *sc.SLOTS, lines=200)
            raise
