"""python3 -m hitless_testkit.bench: measure and write results.json (bench/run
runs this, then the report). See the package docstring for what is measured.

Needs root (nginx, containers) and the binaries bench/run builds: hitless
(scripts/build-versions), bench/minimal-hyper, bench/loadgen and the Go
baseline server.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EXIT_CANNOT_RUN, CannotRun
from ..log import Interrupted, die, install_signal_handlers, log, set_tag
from .cost import cost
from .host import loadavg, machine_info, wait_quiet
from .paths import V1, V2, Paths
from .records import CostResults, Phase, QuietCheck, SteadyResults, TailResults, UpgradeResults
from .steady import steady_state, tls_steady
from .tail import h2_tail
from .upgrade import upgrade_under_load

PARTS: dict[str, Callable[[argparse.Namespace, Paths], SteadyResults | TailResults | UpgradeResults | CostResults]] = {
    "steady": steady_state,
    "tail": h2_tail,
    "tls": tls_steady,
    "upgrade": upgrade_under_load,
    "cost": cost,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repo", default=".", help="the checkout (bench/run passes its own; default: .)")
    p.add_argument("--quick", action="store_true", help="fewer and shorter runs (a smoke test, ~3 min)")
    p.add_argument(
        "--only",
        action="append",
        choices=list(PARTS),
        help="run only these parts (repeatable); the others are taken from --previous if given",
    )
    p.add_argument("--rounds", type=int, help="runs per figure (default 5, quick 2)")
    p.add_argument("--steady-seconds", type=float, help="length of one steady-state run (default 5, quick 2)")
    p.add_argument("--wrk-conns", type=int, default=50)
    p.add_argument("--h2-conns", type=int, default=32)
    p.add_argument("--h2-streams", type=int, default=32)
    p.add_argument("--h2-1conn-streams", type=int, default=100)
    p.add_argument("--rate", type=int, default=1000, help="upgrade: requests/s per client mode (default 1000)")
    p.add_argument("--conns", type=int, default=16, help="upgrade: keep-alive connections (default 16)")
    p.add_argument(
        "--tail", type=float, default=2, help="upgrade: seconds of load after the upgrade command returned (default 2)"
    )
    p.add_argument("--slow-count", type=int, default=2, help="upgrade: slow requests in flight (default 2)")
    p.add_argument("--slow-ms", type=int, default=3000, help="upgrade: their duration (default 3000)")
    p.add_argument(
        "--dead-peer-rounds", type=int, help="upgrade: rounds with a dead peer (default 3, quick 1; at most --rounds)"
    )
    p.add_argument(
        "--dead-peer-age",
        type=float,
        default=7.5,
        help="upgrade: seconds the dead peer has been connected when the upgrade begins (default 7.5: more than "
        "Go's Shutdown needs to count it as idle, 7 s, less than hitless' header-read timeout, 10 s)",
    )
    p.add_argument(
        "--start-runs", type=int, help="upgrade: timed `systemctl start`s per unit variant (default 15, quick 5)"
    )
    p.add_argument("--wrk-seconds", type=float, default=4, help="upgrade: length of the wrk runs (default 4)")
    p.add_argument("--ready-runs", type=int, help="cost: exec->READY=1 samples per mode (default 20, quick 5)")
    p.add_argument(
        "--noise-limit",
        type=float,
        default=0.25,
        help="a run during which other jobs used more CPU than this (cores) is repeated (default 0.25)",
    )
    p.add_argument("--noise-retries", type=int, default=3, help="repeat a noisy run at most this often (default 3)")
    p.add_argument(
        "--noise-budget", type=float, help="seconds the whole run may spend repeating noisy runs (default 180, quick 0)"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help="wait up to this many seconds for a load average below --quiet-load before measuring",
    )
    p.add_argument("--quiet-load", type=float, default=0.5)
    p.add_argument("--previous", help="results.json whose parts not re-run are kept")
    p.add_argument("--out", help="results file (default: $CARGO_TARGET_DIR or <repo>/target, then bench/results.json)")
    a = p.parse_args(argv)
    a.rounds = a.rounds or (2 if a.quick else 5)
    a.steady_seconds = a.steady_seconds or (2 if a.quick else 5)
    a.ready_runs = a.ready_runs or (5 if a.quick else 20)
    a.start_runs = a.start_runs or (5 if a.quick else 15)
    a.dead_peer_rounds = a.dead_peer_rounds or (1 if a.quick else 3)
    if a.noise_budget is None:
        a.noise_budget = 0 if a.quick else 180
    return a


def check_inputs(paths: Paths) -> None:
    if os.geteuid() != 0:
        raise CannotRun("must run as root (containers, nginx)")
    needed = [
        paths.hitless(V1),
        paths.hitless(V2),
        paths.target / "release" / "minimal-hyper",
        paths.out / "loadgen",
        paths.baseline_go(V1),
        paths.baseline_go(V2),
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise CannotRun("not built (bench/run builds them): " + ", ".join(missing))


def run(a: argparse.Namespace, paths: Paths) -> None:
    parts = a.only or list(PARTS)
    # Parts not run now are kept from --previous, as JSON, with when they
    # were measured and their phase's figures.
    results: dict[str, Any] = json.loads(Path(a.previous).read_text()) if a.previous else {}
    previous_meta = results.get("meta") or {}
    meta = machine_info()
    for part in PARTS:
        if part not in parts and part in results:
            # When it was measured: the previous run's own date, or the
            # one it had kept the part from.
            meta.kept_from_previous[part] = (previous_meta.get("kept_from_previous") or {}).get(
                part
            ) or previous_meta.get("started", "?")
            if part == "upgrade":
                meta.tools["systemd (container)"] = results[part]["params"]["systemd"]
            if part in previous_meta.get("phases", {}):
                meta.phases[part] = Phase(**previous_meta["phases"][part])
    meta.quick = a.quick
    meta.started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta.parts_run = parts
    meta.noise_limit = a.noise_limit
    meta.quiet_check = (
        wait_quiet(a.wait_quiet, a.quiet_load)
        if a.wait_quiet
        else QuietCheck(waited_s=0, load=loadavg(), quiet=loadavg()[0] < a.quiet_load)
    )
    log(f"machine: {meta.cpu}, {meta.cores} cores; load {loadavg()}")

    out = Path(a.out) if a.out else paths.out / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    for part, fn in PARTS.items():
        if part not in parts:
            continue
        la0, t0 = loadavg(), time.monotonic()
        log(f"=== {part}")
        record = fn(a, paths)
        if isinstance(record, UpgradeResults):
            meta.tools["systemd (container)"] = record.params.systemd
        results[part] = dataclasses.asdict(record)
        meta.phases[part] = Phase(seconds=round(time.monotonic() - t0), load_before=la0, load_after=loadavg())
        results["meta"] = dataclasses.asdict(meta)
        # Saved after every part: a later failure keeps what was measured
        # (a partial file; bench/run makes the report only when the
        # measurement ends successfully, and the report says whether it was
        # a --quick run).
        partial.write_text(json.dumps(results, indent=1) + "\n")
    meta.finished = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results["meta"] = dataclasses.asdict(meta)
    out.write_text(json.dumps(results, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    log(f"results in {out}")


def main(argv: list[str] | None = None) -> int:
    set_tag("bench")
    a = parse_args(argv)
    paths = Paths.of(Path(a.repo).resolve())
    install_signal_handlers()
    try:
        check_inputs(paths)
        run(a, paths)
    except CannotRun as e:
        die(f"bench: cannot run: {e}")
        return EXIT_CANNOT_RUN
    except Interrupted as e:
        log(f"interrupted ({e}); servers and the container were torn down")
        return e.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
