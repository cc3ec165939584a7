"""Certificate rotation over HTTPS is a flip: new files, `systemctl reload
hitless.service`; a certificate that cannot be used changes nothing."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

from .env import (
    CONTROLLER,
    Env,
    ScenarioFailed,
    live_slot,
    require_no_failed_slot,
    require_socket_untouched,
    served,
    socket_invocation,
)
from .probe import Probe
from .records import RotationResult, mode_numbers

# The common name of the certificate a new connection is shown, checked
# against the CA (Python's ssl module: no client library of ours).
PEER_CN = """
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=30)
with ctx.wrap_socket(raw, server_hostname="localhost") as s:
    print(dict(rdn[0] for rdn in s.getpeercert()["subject"])["commonName"])
"""


def served_certificate(env: Env) -> str:
    """The common name of the certificate the service presents now."""
    return env.client.succeed(f"python3 -c {shlex.quote(PEER_CN)} {shlex.quote(env.ca)} {env.port}").strip()


def certificate_rotation(env: Env, install: Callable[[str], None], new: str, broken: str) -> RotationResult:
    """Under HTTPS load: `install(new)` puts a new certificate and key where
    the slots' credentials come from, and a reload must flip to a slot that
    presents it (common name `new`), with no request failed; then
    `install(broken)` puts a pair that cannot be used (a key that is not the
    certificate's), and the reload must fail with exit code 7 in the
    rejected slot's log, while the live slot, its certificate and every
    request are untouched."""
    if not env.ca:
        raise ScenarioFailed("certificate rotation needs an https Env (ca set)")
    with env.subtest("certificate rotation is a flip; a broken certificate changes nothing"):
        cur = served(env).version
        before = served_certificate(env)
        old = live_slot(env)
        sock = socket_invocation(env)
        probe = Probe(env, "rotation", expect=[cur]).start()
        try:
            probe.wait_seen([cur])
            time.sleep(env.hold)
            install(new)
            t0 = time.monotonic()
            rc, out = env.server.execute(f"systemctl reload {CONTROLLER} 2>&1")
            rotate_s = time.monotonic() - t0
            if rc != 0:
                raise ScenarioFailed(f"reload with a new certificate failed: {out}")
            after = served_certificate(env)
            flipped = live_slot(env)
            if after != new or flipped.unit == old.unit:
                raise ScenarioFailed(f"after the reload {flipped.unit} presents {after!r}; want {new!r}, new slot")
            env.log(f"certificate rotation: {before} -> {after} in {rotate_s:.2f}s, now in {flipped.unit}")
            probe.fail_fast(probe.status())
            time.sleep(env.hold)

            install(broken)
            t0 = time.monotonic()
            rc, out = env.server.execute(f"systemctl reload {CONTROLLER} 2>&1")
            broken_s = time.monotonic() - t0
            if rc == 0:
                raise ScenarioFailed(f"the reload with a certificate that cannot be used succeeded: {out}")
            _, said = env.server.execute(
                "journalctl --sync; journalctl -u 'hitless@*' -o cat --grep 'cannot be used together' -n 1"
            )
            _, code = env.server.execute(
                f"journalctl -u 'hitless@*' -o cat --grep 'status=7/' -n 1; journalctl -u {CONTROLLER} -n 3 -o cat"
            )
            if "cannot be used together" not in said or "status=7/" not in code:
                raise ScenarioFailed(f"the rejected slot did not say why, or did not exit 7: {said!r} {code!r}")
            still = served_certificate(env)
            live = live_slot(env)
            if still != new or live.main_pid != flipped.main_pid:
                raise ScenarioFailed(f"after the rejected reload {live.unit} presents {still!r}, want {new!r}")
            require_no_failed_slot(env)
            env.log(f"a certificate that cannot be used: the reload failed after {broken_s:.2f}s; {said.strip()}")
            time.sleep(env.hold)
            probe.fail_fast(probe.status())
        finally:
            stopped = probe.stop()
        stopped.require_pass("certificate rotation")
        require_socket_untouched(env, sock)
        res = RotationResult(
            rotate_s=round(rotate_s, 2),
            served_before=before,
            served_after=after,
            broken_rejected_s=round(broken_s, 2),
            broken_said=said.strip(),
            modes=mode_numbers(stopped.report),
        )
        env.results["rotation"] = res
        return res
