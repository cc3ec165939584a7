"""Section 2: upgrade under load."""

from __future__ import annotations

from collections import defaultdict

from .aggregate import upgrade_groups
from .common import MODE_NAMES, MODES, VARIANT_NAMES, VARIANTS, Results, fmt, med, must_med, num


def upgrade_section(res: Results) -> str:
    u = res["upgrade"]
    p = u["params"]
    ug = upgrade_groups(res)
    o = ["## 2. Upgrade under load, in a systemd container", ""]
    o.append(
        f"A Debian 12 container with systemd as PID 1 ({p['systemd']}; the driver hitless_testkit.nspawn), "
        "three services side by side, each restarted onto the other version (the binary is renamed over "
        "the old one first, as a package manager does, then `systemctl restart`):"
    )
    o.append("")
    for v in VARIANTS:
        desc = {
            "hitless (socket)": "the project's units/hitless.socket + hitless.service (Type=notify, hardened, "
            "PrivateNetwork=yes) as shipped;",
            "hitless (--listen)": "bench/units/hitless-listen.service: the same binary binding 0.0.0.0:8081 "
            "itself, Type=notify, no socket unit, PrivateNetwork off;",
            "Go baseline": "bench/baseline-go (`net.FileListener` on fd 3, `http.Server.Shutdown` on SIGTERM) "
            "with bench/units/baseline-go.socket + .service (Type=simple, light hardening).",
        }[v]
        o.append(f"- **{VARIANT_NAMES[v]}**: {desc}")
    o.append("")
    h2 = u.get("h2c_served", {})
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
        + f"The restart comes {p['restart_after_s']:g} s into the run; with slow requests, "
        f"{p['slow_count']} × `/slow?ms={p['slow_ms']}` go out {p['slow_sent_after_s']:g} s into the run, so "
        "they are in flight when the restart begins. A separate run per restart uses "
        f"`wrk -t1 -c{p['keepalive_conns']}` (saturating, closed loop: a common way to measure "
        "restarts) and counts what wrk counts. "
        f"{p['rounds']} restarts per server and load."
    )
    o.append("")
    o.append(
        "Definitions: *failed* = the request got no 2xx answer (refused, reset, closed before the answer, "
        "timeout). A keep-alive connection the server closed while idle is replaced before sending, as "
        "pooling clients do; a request already written to a connection that then closes is failed (the "
        "idle-close race). HTTP/2 streams refused unprocessed after GOAWAY are retried by the client, as "
        "the protocol allows. *During the upgrade* = requests due between `systemctl restart` and the "
        "later of (the command returning, the new version's first answer). *Disturbed window* = from the "
        "first disturbed request's start to the last one's end, where disturbed = failed or slower than "
        "5× the p99 of the 1.5 s before the restart (at least 10 ms), taking the cluster of such requests "
        "around the restart (gaps under 100 ms)."
    )
    o.append("")
    for load, title in (
        ("open", "Without slow requests"),
        ("open+slow", f"With {p['slow_count']} slow requests ({p['slow_ms']} ms) in flight"),
    ):
        o.append(f"### {title}")
        o.append("")
        o.append(
            "| server | client mode | failed per restart | p99 ms during | max ms during | disturbed window ms "
            "| failure reasons (all runs) |"
        )
        o.append("|---|---|---|---|---|---|---|")
        for v in VARIANTS:
            for mode in MODES:
                k = ug.get((v, load, mode))
                if not k:
                    if mode == "h2" and not h2.get(v, True):
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
        o.append("")
        o.append(
            "| server | `systemctl restart` took (ms) |"
            + (" slow requests failed | slow requests answered by the old process |" if load == "open+slow" else "")
        )
        o.append("|---|---|" + ("---|---|" if load == "open+slow" else ""))
        for v in VARIANTS:
            k = ug.get((v, load, "*"))
            if not k:
                continue
            extra = ""
            if load == "open+slow":
                extra = (
                    f" {sum(k['slow_failed'])} of {p['slow_count'] * len(k['slow_failed'])} | "
                    f"{sum(k['slow_on_old'])} of {len(k['slow_on_old'])} runs |"
                )
            o.append(f"| {VARIANT_NAMES[v]} | {fmt(k['restart_ms'], 0)} |{extra}")
        o.append("")
    o.append(f"### Saturating keep-alive: `wrk -t1 -c{p['keepalive_conns']}`, one restart per run")
    o.append("")
    o.append(
        "| server | requests lost per restart (read errors + timeouts + non-2xx) | refused reconnects "
        "(connect + write errors; wrk retries them at once) | req/s over the run |"
    )
    o.append("|---|---|---|---|")
    for v in VARIANTS:
        k = ug.get((v, "wrk", "keep-alive"))
        if k:
            o.append(f"| {VARIANT_NAMES[v]} | {fmt(k['lost'])} | {fmt(k['refused'])} | {fmt(k['rps'])} |")
    o.append("")
    st = u.get("start_ms")
    if st:
        shipped, unsandboxed = st.get("as shipped"), st.get("without mount-namespace options")
        o.append("### Where hitless' restart time goes")
        o.append("")
        rs = ug.get(("hitless (socket)", "open", "*"), {}).get("restart_ms", [])
        ready = med(res.get("cost", {}).get("ready_ms", {}).get("socket", [])) if "cost" in res else None
        o.append(
            f"`systemctl start hitless.service` (returns at READY=1), timed in the container, "
            f"{len(shipped)} times each: as shipped **{fmt(shipped, 1)} ms**; with a drop-in that turns off the "
            f"options "
            f"that build its mount namespace (ProtectSystem, ProtectHome, PrivateTmp, PrivateDevices, "
            f"PrivateMounts, ProtectKernel*, ProtectControlGroups, ProtectClock, ProtectHostname, ProtectProc) "
            f"**{fmt(unsandboxed, 1)} ms**. So of the {num(med(rs))} ms a `systemctl restart` takes under load, "
            f"starting "
            f"the unit is {num(must_med(shipped))} ms, of which the sandbox is about "
            f"{num(must_med(shipped) - must_med(unsandboxed))} ms"
            + (f" and the binary's own exec → READY=1 about {ready:.0f} ms (section 3)" if ready else "")
            + "; the rest is systemd's stop/start job and the drain. The Go baseline's unit has much less "
            "hardening and is Type=simple (systemd does not wait for it to be ready), so its restart is shorter."
        )
        o.append("")
    return "\n".join(o)
