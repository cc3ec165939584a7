"""Upgrade under load, in a systemd container: each variant is upgraded to
the other version (hitless' slots flipped by `systemctl reload`, or a unit
restarted) while bench/loadgen (open loop, every request recorded) or wrk
(closed loop) keeps it busy; with nothing else, with slow requests in
flight, or with a dead peer connected to the old process."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CannotRun
from ..install import UNIT_FILES, copy_versions, install_helper, install_units, swap_binary
from ..log import log
from ..nspawn import Machine, preflight
from ..rootfs import ensure_rootfs
from ..scenarios.dead_peer import DEAD_PEER as DEAD_H2_PEER
from .host import Foreign, percentile, retried, run_timed
from .paths import CLIENT_CPU, SERVER_CPU, V1, V2, Paths
from .records import FailedUpgrade, ModeWindow, OpenRun, SlowOutcome, UpgradeParams, UpgradeResults, WrkRun


@dataclass(frozen=True)
class Variant:
    unit: str
    """The unit the upgrade command addresses."""
    verb: str
    """The upgrade: `systemctl <verb> <unit>` ("reload" flips hitless' slots)."""
    port: int
    binary: str
    """Path of the binary in the guest."""
    kind: str
    """Name of its versions in GUEST_STORE: `<kind>-<version>`."""
    h2c: bool
    """Whether it serves cleartext HTTP/2 (the h2 client mode is run)."""
    dead_peer: str
    """Which DEAD_PEERS connects to the old process in the dead-peer runs."""
    slots: bool = False
    """Runs as hitless@ slots (units/): after a flip the old slot may still
    drain, and the next run waits until it has stopped."""


VARIANTS = {
    "hitless flip": Variant("hitless.service", "reload", 8080, "/usr/bin/hitless", "hitless", True, "h2", slots=True),
    "hitless restart": Variant(
        "hitless.service", "restart", 8080, "/usr/bin/hitless", "hitless", True, "h2", slots=True
    ),
    "hitless (--listen)": Variant("hitless-listen.service", "restart", 8081, "/usr/bin/hitless", "hitless", True, "h2"),
    "Go baseline": Variant(
        "baseline-go.service", "restart", 8082, "/usr/local/bin/baseline-go", "baseline-go", False, "h1"
    ),
}
PINNED_UNITS = ("hitless.service", "hitless@.service", "hitless-listen.service", "baseline-go.service")
"""Every unit a server (or the slots' controller) runs in: pinned to SERVER_CPU."""
SLOTS = ("hitless@blue.service", "hitless@green.service")
GUEST_STORE = "/usr/local/lib/hitless-bench"

LOADS = ("open", "open+slow", "open+dead-peer", "wrk")
"""The conditions of one round, in the order they run."""

# A peer that connects to the old process and then neither reads nor writes,
# run with bash's /dev/tcp (no client library that would answer for it).
# HTTP/2 (hitless): the connection preface and SETTINGS; a graceful HTTP/2
# shutdown waits for the PING it never answers. HTTP/1.1 (the Go baseline
# serves no h2c): half a request head, the analogue for a server that waits
# for requests it has begun to read.
DEAD_PEERS = {
    "h2": DEAD_H2_PEER,
    "h1": "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET / HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n' >&3; exec sleep 600",
}
DEAD_PEER_UNIT = "bench-dead-peer"
UPGRADE_TRIES = 3
"""A run whose upgrade command failed is repeated, at most this often in all."""
LOAD_CAP_S = 60.0
"""The most one open-loop run sends for; it normally stops --tail seconds
after the upgrade command returned."""


@dataclass(frozen=True)
class LoadRecord:
    """One request of bench/loadgen's -out file."""

    mode: str
    due: int
    """When it was due, unix ns."""
    latency: int
    """ns, from due to answer (or failure)."""
    outcome: str
    """"ok" or the failure reason."""
    version: str
    """x-hitless-version of the answer."""


def guest_setup(m: Machine, paths: Paths) -> None:
    m.copy_from_host(paths.out / "loadgen", "/usr/local/bin/loadgen")
    copy_versions(m, {v: paths.hitless(v) for v in (V1, V2)}, store=GUEST_STORE)
    copy_versions(m, {v: paths.baseline_go(v) for v in (V1, V2)}, name="baseline-go", store=GUEST_STORE)
    install_units(m, paths.repo / "units", UNIT_FILES)
    install_helper(m, paths.repo / "units")
    install_units(m, paths.assets / "units", ("hitless-listen.service", "baseline-go.socket", "baseline-go.service"))
    # Same pinning as the steady state: services on one core, load on the other.
    dropins = " ".join(f"/etc/systemd/system/{u}.d" for u in PINNED_UNITS)
    m.succeed(
        f"for d in {dropins}; do mkdir -p $d; printf '[Service]\\nCPUAffinity={SERVER_CPU}\\n' > $d/bench.conf; done"
    )
    swap_binary(m, V1, store=GUEST_STORE)
    swap_binary(m, V1, target="/usr/local/bin/baseline-go", name="baseline-go", store=GUEST_STORE)
    m.succeed(
        "systemctl daemon-reload",
        "systemctl start hitless.socket baseline-go.socket",
        "systemctl start hitless.service hitless-listen.service baseline-go.service",
    )
    for v in VARIANTS.values():
        m.wait_for_unit(v.unit)
        m.wait_until_succeeds(f"curl -sf http://127.0.0.1:{v.port}/ >/dev/null", timeout=30)


def served_version(m: Machine, port: int) -> str:
    out = m.succeed(f"curl -sS --fail -o /dev/null -D - http://127.0.0.1:{port}/")
    for line in out.splitlines():
        if line.lower().startswith("x-hitless-version:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no x-hitless-version from port {port}")


def h2c_served(m: Machine, port: int) -> bool:
    rc, _ = m.execute(f"curl -sS --fail --max-time 5 --http2-prior-knowledge -o /dev/null http://127.0.0.1:{port}/")
    return rc == 0


def read_records(path: Path) -> tuple[dict[str, str], list[LoadRecord]]:
    meta: dict[str, str] = {}
    recs = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                meta = dict(kv.split("=", 1) for kv in line[1:].split())
                continue
            mode, due, lat_us, outcome, version = line.rstrip("\n").split("\t")
            recs.append(LoadRecord(mode, int(due), int(lat_us) * 1000, outcome, version))
    return meta, recs


def analyze_mode(recs: list[LoadRecord], t0: int, t1: int, new: str) -> ModeWindow:
    """Numbers for one client mode of one upgrade, which ran from t0 to t1.
    All times in ns."""
    ok = [r for r in recs if r.outcome == "ok"]
    failed = [r for r in recs if r.outcome != "ok"]
    new_done = [r.due + r.latency for r in ok if r.version == new]
    serving_new = min(new_done) if new_done else None
    # "During the upgrade": from the upgrade command until it has returned
    # and the new process has answered.
    wend = max(t1, serving_new or t1)
    base = [float(r.latency) for r in ok if t0 - 1_500_000_000 <= r.due < t0 - 100_000_000]
    base_p99 = percentile(base, 99) if base else 0
    during = [float(r.latency) for r in ok if t0 <= r.due <= wend]
    # A request is disturbed when it failed or took more than 5x the
    # baseline p99 (at least 10 ms). The disturbed window is the cluster of
    # disturbed requests around the restart: from the first one's start to
    # the last one's end, where each next one starts at most 100 ms after
    # the window so far ends (a lone slow request a second later is noise,
    # not the restart).
    thr = max(10_000_000, 5 * base_p99)
    dist = sorted(
        (r.due, r.due + r.latency)
        for r in recs
        if t0 - 200_000_000 <= r.due <= wend + 1_000_000_000 and (r.outcome != "ok" or r.latency > thr)
    )
    window = 0
    start: int | None = None
    end = 0
    for s_, e_ in dist:
        if start is not None and s_ <= end + 100_000_000:
            end = max(end, e_)
            continue
        if start is not None and end >= t0:
            break  # the cluster that reaches into the restart is complete
        start, end = s_, e_
    if start is not None and end >= t0:
        window = end - start
    return ModeWindow(
        requests=len(recs),
        failed=len(failed),
        failures_by_reason=dict(Counter(r.outcome for r in failed)),
        started_during=len([r for r in recs if t0 <= r.due <= wend]),
        during_p99_ms=round(percentile(during, 99) / 1e6, 2) if during else None,
        during_max_ms=round(max(during) / 1e6, 2) if during else None,
        baseline_p99_ms=round(base_p99 / 1e6, 3),
        disturbed_ms=round(window / 1e6, 1),
        new_version_seen=serving_new is not None,
        new_serving_after_ms=round((serving_new - t0) / 1e6, 1) if serving_new else None,
    )


def analyze_slow(recs: list[LoadRecord]) -> SlowOutcome:
    lat = [r.latency for r in recs]
    return SlowOutcome(
        requests=len(recs),
        failed=len([r for r in recs if r.outcome != "ok"]),
        failures_by_reason=dict(Counter(r.outcome for r in recs if r.outcome != "ok")),
        max_ms=round(max(lat) / 1e6, 1) if lat else None,
        answered_by=sorted({r.version for r in recs if r.outcome == "ok"}),
    )


class UpgradeFailed(Exception):
    """The upgrade command itself failed (the run measured no upgrade)."""


def upgrade(m: Machine, v: Variant) -> tuple[int, int, str | None]:
    """The upgrade command (`systemctl reload|restart`), timed inside the
    guest (no nsenter latency): unix ns before and after, and why it failed
    (None when it exited 0)."""
    out = m.succeed(f"t0=$(date +%s%N); systemctl {v.verb} {v.unit}; rc=$?; t1=$(date +%s%N); echo $t0 $t1 $rc")
    t0, t1, rc = (int(x) for x in out.split()[-3:])
    if rc == 0:
        return t0, t1, None
    _, journal = m.execute(f"journalctl -u {v.unit} -n 3 -o cat --no-pager")
    return t0, t1, f"`systemctl {v.verb} {v.unit}` exited {rc}: " + " / ".join(journal.strip().splitlines())


def slot_states(m: Machine) -> list[str]:
    return m.succeed(f"systemctl show --property=ActiveState --value {' '.join(SLOTS)}").split()


def settle(m: Machine, v: Variant, timeout: float = 40.0) -> None:
    """Wait until no slot is still draining (or starting), so that the next
    flip does not wait for this one's old slot."""
    if not v.slots:
        return
    deadline = time.monotonic() + timeout
    while any(st not in ("active", "inactive", "failed") for st in slot_states(m)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"hitless slots still changing state after {timeout:g}s: {slot_states(m)}")
        time.sleep(0.2)


def old_slot_stopped_after_ms(m: Machine, t0: int, t1: int) -> float | None:
    """After a flip that ran from t0 to t1 (unix ns) and once the slots have
    settled: when the old slot had stopped, in ms after t1, from systemd's
    "Stopped" message in the journal (None if no slot stopped since t0).
    An inactive slot is unloaded, so its unit properties forget the time."""
    units = " ".join(f"-u {u}" for u in SLOTS)
    out = m.succeed(
        f"journalctl {units} --since=@{t0 // 1_000_000_000} -o short-unix --no-pager | grep 'Stopped hitless@' || :"
    )
    stops = [int(float(line.split()[0]) * 1e9) for line in out.splitlines() if line[:1].isdigit()]
    since = [ns for ns in stops if ns >= t0]
    return round((max(since) - t1) / 1e6, 1) if since else None


def start_dead_peer(m: Machine, v: Variant) -> None:
    """Connect DEAD_PEERS[v.dead_peer] to the serving process and wait until
    its connection is established (nothing else is connected then)."""
    script = DEAD_PEERS[v.dead_peer].format(port=v.port)
    try:
        m.succeed(f"systemd-run --quiet --unit={DEAD_PEER_UNIT} --service-type=exec bash -c {shlex.quote(script)}")
        m.succeed(
            "for i in $(seq 50); do "
            f"ss -Htn state established '( dport = :{v.port} )' | grep -q . && exit 0; sleep 0.1; done; exit 1"
        )
    except Exception:
        stop_dead_peer(m)
        raise


def stop_dead_peer(m: Machine) -> None:
    m.execute(f"systemctl stop {DEAD_PEER_UNIT}; systemctl reset-failed {DEAD_PEER_UNIT} 2>/dev/null")


def swap_variant(m: Machine, variant: str) -> tuple[str, str]:
    """The package manager's part of an upgrade, done before the load
    starts: the other version's file is renamed over the binary (the running
    process keeps its inode). Returns (running version, new version)."""
    v = VARIANTS[variant]
    cur = served_version(m, v.port)
    new = V2 if cur == V1 else V1
    swap_binary(m, new, target=v.binary, name=v.kind, store=GUEST_STORE)
    return cur, new


def upgrade_run(m: Machine, variant: str, load: str, rnd: int, a: argparse.Namespace) -> OpenRun:
    """One upgrade under the open-loop load of bench/loadgen (every request
    recorded): "open" alone, "open+slow" with slow requests in flight,
    "open+dead-peer" with a dead peer connected to the old process."""
    v = VARIANTS[variant]
    cur, new = swap_variant(m, variant)
    slow, dead = load == "open+slow", load == "open+dead-peer"
    modes = "keep-alive,new-conn" + (",h2" if v.h2c else "")
    start_ns = time.time_ns() + 1_000_000_000
    if dead:
        start_dead_peer(m, v)
        # The peer has been connected for --dead-peer-age when the upgrade
        # begins, 2 s into the load.
        start_ns = max(start_ns, time.time_ns() + int((a.dead_peer_age - 2) * 1e9))
    upgrade_at = start_ns + 2_000_000_000  # 1 s after the slow requests went out
    tag = f"{rnd}-{v.port}-{v.verb}-{load.replace('+', '-')}"
    rec_file, stop_file = f"/tmp/loadgen-{tag}.tsv", f"/tmp/loadgen-{tag}.stop"
    cmd = (
        f"taskset -c {CLIENT_CPU} /usr/local/bin/loadgen -addr 127.0.0.1:{v.port} -path / -modes {modes} "
        f"-rate {a.rate} -conns {a.conns} -start-at {start_ns} -duration {LOAD_CAP_S:g}s "
        f"-stop-file {stop_file} -out {rec_file}"
        + (f" -slow-count {a.slow_count} -slow-path '/slow?ms={a.slow_ms}' -slow-at 1s" if slow else "")
    )
    box: dict[str, Any] = {}

    def run_load() -> None:
        box["rc"], box["out"] = m.execute(cmd, timeout=LOAD_CAP_S + 90)

    th = threading.Thread(target=run_load, daemon=True)
    th.start()
    try:
        time.sleep(max(0.0, (upgrade_at - time.time_ns()) / 1e9))
        t0, t1, failure = upgrade(m, v)
        # The load goes on for --tail seconds after the command returned
        # (the guest shares the host's clock).
        time.sleep(max(0.0, (t1 + int(a.tail * 1e9) - time.time_ns()) / 1e9))
    finally:
        Path(f"/proc/{m.leader}/root{stop_file}").touch()
        th.join()
        if dead:
            stop_dead_peer(m)
    m.execute(f"rm -f {stop_file}")
    if failure:
        if box.get("rc") == 0:
            _, lost = read_records(Path(f"/proc/{m.leader}/root{rec_file}"))
            bad = sum(1 for r in lost if r.outcome != "ok")
            serving = served_version(m, v.port)
            failure += f" (meanwhile {bad} of {len(lost)} requests failed; {serving} serving afterwards)"
        m.execute(f"rm -f {rec_file}")
        settle(m, v)
        raise UpgradeFailed(failure)
    if box.get("rc") != 0:
        raise RuntimeError(f"loadgen failed ({box.get('rc')}): {box.get('out')}")
    meta, recs = read_records(Path(f"/proc/{m.leader}/root{rec_file}"))
    m.execute(f"rm -f {rec_file}")
    settle(m, v)
    old_stopped = old_slot_stopped_after_ms(m, t0, t1) if v.verb == "reload" else None
    return OpenRun(
        variant=variant,
        load=load,
        round=rnd,
        from_version=cur,
        to_version=new,
        upgrade_cmd=f"systemctl {v.verb} {v.unit}",
        upgrade_cmd_ms=round((t1 - t0) / 1e6, 1),
        modes={mode: analyze_mode([r for r in recs if r.mode == mode], t0, t1, new) for mode in modes.split(",")},
        loadgen=meta,
        slow=analyze_slow([r for r in recs if r.mode == "slow"]) if slow else None,
        dead_peer=v.dead_peer if dead else None,
        old_stopped_after_ms=old_stopped,
    )


def wrk_run(m: Machine, variant: str, rnd: int, a: argparse.Namespace) -> WrkRun:
    """One upgrade under saturating keep-alive load: wrk -c16 (the host's
    wrk, in the guest's network namespace), the way such restarts are
    commonly measured. wrk only counts, so this gives failures, not
    latencies."""
    v = VARIANTS[variant]
    cur, new = swap_variant(m, variant)
    argv = [
        "nsenter",
        f"--target={m.leader}",
        "--net",
        "--",
        "taskset",
        "-c",
        str(CLIENT_CPU),
        "wrk",
        "-t1",
        f"-c{a.conns}",
        f"-d{a.wrk_seconds:g}s",
        f"http://127.0.0.1:{v.port}/",
    ]
    box: dict[str, str] = {}

    def load() -> None:
        box["out"], _ = run_timed(argv, timeout=a.wrk_seconds + 60)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    time.sleep(a.wrk_seconds / 2)
    t0, t1, failure = upgrade(m, v)
    th.join()
    settle(m, v)
    if failure:
        raise UpgradeFailed(failure)
    out = box.get("out") or ""
    line = re.search(r"Socket errors: (.*)", out)
    errs = {k: int(n) for k, n in re.findall(r"(connect|read|write|timeout) (\d+)", line.group(1))} if line else {}
    non2xx_m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(non2xx_m.group(1)) if non2xx_m else 0
    requests = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not requests or not rps:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return WrkRun(
        variant=variant,
        load="wrk",
        round=rnd,
        from_version=cur,
        to_version=new,
        upgrade_cmd=f"systemctl {v.verb} {v.unit}",
        upgrade_cmd_ms=round((t1 - t0) / 1e6, 1),
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        socket_errors={k: errs.get(k, 0) for k in ("connect", "read", "write", "timeout")},
        non2xx=non2xx,
        # Requests sent that got no answer (read), timed out, or got an
        # error status; refused reconnects (connect/write) are attempts
        # wrk retries at once, counted apart.
        lost=errs.get("read", 0) + errs.get("timeout", 0) + non2xx,
    )


# Options whose removal makes systemd's start of a slot measurably faster
# (they set up the unit's mount namespace); used only to measure what the
# sandbox costs per upgrade, never in the upgrade runs themselves.
NO_MOUNT_SANDBOX = (
    "ProtectSystem=no",
    "ProtectHome=no",
    "PrivateMounts=no",
    "ProtectKernelTunables=no",
    "ProtectKernelModules=no",
    "ProtectKernelLogs=no",
    "ProtectControlGroups=no",
    "ProtectClock=no",
    "ProtectHostname=no",
    "PrivateTmp=no",
    "PrivateDevices=no",
    "ProtectProc=default",
    "ProcSubset=all",
)


def start_latency(m: Machine, n: int) -> dict[str, list[float]]:
    """`systemctl start hitless@blue.service` (returns at READY=1: the part of
    a flip that starts the new slot), timed in the guest with
    hitless.service stopped: the slot unit as shipped, and without its
    mount-namespace options. Leaves hitless.service started."""
    dropin = "/etc/systemd/system/hitless@.service.d/zz-bench-no-mount-sandbox.conf"
    slot = SLOTS[0]
    m.succeed("systemctl stop hitless.service")
    res = {}
    for label, opts in (("as shipped", None), ("without mount-namespace options", NO_MOUNT_SANDBOX)):
        if opts:
            body = "\\n".join(("[Service]", *opts))
            m.succeed(f"printf '{body}\\n' > {dropin}", "systemctl daemon-reload")
        xs = []
        for _ in range(n):
            m.execute(f"systemctl stop {slot} 2>/dev/null")
            out = m.succeed(f"t0=$(date +%s%N); systemctl start {slot}; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 ))")
            xs.append(int(out.split()[-1]) / 1000)
        if opts:
            m.succeed(f"rm -f {dropin}", "systemctl daemon-reload")
        res[label] = xs
        log(f"systemctl start {slot} ({label}): median {statistics.median(xs):.1f} ms")
    m.succeed(f"systemctl stop {slot}", "systemctl start hitless.service")
    return res


def log_run(r: OpenRun | WrkRun, rounds: int, conns: int) -> None:
    head = f"upgrade {r.round + 1}/{rounds} {r.variant:18}"
    if isinstance(r, WrkRun):
        log(
            f"{head} wrk -c{conns}: {r.upgrade_cmd} {r.upgrade_cmd_ms} ms | {r.requests} requests, lost {r.lost}, "
            f"socket errors {r.socket_errors}, non-2xx {r.non2xx}"
        )
        return
    summ = "  ".join(
        f"{k}: {v.failed} failed, max {v.during_max_ms} ms, window {v.disturbed_ms} ms" for k, v in r.modes.items()
    )
    if r.slow:
        summ += f"  slow: {r.slow.failed} failed, by {r.slow.answered_by}"
    if r.old_stopped_after_ms is not None:
        summ += f"  old slot stopped {r.old_stopped_after_ms} ms after the flip"
    log(f"{head} {r.load:14} {r.upgrade_cmd} {r.upgrade_cmd_ms} ms | {summ} | other jobs {r.other_cores:.2f} cores")


def upgrade_under_load(a: argparse.Namespace, paths: Paths) -> UpgradeResults:
    problems = preflight()
    if problems:
        raise CannotRun("cannot run containers: " + "; ".join(problems))
    rootfs = ensure_rootfs()
    logdir = paths.out / "container-logs"
    with Machine(rootfs, name=f"hitless-bench-{os.getpid()}", log_dir=logdir) as m:
        guest_setup(m, paths)
        systemd_version = m.succeed("systemctl --version | head -n 1").strip()
        h2 = {name: h2c_served(m, v.port) for name, v in VARIANTS.items()}
        log(f"cleartext HTTP/2 served: {h2}")
        runs: list[OpenRun | WrkRun] = []
        failed: list[FailedUpgrade] = []
        repeats = 0
        names = list(VARIANTS)
        for rnd in range(a.rounds):
            for load in LOADS:
                if load == "open+dead-peer" and rnd >= a.dead_peer_rounds:
                    continue
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for variant in order:

                    def attempt(variant: str = variant, load: str = load, rnd: int = rnd) -> list[OpenRun | WrkRun]:
                        f = Foreign()
                        r: OpenRun | WrkRun = (
                            wrk_run(m, variant, rnd, a) if load == "wrk" else upgrade_run(m, variant, load, rnd, a)
                        )
                        r.other_cores = f.cores()
                        return [r]

                    label = f"upgrade {rnd + 1}/{a.rounds} {variant} {load}"
                    for _ in range(UPGRADE_TRIES):
                        try:
                            got, n = retried(label, a, attempt)
                            break
                        except UpgradeFailed as e:
                            log(f"{label}: the upgrade command failed, repeating the run: {e}")
                            failed.append(FailedUpgrade(variant=variant, load=load, round=rnd, why=str(e)))
                    else:
                        raise RuntimeError(f"{label}: the upgrade command failed {UPGRADE_TRIES} times")
                    repeats += n
                    log_run(got[0], a.rounds, a.conns)
                    runs.append(got[0])
        starts = start_latency(m, a.start_runs)
        return UpgradeResults(
            start_ms=starts,
            params=UpgradeParams(
                rate_per_mode=a.rate,
                keepalive_conns=a.conns,
                tail_s=a.tail,
                slow_count=a.slow_count,
                slow_ms=a.slow_ms,
                rounds=a.rounds,
                dead_peer_rounds=min(a.rounds, a.dead_peer_rounds),
                dead_peer_age_s=a.dead_peer_age,
                wrk_seconds=a.wrk_seconds,
                systemd=systemd_version,
                upgrade_after_s=2.0,
                slow_sent_after_s=1.0,
            ),
            h2c_served=h2,
            dead_peers={name: v.dead_peer for name, v in VARIANTS.items()},
            runs=runs,
            repeated_for_noise=repeats,
            failed_upgrades=failed,
        )
