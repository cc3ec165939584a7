#!/usr/bin/python3
"""An HTTP/1.1 server that loses every second request on a connection, the
way a server that closes idle keep-alive connections does when a request
arrives just as it closes: it answers the first request on each connection
(keep-alive, with x-hitless-version: idle-close), then reads the second one
completely and closes the connection without answering it (FIN, nothing
unread). RFC 9112 section 9.3.1 lets a client retry such a request if it is
idempotent; the clients scenario uses this server to check which libraries
do by default.

    idle_close_server.py --port 18081

Standard library only (Debian's python3 runs it in the container).
"""

from __future__ import annotations

import argparse
import socket
import threading

ANSWER = b"content-length: 3\r\nx-hitless-version: idle-close\r\n\r\nok\n"


def read_request(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    """One request (head and Content-Length body) from `buf` plus what
    arrives; returns its head and what is left, or None at end of stream."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None
        rest += data
    return head, rest[length:]


def serve(conn: socket.socket) -> None:
    with conn:
        got = read_request(conn, b"")
        if got is None:
            return
        head, rest = got
        # hitless serves GET and HEAD; it answers other methods 405.
        status = b"200 OK" if head.startswith((b"GET ", b"HEAD ")) else b"405 Method Not Allowed"
        conn.sendall(b"HTTP/1.1 " + status + b"\r\n" + ANSWER)
        read_request(conn, rest)
        # Closing here: the second request was received, and is not answered.


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    with socket.create_server(("127.0.0.1", args.port), backlog=128) as listener:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main())
