#!/usr/bin/python3
"""GET --url in a loop with Python requests, one Session: urllib3's pool
keeps the connection alive and reuses it. Default settings, as an
application would use them: requests makes urllib3 retry nothing
(HTTPAdapter's max_retries=0); urllib3 only checks, before it reuses a
pooled connection, that the server has not closed it. See
client_report.py for the options and the report.

TCP connections are counted from urllib3's own debug log: it logs each new
connection, and each pooled one it found closed and so opens again."""

from __future__ import annotations

import logging

import requests
import urllib3
from client_report import VERSION_HEADER, Recorder, Report, arg_parser, gap, stop_on_signals


class ConnectionCounter(logging.Handler):
    """Counts urllib3.connectionpool's "Starting new HTTP connection" and
    "Resetting dropped connection" records: each is a TCP connect."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(("Starting new HTTP connection", "Resetting dropped connection")):
            self.count += 1


def main() -> int:
    args = arg_parser(__doc__ or "").parse_args()
    stop = stop_on_signals()
    rec = Recorder(
        args.report,
        Report(
            client="python-requests",
            library=f"requests {requests.__version__}, urllib3 {urllib3.__version__}",
            method="GET",
        ),
    )
    connections = ConnectionCounter()
    pool_log = logging.getLogger("urllib3.connectionpool")
    pool_log.setLevel(logging.DEBUG)
    pool_log.addHandler(connections)
    with requests.Session() as session:
        while not stop.is_set():
            try:
                resp = session.get(args.url, timeout=args.timeout)
                rec.answered(resp.status_code, resp.headers.get(VERSION_HEADER))
            except requests.RequestException as e:
                rec.failed(e)
            rec.report.connections = connections.count
            stop.wait(gap(args, rec.report.requests))
    rec.write(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
