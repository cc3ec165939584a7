#!/usr/bin/python3
"""GET --url in a loop with the curl command line tool, reusing its
connection: each curl process makes BATCH transfers of the same URL (listed
in a --config file) one after the other on one connection, which curl keeps
alive and reuses, paced with curl's own --rate; then the next process. curl
retries, of its own accord, a request on a reused connection that the server
closed before answering; nothing else is retried.

    curl_client.py --url URL --report FILE [--http2-prior-knowledge | --http2]

--http2-prior-knowledge speaks cleartext HTTP/2 without the HTTP/1.1
Upgrade (RFC 9113 section 3.3); --http2, for an https URL, offers h2 by TLS
ALPN (section 3.2); else HTTP/1.1. The CA curl trusts is its own setting
(CURL_CA_BUNDLE). Each transfer's outcome comes
from curl's --write-out: status, curl's exit code and error message, whether
it opened a connection (num_connects) or used one already open (no connect,
yet a local port), and the x-hitless-version header. A
failed transfer's error names whether it was on a new or a reused
connection; curl's own messages go to stderr. See client_report.py for the
other options and the report.
"""

from __future__ import annotations

import argparse
import subprocess

from client_report import Recorder, Report, arg_parser, stop_on_signals

WRITE_OUT = "%{http_code}\\t%{exitcode}\\t%{num_connects}\\t%{local_port}\\t%header{x-hitless-version}\\t%{errormsg}\\n"
"""One line per transfer (curl >= 7.84 for %header{})."""
BATCH = 100
"""Transfers per curl process, i.e. per connection when nothing closes it."""


def curl_version() -> str:
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0].split()
    # "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.x ... nghttp2/1.52.0 ..."
    parts = [" ".join(first[:2])] + [w for w in first if w.startswith(("libcurl/", "nghttp2/"))]
    return ", ".join(parts)


def curl_argv(args: argparse.Namespace, protocol: str, config: str) -> list[str]:
    """One curl process: the transfers listed in `config`, one after the
    other on one connection."""
    argv = [
        "stdbuf",
        "-oL",  # a line per transfer as it ends, not when curl exits
        "curl",
        "--silent",
        "--show-error",
        protocol,
        "--max-time",
        str(args.timeout),
        "--config",
        config,
        "--write-out",
        WRITE_OUT,
    ]
    if args.interval > 0:
        argv += ["--rate", f"{max(1, round(1 / args.interval))}/s"]
    return argv


def batch(argv: list[str], rec: Recorder) -> None:
    """Run one curl process; record each transfer as curl reports it."""
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            code, exitcode, connects, port, version, error = (line.rstrip("\n").split("\t") + [""] * 6)[:6]
            # No new connect, yet a local port: the transfer used a connection
            # an earlier one opened. (A connect that failed has no port.)
            reused = connects == "0" and port not in ("", "0")
            connection = "reused connection" if reused else "new connection"
            if exitcode != "0":
                rec.failed(f"{connection}: exit {exitcode}: {error}")
            else:
                rec.answered(int(code), version or None)
            if connects != "0":
                rec.report.connections = (rec.report.connections or 0) + int(connects or 0)


def main() -> int:
    p = arg_parser(__doc__ or "")
    h2 = p.add_mutually_exclusive_group()
    h2.add_argument("--http2-prior-knowledge", action="store_true", help="cleartext HTTP/2 (default HTTP/1.1)")
    h2.add_argument("--http2", action="store_true", help="HTTP/2 by TLS ALPN, for https (default HTTP/1.1)")
    args = p.parse_args()
    if args.pause_every:
        p.error("--pause-every: curl cannot pause inside one process")
    protocol, name = "--http1.1", "curl-http1.1"
    if args.http2_prior_knowledge:
        protocol, name = "--http2-prior-knowledge", "curl-h2c"
    elif args.http2:
        protocol, name = "--http2", "curl-h2"
    stop = stop_on_signals()
    rec = Recorder(args.report, Report(client=name, library=curl_version(), method="GET", connections=0))
    config = f"{args.report}.curlrc"
    with open(config, "w") as f:
        f.write(f'url = "{args.url}"\noutput = "/dev/null"\n' * BATCH)
    argv = curl_argv(args, protocol, config)
    while not stop.is_set():
        batch(argv, rec)
    rec.write(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
