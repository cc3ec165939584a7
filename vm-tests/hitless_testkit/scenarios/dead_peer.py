"""An upgrade while an HTTP/2 peer that never reads is connected to the old
version."""

from __future__ import annotations

import shlex
import time

from .env import UPGRADE_BOUND_S, Env, ScenarioFailed, live_slot, other_version, served, wait_slot_inactive
from .probe import Probe, latency_bound_ms, steady_p99_ms
from .records import DeadPeerResult, mode_numbers

DEAD_PEER_UNIT = "hitless-dead-h2-peer"

# The client connection preface (RFC 9113 section 3.4) and an empty SETTINGS
# frame, then nothing: the peer never reads what the server sends, so it
# never answers the GOAWAY's PING. bash's /dev/tcp keeps the test free of
# client libraries that would answer it.
DEAD_PEER = (
    "exec 3<>/dev/tcp/127.0.0.1/{port}; "
    "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n\\x00\\x00\\x00\\x04\\x00\\x00\\x00\\x00\\x00' >&3; "
    "exec sleep 600"
)

# The same over TLS (ALPN h2): Python's ssl module reads only when asked,
# so after the handshake this peer never reads either.
DEAD_TLS_PEER = """
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname="localhost")
assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
time.sleep(600)
"""


def dead_h2_peer(env: Env, drain_timeout_s: float = 20.0) -> DeadPeerResult:
    """A raw HTTP/2 peer connects to the old version, sends the preface and
    SETTINGS, and then neither reads nor writes. An upgrade under load must
    return within the probation window + UPGRADE_BOUND_S, no request may
    fail or take longer than the latency bound, and the old slot must stop
    in the background within its drain deadline."""
    s = env.server
    with env.subtest("upgrade with a dead HTTP/2 peer on the old version"):
        cur = served(env).version
        nxt = other_version(env, cur)
        p99 = steady_p99_ms(env)
        bound = latency_bound_ms(p99)
        old = live_slot(env)
        if env.ca:
            peer = f"python3 -c {shlex.quote(DEAD_TLS_PEER)} {shlex.quote(env.ca)} {env.port}"
        else:
            peer = f"bash -c {shlex.quote(DEAD_PEER.format(port=env.port))}"
        s.succeed(f"systemd-run --quiet --unit={DEAD_PEER_UNIT} --service-type=exec {peer}")
        # Established, and so held by the only slot there is: the old one.
        s.succeed(
            "for i in $(seq 50); do "
            f"ss -Htn state established '( dport = :{env.port} )' | grep -q . && exit 0; sleep 0.1; done; exit 1"
        )
        probe = Probe(env, "dead-peer", expect=[cur, nxt]).start()
        try:
            probe.wait_seen([cur])
            time.sleep(env.hold)
            t0 = time.monotonic()
            env.upgrade_to(nxt)
            upgraded_at = time.monotonic()
            upgrade_s = upgraded_at - t0
            probe.wait_seen([cur, nxt])
            wait_slot_inactive(env, old.unit, timeout=drain_timeout_s + 15)
            drained_s = time.monotonic() - upgraded_at
            time.sleep(env.hold)
        finally:
            stopped = probe.stop()
            s.execute(f"systemctl stop {DEAD_PEER_UNIT}; systemctl reset-failed {DEAD_PEER_UNIT}")
        stopped.require_pass("upgrade with a dead HTTP/2 peer")
        res = DeadPeerResult(
            upgrade_s=round(upgrade_s, 2),
            old_slot_drained_s=round(drained_s, 2),
            steady_p99_ms=round(p99, 2),
            latency_bound_ms=round(bound, 1),
            modes=mode_numbers(stopped.report),
        )
        worst = max(m.max_ms for m in res.modes.values())
        env.log(
            f"dead HTTP/2 peer: the upgrade took {upgrade_s:.2f}s, new requests at most {worst:.1f} ms "
            f"(bound {bound:.1f}), the old slot stopped {drained_s:.2f}s later"
        )
        problems = []
        if upgrade_s > env.probation_s + UPGRADE_BOUND_S:
            problems.append(
                f"the upgrade took {upgrade_s:.2f}s, more than the probation window ({env.probation_s}s) "
                f"+ {UPGRADE_BOUND_S}s: it waited"
            )
        if worst > bound:
            problems.append(f"a new request took {worst:.1f} ms, over the bound of {bound:.1f} ms")
        if drained_s > drain_timeout_s + 5:
            problems.append(f"the old slot took {drained_s:.1f}s to stop, beyond its drain deadline")
        if problems:
            raise ScenarioFailed("dead HTTP/2 peer: " + "; ".join(problems))
        env.results["dead-h2-peer"] = res
        return res
