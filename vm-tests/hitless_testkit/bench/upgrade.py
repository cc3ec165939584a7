"""Upgrade under load, in a systemd container: each variant is restarted
onto the other version while bench/loadgen (open loop, every request
recorded) or wrk (closed loop) keeps it busy."""

from __future__ import annotations

import argparse
import os
import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CannotRun
from ..install import copy_versions, install_units, swap_binary
from ..log import log
from ..nspawn import Machine, preflight
from ..rootfs import ensure_rootfs
from .host import Foreign, percentile, retried, run_timed
from .paths import CLIENT_CPU, SERVER_CPU, V1, V2, Paths
from .records import ModeWindow, OpenRun, SlowOutcome, UpgradeParams, UpgradeResults, WrkRun


@dataclass(frozen=True)
class Variant:
    unit: str
    """The unit restarted for an upgrade."""
    port: int
    binary: str
    """Path of the binary in the guest."""
    kind: str
    """Name of its versions in GUEST_STORE: `<kind>-<version>`."""
    h2c: bool
    """Whether it serves cleartext HTTP/2 (the h2 client mode is run)."""


VARIANTS = {
    "hitless (socket)": Variant("hitless.service", 8080, "/usr/bin/hitless", "hitless", True),
    "hitless (--listen)": Variant("hitless-listen.service", 8081, "/usr/bin/hitless", "hitless", True),
    "Go baseline": Variant("baseline-go.service", 8082, "/usr/local/bin/baseline-go", "baseline-go", False),
}
GUEST_STORE = "/usr/local/lib/hitless-bench"


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
    install_units(m, paths.repo / "units", ("hitless.socket", "hitless.service"))
    install_units(m, paths.assets / "units", ("hitless-listen.service", "baseline-go.socket", "baseline-go.service"))
    # Same pinning as the steady state: services on one core, load on the other.
    dropins = " ".join(f"/etc/systemd/system/{v.unit}.d" for v in VARIANTS.values())
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
    """Numbers for one client mode of one restart. All times in ns."""
    ok = [r for r in recs if r.outcome == "ok"]
    failed = [r for r in recs if r.outcome != "ok"]
    new_done = [r.due + r.latency for r in ok if r.version == new]
    serving_new = min(new_done) if new_done else None
    # "During the upgrade": from `systemctl restart` until the command has
    # returned and the new process has answered.
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


def restart(m: Machine, unit: str) -> tuple[int, int]:
    """`systemctl restart`, timed inside the guest (no nsenter latency)."""
    out = m.succeed(f"t0=$(date +%s%N); systemctl restart {unit}; t1=$(date +%s%N); echo $t0 $t1")
    t0, t1 = (int(x) for x in out.split()[-2:])
    return t0, t1


def swap_variant(m: Machine, variant: str) -> tuple[str, str]:
    """The package manager's part of an upgrade, done before the load
    starts: the other version's file is renamed over the binary (the running
    process keeps its inode). Returns (running version, new version)."""
    v = VARIANTS[variant]
    cur = served_version(m, v.port)
    new = V2 if cur == V1 else V1
    swap_binary(m, new, target=v.binary, name=v.kind, store=GUEST_STORE)
    return cur, new


def upgrade_run(m: Machine, variant: str, slow: bool, rnd: int, a: argparse.Namespace) -> OpenRun:
    """One restart under the open-loop load of bench/loadgen (every request
    recorded), optionally with slow requests in flight."""
    v = VARIANTS[variant]
    cur, new = swap_variant(m, variant)
    modes = "keep-alive,new-conn" + (",h2" if v.h2c else "")
    duration = a.upgrade_seconds + (a.slow_ms / 1000 if slow else 0)
    start_ns = time.time_ns() + 1_000_000_000
    restart_at = start_ns + 2_000_000_000  # 1 s after the slow requests went out
    rec_file = f"/tmp/loadgen-{rnd}-{v.port}-{int(slow)}.tsv"
    cmd = (
        f"taskset -c {CLIENT_CPU} /usr/local/bin/loadgen -addr 127.0.0.1:{v.port} -path / -modes {modes} "
        f"-rate {a.rate} -conns {a.conns} -start-at {start_ns} -duration {duration:g}s -out {rec_file}"
        + (f" -slow-count {a.slow_count} -slow-path '/slow?ms={a.slow_ms}' -slow-at 1s" if slow else "")
    )
    box: dict[str, Any] = {}

    def load() -> None:
        box["rc"], box["out"] = m.execute(cmd, timeout=duration + 90)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    time.sleep(max(0.0, (restart_at - time.time_ns()) / 1e9))
    t0, t1 = restart(m, v.unit)
    th.join()
    if box.get("rc") != 0:
        raise RuntimeError(f"loadgen failed ({box.get('rc')}): {box.get('out')}")
    meta, recs = read_records(Path(f"/proc/{m.leader}/root{rec_file}"))
    m.execute(f"rm -f {rec_file}")
    return OpenRun(
        variant=variant,
        load="open+slow" if slow else "open",
        round=rnd,
        from_version=cur,
        to_version=new,
        restart_cmd_ms=round((t1 - t0) / 1e6, 1),
        modes={mode: analyze_mode([r for r in recs if r.mode == mode], t0, t1, new) for mode in modes.split(",")},
        loadgen=meta,
        slow=analyze_slow([r for r in recs if r.mode == "slow"]) if slow else None,
    )


def wrk_run(m: Machine, variant: str, rnd: int, a: argparse.Namespace) -> WrkRun:
    """One restart under saturating keep-alive load: wrk -c16 (the host's
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
    t0, t1 = restart(m, v.unit)
    th.join()
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
        restart_cmd_ms=round((t1 - t0) / 1e6, 1),
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        socket_errors={k: errs.get(k, 0) for k in ("connect", "read", "write", "timeout")},
        non2xx=non2xx,
        # Requests sent that got no answer (read), timed out, or got an
        # error status; refused reconnects (connect/write) are attempts
        # wrk retries at once, counted apart.
        lost=errs.get("read", 0) + errs.get("timeout", 0) + non2xx,
    )


# Options whose removal makes systemd's start of hitless.service measurably
# faster (they set up the unit's mount namespace); used only to measure what
# the sandbox costs per restart, never in the restart runs themselves.
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
    """`systemctl start hitless.service` (returns at READY=1), timed in the
    guest: the unit as shipped, and without its mount-namespace options."""
    dropin = "/etc/systemd/system/hitless.service.d/zz-bench-no-mount-sandbox.conf"
    res = {}
    for label, opts in (("as shipped", None), ("without mount-namespace options", NO_MOUNT_SANDBOX)):
        if opts:
            body = "\\n".join(("[Service]", *opts))
            m.succeed(f"printf '{body}\\n' > {dropin}", "systemctl daemon-reload")
        xs = []
        for _ in range(n):
            m.execute("systemctl stop hitless.service 2>/dev/null")
            out = m.succeed(
                "t0=$(date +%s%N); systemctl start hitless.service; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 ))"
            )
            xs.append(int(out.split()[-1]) / 1000)
        if opts:
            m.succeed(f"rm -f {dropin}", "systemctl daemon-reload", "systemctl restart hitless.service")
        res[label] = xs
        log(f"systemctl start hitless.service ({label}): median {statistics.median(xs):.1f} ms")
    return res


def log_run(r: OpenRun | WrkRun, rounds: int, conns: int) -> None:
    head = f"upgrade {r.round + 1}/{rounds} {r.variant:18}"
    if isinstance(r, WrkRun):
        log(
            f"{head} wrk -c{conns}: restart {r.restart_cmd_ms} ms | {r.requests} requests, lost {r.lost}, "
            f"socket errors {r.socket_errors}, non-2xx {r.non2xx}"
        )
        return
    summ = "  ".join(
        f"{k}: {v.failed} failed, max {v.during_max_ms} ms, window {v.disturbed_ms} ms" for k, v in r.modes.items()
    )
    if r.slow:
        summ += f"  slow: {r.slow.failed} failed, by {r.slow.answered_by}"
    log(f"{head} {r.load:9} restart {r.restart_cmd_ms} ms | {summ} | other jobs {r.other_cores:.2f} cores")


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
        repeats = 0
        names = list(VARIANTS)
        for rnd in range(a.rounds):
            for load in ("open", "open+slow", "wrk"):
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for variant in order:

                    def attempt(variant: str = variant, load: str = load, rnd: int = rnd) -> list[OpenRun | WrkRun]:
                        f = Foreign()
                        r: OpenRun | WrkRun = (
                            wrk_run(m, variant, rnd, a)
                            if load == "wrk"
                            else upgrade_run(m, variant, load == "open+slow", rnd, a)
                        )
                        r.other_cores = f.cores()
                        return [r]

                    got, n = retried(f"upgrade {rnd + 1}/{a.rounds} {variant} {load}", a, attempt)
                    repeats += n
                    log_run(got[0], a.rounds, a.conns)
                    runs.append(got[0])
        starts = start_latency(m, a.start_runs)
        return UpgradeResults(
            start_ms=starts,
            params=UpgradeParams(
                rate_per_mode=a.rate,
                keepalive_conns=a.conns,
                seconds=a.upgrade_seconds,
                slow_count=a.slow_count,
                slow_ms=a.slow_ms,
                rounds=a.rounds,
                wrk_seconds=a.wrk_seconds,
                systemd=systemd_version,
                restart_after_s=2.0,
                slow_sent_after_s=1.0,
            ),
            h2c_served=h2,
            runs=runs,
            repeated_for_noise=repeats,
        )
