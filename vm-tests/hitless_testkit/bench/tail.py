"""The HTTP/2 latency tail under many streams on one worker thread: where it
comes from. The same h2load load as steady state's "h2" mode (h2_conns
connections x h2_streams streams, on the client core) against hitless and
bench/minimal-hyper (the smallest hyper server, no hitless code) pinned to
the server core, with tokio's multi-thread scheduler (one worker, as one
core gives it) and with its current-thread scheduler, and with fewer
streams in flight. What differs between the rows is the scheduler and the
number of stream tasks, not hitless."""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
from pathlib import Path

from ..log import log
from .host import free_port, retried
from .paths import V1, Paths
from .records import TailResults, TailRun
from .steady import SteadyServer, measure

FEW_STREAMS = 8
"""Streams per connection in the row with fewer stream tasks in flight."""


def h2_tail(a: argparse.Namespace, paths: Paths) -> TailResults:
    work = Path(tempfile.mkdtemp(prefix="hitless-bench-tail-"))
    minimal = paths.target / "release" / "minimal-hyper"
    configs = [
        ("hitless", "multi-thread", [str(paths.hitless(V1)), "--listen"], a.h2_streams),
        ("minimal hyper", "multi-thread", [str(minimal)], a.h2_streams),
        ("minimal hyper", "multi-thread", [str(minimal)], FEW_STREAMS),
        ("minimal hyper", "current-thread", [str(minimal), "--current-thread"], a.h2_streams),
    ]
    runs: list[TailRun] = []
    try:
        for rnd in range(a.rounds):
            for name, scheduler, argv, streams in configs:
                load = copy.copy(a)
                load.h2_streams = streams

                def one(
                    name: str = name,
                    scheduler: str = scheduler,
                    argv: list[str] = argv,
                    load: argparse.Namespace = load,
                    rnd: int = rnd,
                ) -> list[TailRun]:
                    port = free_port()
                    srv = SteadyServer(name.replace(" ", "-"), [*argv, f"127.0.0.1:{port}"], port, port, work)
                    try:
                        r = measure("h2", srv, "/", a.steady_seconds, load, work, rnd)
                    finally:
                        srv.stop()
                    return [
                        TailRun(
                            server=name,
                            scheduler=scheduler,
                            connections=load.h2_conns,
                            streams=load.h2_streams,
                            round=rnd,
                            rps=r.rps,
                            p50_ms=r.p50_ms,
                            p99_ms=r.p99_ms,
                            errors=r.errors,
                            other_cores=r.other_cores,
                        )
                    ]

                got, _ = retried(f"tail {rnd + 1}/{a.rounds} {name} {scheduler} -m{streams}", a, one)
                for r in got:
                    log(
                        f"tail {rnd + 1}/{a.rounds} {r.server:14} {r.scheduler:14} {r.connections}x{r.streams:<3} "
                        f"{r.rps:9.0f} req/s  p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms"
                    )
                runs += got
        return TailResults(runs=runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
