"""An upgrade while two peers that stopped reading hold the old version:
an HTTP/2 client that grants no flow-control window, and an HTTP/1.1 client
that pipelines requests and reads none of the answers."""

from __future__ import annotations

import shlex
import time

from .env import UPGRADE_BOUND_S, Env, ScenarioFailed, live_slot, other_version, served, unit_props, wait_slot_inactive
from .probe import Probe
from .records import StalledPeersResult, mode_numbers

DRAIN_DEADLINE_S = 20.0
"""The slots' drain deadline as shipped (--drain-timeout); the send timeout
(30 s) is longer, so the deadline is what ends these peers' connections."""

H2_PEER_UNIT = "hitless-zero-window-peer"
H1_PEER_UNIT = "hitless-pipelining-peer"

# HTTP/2 with prior knowledge (RFC 9113 §3.3): SETTINGS_INITIAL_WINDOW_SIZE
# = 0 (§6.5.2), then a GET on stream 1. It reads everything, acknowledges
# SETTINGS and answers PINGs (so the server's GOAWAY round trip completes),
# and never sends WINDOW_UPDATE: the response's body can never be sent.
# Raw frames keep it free of client libraries that would open the window.
ZERO_WINDOW_PEER = r"""
import socket, struct, sys
def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + struct.pack(">I", stream) + payload
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, struct.pack(">HI", 4, 0)))
# HPACK (RFC 7541): :method GET, :scheme http, :path /version, :authority t.
s.sendall(frame(1, 0x5, 1, b"\x82\x86\x44\x08/version\x41\x01t"))
buf = b""
while True:
    data = s.recv(65536)
    if not data:
        break
    buf += data
    while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
        n, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
        payload, buf = buf[9 : 9 + n], buf[9 + n :]
        if kind == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))
        if kind == 6 and not flags & 1:
            s.sendall(frame(6, 1, 0, payload))
"""

# HTTP/1.1 pipelining (RFC 9112 §9.3.2): many requests at once, on a socket
# with a small receive buffer, and never a read. 20,000 answers of about
# 350 bytes are more than the server's socket takes (tcp_wmem's 4 MiB at
# most), so the server's writes stall with answers still to send (2,000
# fit: the server had handed them all to the kernel and closed the idle
# connection at once).
PIPELINING_PEER = r"""
import socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
threading.Thread(target=s.sendall, args=(b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n" * 20000,), daemon=True).start()
time.sleep(600)
"""

CLEAN_END = (": Deactivated successfully.", ": Succeeded.")
"""systemd's journal line for a unit that stopped cleanly (248 and later;
247 and earlier)."""
WARNING = "cutting 2 connection(s) waiting for peers that stopped reading"
"""What the library logs when its drain deadline cuts only such peers: both
of them, still held at the deadline."""


def stalled_peers(env: Env) -> StalledPeersResult:
    """Both peers connect to the serving version; an upgrade under load must
    return within the probation window + UPGRADE_BOUND_S with no failed
    request; the old slot must stop at its drain deadline, exit 0 and end
    with Result=success (not failed), and say in its log what it cut."""
    s = env.server
    with env.subtest("upgrade with peers that stopped reading on the old version"):
        cur = served(env).version
        nxt = other_version(env, cur)
        old = live_slot(env)
        for unit, script in ((H2_PEER_UNIT, ZERO_WINDOW_PEER), (H1_PEER_UNIT, PIPELINING_PEER)):
            s.succeed(
                f"systemctl reset-failed {unit} 2>/dev/null || :",
                f"systemd-run --quiet --unit={unit} --service-type=exec python3 -c {shlex.quote(script)} {env.port}",
            )
        # Both established, and so held by the only slot there is: the old one.
        s.succeed(
            "for i in $(seq 50); do "
            f"[ $(ss -Htn state established '( dport = :{env.port} )' | wc -l) -ge 2 ] && exit 0; "
            "sleep 0.1; done; exit 1"
        )
        since = s.succeed("date '+%Y-%m-%d %H:%M:%S'").strip()
        probe = Probe(env, "stalled-peers", expect=[cur, nxt]).start()
        try:
            probe.wait_seen([cur])
            time.sleep(env.hold)
            t0 = time.monotonic()
            env.upgrade_to(nxt)
            upgraded_at = time.monotonic()
            upgrade_s = upgraded_at - t0
            probe.wait_seen([cur, nxt])
            stopped_s = wait_slot_inactive(env, old.unit, timeout=DRAIN_DEADLINE_S + 15)
            time.sleep(env.hold)
        finally:
            stopped = probe.stop()
            for unit in (H2_PEER_UNIT, H1_PEER_UNIT):
                s.execute(f"systemctl stop {unit}; systemctl reset-failed {unit}")
        stopped.require_pass("upgrade with peers that stopped reading")
        props = unit_props(s, old.unit, "Result", "ExecMainStatus")
        _, journal = s.execute(f"journalctl -u {old.unit} --since {shlex.quote(since)} --no-pager -o cat")
        warning = next((line.strip() for line in journal.splitlines() if WARNING in line), "")
        res = StalledPeersResult(
            upgrade_s=round(upgrade_s, 2),
            old_slot_stopped_s=round(stopped_s, 2),
            old_slot_result=props["Result"],
            old_slot_status=props["ExecMainStatus"],
            warning=warning,
            modes=mode_numbers(stopped.report),
        )
        env.log(
            f"stalled peers: the upgrade took {upgrade_s:.2f}s, the old slot stopped {stopped_s:.2f}s later "
            f"with Result={res.old_slot_result}, status {res.old_slot_status}; it said: {warning!r}"
        )
        problems = []
        if upgrade_s > env.probation_s + UPGRADE_BOUND_S:
            problems.append(f"the upgrade took {upgrade_s:.2f}s: it waited for the old version's drain")
        if (res.old_slot_result, res.old_slot_status) != ("success", "0"):
            problems.append(
                f"the old slot ended with Result={res.old_slot_result}, exit status {res.old_slot_status}: "
                "left failed by peers that stopped reading"
            )
        if not warning:
            problems.append(f"the old slot's log does not say what its drain cut ({WARNING!r})")
        # A cleanly stopped instance may be unloaded at once (systemctl then
        # shows defaults); systemd's own line in its journal says how it ended:
        # "Deactivated successfully." since systemd 248, "Succeeded." before.
        if not any(line.strip().endswith(CLEAN_END) for line in journal.splitlines()):
            tail = " | ".join(journal.splitlines()[-4:])
            problems.append(f"systemd did not log the old slot as ended cleanly; its journal ends: {tail}")
        if problems:
            raise ScenarioFailed("stalled peers: " + "; ".join(problems))
        env.results["stalled-peers"] = res
        return res
