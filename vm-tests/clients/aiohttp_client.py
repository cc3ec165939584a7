#!/usr/bin/python3
"""GET --url in a loop with aiohttp, one ClientSession: its TCPConnector
keeps the connection alive and reuses it. Default settings, as an
application would use them (aiohttp retries nothing of its own accord in
this version). See client_report.py for the options and the report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from types import SimpleNamespace

import aiohttp
from client_report import VERSION_HEADER, Recorder, Report, arg_parser, gap


async def run(args: argparse.Namespace, rec: Recorder) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    rec.report.connections = 0

    async def connection_created(
        _session: aiohttp.ClientSession, _ctx: SimpleNamespace, _params: aiohttp.TraceConnectionCreateEndParams
    ) -> None:
        rec.report.connections = (rec.report.connections or 0) + 1

    trace = aiohttp.TraceConfig()
    # aiohttp 3.8 annotates the trace signals' callbacks wrongly (fixed in 3.9).
    trace.on_connection_create_end.append(connection_created)  # type: ignore[arg-type]
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=args.timeout), trace_configs=[trace]
    ) as session:
        while not stop.is_set():
            try:
                async with session.get(args.url) as resp:
                    await resp.read()
                    rec.answered(resp.status, resp.headers.get(VERSION_HEADER))
            except (TimeoutError, aiohttp.ClientError) as e:
                rec.failed(e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), gap(args, rec.report.requests))


def main() -> int:
    args = arg_parser(__doc__ or "").parse_args()
    rec = Recorder(args.report, Report(client="python-aiohttp", library=f"aiohttp {aiohttp.__version__}", method="GET"))
    asyncio.run(run(args, rec))
    rec.write(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
