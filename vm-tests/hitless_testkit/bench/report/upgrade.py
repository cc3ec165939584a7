"""Section 2: upgrade under load."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from .aggregate import upgrade_groups
from .common import (
    DEAD_PEER_NAMES,
    MODE_NAMES,
    MODES,
    OPEN_LOADS,
    VARIANT_NAMES,
    VARIANTS,
    Groups,
    Results,
    fmt,
    med,
    must_med,
    num,
)

VARIANT_DESCRIPTIONS = {
    "hitless flip": "the project's units as shipped (units/hitless.socket, hitless.service, hitless@.service and "
    "/usr/libexec/hitless/hitless-slots), upgraded the documented way: `systemctl reload hitless.service` starts "
    "the idle slot from the new binary, returns once it has said READY=1 and stayed up for the probation "
    "window (HITLESS_PROBATION_SEC, 3 s as shipped), and leaves the old slot to drain in the background;",
    "hitless restart": "the same units, upgraded with `systemctl restart hitless.service`: stop (every slot "
    "drains), then start; the socket queues new connections meanwhile;",
    "hitless (--listen)": "bench/units/hitless-listen.service: the same binary binding 0.0.0.0:8081 itself, "
    "Type=notify, no socket unit, PrivateNetwork off; `systemctl restart`;",
    "Go baseline": "bench/baseline-go (`net.FileListener` on fd 3, `http.Server.Shutdown` on SIGTERM) with "
    "bench/units/baseline-go.socket + .service (Type=simple, light hardening); `systemctl restart`.",
}


def load_title(load: str, p: dict[str, Any]) -> str:
    return {
        "open": "Nothing else in flight",
        "open+slow": f"{p['slow_count']} slow requests ({p['slow_ms']} ms) in flight",
        "open+dead-peer": "A dead peer connected to the old process",
    }[load]


def summary_table(ug: Groups, p: dict[str, Any]) -> list[str]:
    o = [
        "| server and upgrade | condition | failed per upgrade (all client modes) | worst new request ms "
        "| disturbed window ms | upgrade command ms |",
        "|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        for load in OPEN_LOADS:
            k = ug.get((v, load, "*"))
            if not k:
                continue
            o.append(
                f"| {VARIANT_NAMES[v]} | {load_title(load, p)} | {fmt(k['failed'])} | {fmt(k['max'], 1)} "
                f"| {fmt(k['window'], 0)} | {fmt(k['cmd_ms'], 0)} |"
            )
    return o


def mode_table(ug: Groups, load: str, h2: dict[str, bool]) -> list[str]:
    o = [
        "| server and upgrade | client mode | failed per upgrade | p99 ms during | worst new request ms "
        "| disturbed window ms | failure reasons (all runs) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        for mode in MODES:
            k = ug.get((v, load, mode))
            if not k:
                if mode == "h2" and not h2.get(v, True) and ug.get((v, load, "*")):
                    o.append(f"| {VARIANT_NAMES[v]} | {MODE_NAMES[mode]} | not served (no h2c) | | | | |")
                continue
            reasons: dict[str, int] = defaultdict(int)
            for r, n in k["reasons"]:
                reasons[r] += n
            reason_text = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "–"
            o.append(
                f"| {VARIANT_NAMES[v]} | {MODE_NAMES[mode]} | {fmt(k['failed'])} | {fmt(k['p99'], 1)} "
                f"| {fmt(k['max'], 1)} | {fmt(k['window'], 0)} | {reason_text} |"
            )
    return o


def command_table(ug: Groups, load: str, p: dict[str, Any], peers: dict[str, str]) -> list[str]:
    head = (
        "| server and upgrade | upgrade command took (ms) "
        "| old process stopped (ms after the command returned; negative: before) |"
    )
    rule = "|---|---|---|"
    if load == "open+slow":
        head += " slow requests failed | slow requests answered by the old process |"
        rule += "---|---|"
    if load == "open+dead-peer":
        head += " dead peer |"
        rule += "---|"
    o = [head, rule]
    for v in VARIANTS:
        k = ug.get((v, load, "*"))
        if not k:
            continue
        stopped = fmt(k["old_stopped"], 0) if k.get("old_stopped") else "before the new one started"
        extra = ""
        if load == "open+slow":
            extra = (
                f" {sum(k['slow_failed'])} of {p['slow_count'] * len(k['slow_failed'])} | "
                f"{sum(k['slow_on_old'])} of {len(k['slow_on_old'])} runs |"
            )
        if load == "open+dead-peer":
            extra = f" {DEAD_PEER_NAMES.get(peers.get(v, ''), '?')} |"
        o.append(f"| {VARIANT_NAMES[v]} | {fmt(k['cmd_ms'], 0)} | {stopped} |{extra}")
    return o


def upgrade_section(res: Results) -> str:
    u = res["upgrade"]
    p = u["params"]
    ug = upgrade_groups(res)
    h2 = u.get("h2c_served", {})
    peers = u.get("dead_peers", {})
    o = ["## 2. Upgrade under load, in a systemd container", ""]
    o.append(
        f"A Debian 12 container with systemd as PID 1 ({p['systemd']}; the driver hitless_testkit.nspawn), "
        "three services side by side, each upgraded onto the other version again and again (the binary is "
        "renamed over the old one first, as a package manager does, then the upgrade command runs). Four ways "
        "to upgrade:"
    )
    o.append("")
    for v in VARIANTS:
        o.append(f"- **{VARIANT_NAMES[v]}**: {VARIANT_DESCRIPTIONS[v]}")
    o.append("")
    o.append(
        f"Load (bench/loadgen, pinned to the other core; the services get `CPUAffinity=0`): open loop, "
        f"**{p['rate_per_mode']} requests/s per client mode**, each latency counted from when the request "
        f"was due (no coordinated omission): keep-alive over {p['keepalive_conns']} connections, a new "
        "connection per request, and HTTP/2 over one multiplexed connection. "
        + (
            "The Go baseline serves no cleartext HTTP/2, so it gets only the two HTTP/1.1 modes "
            "(its offered load is two thirds of the others'). "
            if not h2.get("Go baseline", True)
            else ""
        )
        + f"The upgrade command runs {p['upgrade_after_s']:g} s into the load, which goes on until "
        f"{p['tail_s']:g} s after the command returned. Three conditions:"
    )
    o.append("")
    o.append("- nothing else in flight;")
    o.append(
        f"- {p['slow_count']} × `/slow?ms={p['slow_ms']}` sent {p['slow_sent_after_s']:g} s into the load, so "
        "they are in flight when the upgrade begins;"
    )
    o.append(
        f"- a dead peer, connected to the old process {p['dead_peer_age_s']:g} s before the upgrade begins, "
        "that sent a little and then neither reads nor writes (bash's /dev/tcp: no client library that would "
        "answer for it). For hitless, an HTTP/2 peer that sent the connection preface and SETTINGS: it never "
        "answers the PING of a graceful HTTP/2 shutdown (GOAWAY, PING, final GOAWAY), which plain hyper waits "
        "for until the drain deadline. The Go baseline serves no h2c; its analogue is an HTTP/1.1 peer that "
        "sent half a request head. The peer's age lies between Go's `Shutdown` rule (a connection that has not "
        "finished its first request head counts as idle, and is closed at once, when it is more than 5 s old) "
        "and hitless' header-read timeout (such a peer is closed 10 s after it connected): the peer is "
        "still connected to either when the upgrade begins, and Go's `Shutdown` may close it at once. "
        f"{p['dead_peer_rounds']} upgrades per server in this condition."
    )
    o.append("")
    o.append(
        f"{p['rounds']} upgrades per server and condition otherwise. A separate run per upgrade uses "
        f"`wrk -t1 -c{p['keepalive_conns']}` (saturating, closed loop: a common way to measure restarts) and "
        "counts what wrk counts."
    )
    o.append("")
    o.append(
        "Definitions: *failed* = the request got no 2xx answer (refused, reset, closed before the answer, "
        "timeout). A keep-alive connection the server closed while idle is replaced before sending, as "
        "pooling clients do; a request already written to a connection that then closes is failed (the "
        "idle-close race). HTTP/2 streams refused unprocessed after GOAWAY are retried by the client, as "
        "the protocol allows. *During the upgrade* = requests due between the start of the upgrade command "
        "and the later of (the command returning, the new version's first answer); the *worst new request* is "
        "the slowest of them (the slow requests are not counted: they were sent before). *Disturbed window* "
        "= from the first disturbed request's start to the last one's end, where disturbed = failed or "
        "slower than 5× the p99 of the 1.5 s before the upgrade (at least 10 ms), taking the cluster of such "
        "requests around the upgrade (gaps under 100 ms)."
    )
    o.append("")
    o.append("### Summary")
    o.append("")
    o.append(
        "Per upgrade, over all client modes of the run: failed requests added up, the worst new request and "
        "the longest disturbed window of any mode."
    )
    o.append("")
    o += summary_table(ug, p)
    o.append("")
    fails = u.get("failed_upgrades", [])
    if fails:
        by = Counter(f["variant"] for f in fails)
        o.append(
            f"The upgrade command itself failed {len(fails)} time(s) ("
            + ", ".join(f"{VARIANT_NAMES[v]}: {n}" for v, n in by.items())
            + "); such a run measures no upgrade, so it was repeated. What happened: "
            + "; ".join(f"{f['variant']}, {f['load']}: {f['why']}" for f in fails)
            + "."
        )
        o.append("")
    for load in OPEN_LOADS:
        if not any(ug.get((v, load, "*")) for v in VARIANTS):
            continue
        o.append(f"### {load_title(load, p)}")
        o.append("")
        o += mode_table(ug, load, h2)
        o.append("")
        o += command_table(ug, load, p, peers)
        o.append("")
    o.append(f"### Saturating keep-alive: `wrk -t1 -c{p['keepalive_conns']}`, one upgrade per run")
    o.append("")
    o.append(
        "| server and upgrade | requests lost per upgrade (read errors + timeouts + non-2xx) | refused "
        "reconnects (connect + write errors; wrk retries them at once) | req/s over the run |"
    )
    o.append("|---|---|---|---|")
    for v in VARIANTS:
        k = ug.get((v, "wrk", "keep-alive"))
        if k:
            o.append(f"| {VARIANT_NAMES[v]} | {fmt(k['lost'])} | {fmt(k['refused'])} | {fmt(k['rps'])} |")
    o.append("")
    o += time_section(res, ug)
    return "\n".join(o)


def time_section(res: Results, ug: Groups) -> list[str]:
    st = res["upgrade"].get("start_ms")
    if not st:
        return []
    shipped, unsandboxed = st.get("as shipped"), st.get("without mount-namespace options")
    flip = med(ug.get(("hitless flip", "open", "*"), {}).get("cmd_ms", []))
    restart = med(ug.get(("hitless restart", "open", "*"), {}).get("cmd_ms", []))
    ready = med(res.get("cost", {}).get("ready_ms", {}).get("socket", [])) if "cost" in res else None
    o = ["### Where the upgrade's time goes", ""]
    o.append(
        f"`systemctl start hitless@blue.service` (one slot, returns at READY=1), timed in the container, "
        f"{len(shipped)} times each: as shipped **{fmt(shipped, 1)} ms**; with a drop-in that turns off the "
        "options that build its mount namespace (ProtectSystem, ProtectHome, PrivateTmp, PrivateDevices, "
        "PrivateMounts, ProtectKernel*, ProtectControlGroups, ProtectClock, ProtectHostname, ProtectProc) "
        f"**{fmt(unsandboxed, 1)} ms**. So of the {num(flip)} ms a flip takes under load, starting the new "
        f"slot is {num(must_med(shipped))} ms, of which the sandbox is about "
        f"{num(must_med(shipped) - must_med(unsandboxed))} ms"
        + (f" and the binary's own exec → READY=1 about {ready:.0f} ms (section 3)" if ready else "")
        + "; the probation window (3 s as shipped: the new slot must stay up that long, both slots serving, "
        "before the old one drains) is most of it, and the rest is hitless-slots' own systemctl calls "
        "(finding the live slot, clearing the idle slot's failed state, stopping the old slot) and "
        "systemd's reload job. A restart "
        f"({num(restart)} ms) waits for the old process to drain before it starts the new one. The Go "
        "baseline's unit has much less hardening and is Type=simple (systemd does not wait for it to be "
        "ready), so its restart is shorter."
    )
    o.append("")
    return o
