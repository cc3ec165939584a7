"""Section 1: steady state, hitless against nginx."""

from __future__ import annotations

from .aggregate import paired_ratios, steady_groups, steady_modes, steady_name
from .common import Results, fmt, mib, must_med, num


def steady_section(res: Results) -> str:
    p = res["steady"]["params"]
    sg = steady_groups(res)
    o = ["## 1. Steady state: hitless vs nginx", ""]
    o.append(
        f"Each server gets one core (`taskset -c {p['server_cpu']}`; hitless' runtime then starts one worker "
        f"thread, nginx has `worker_processes 1`), the load generator the other (`taskset -c {p['client_cpu']}`). "
        f"{p['rounds']} runs of {p['seconds']:g} s per server and mode, after a 1 s warm-up. hitless serves "
        f'`{p["paths"]["hitless"]}` (a one-line text answer), nginx `return 200 "ok\\n"` '
        "(bench/nginx.conf, access log off, no keep-alive request cap)."
    )
    o.append("")
    o.append(
        f"- keep-alive: `wrk -t1 -c{p['wrk_conns']}`; new connection per request: the same with "
        f"`-H 'Connection: close'`; HTTP/2: `h2load -t1 -c{p['h2_conns']} -m{p['h2_streams']}` "
        f"(cleartext, prior knowledge; percentiles from its per-request log), and over one connection "
        f"`h2load -t1 -c1 -m{p.get('h2_1conn_streams', 100)}` (everything multiplexed, as behind a proxy). "
        "The HTTP/2 ratio depends on the connection count (nginx loses more than hitless as connections are "
        "added), so both are shown."
    )
    o.append(
        "- server CPU per request = (utime + stime of the server's processes over the run, from "
        '`/proc/PID/stat`) / requests completed. "core busy" is that CPU time over the run\'s wall time: '
        "below 100 % the load generator, not the server, was the bottleneck, and req/s compares the clients "
        "as much as the servers; CPU per request is then the fairer comparison."
    )
    o.append("")
    o += steady_table(res)
    o.append("")
    for mode in steady_modes(res):
        hp, np_ = must_med(sg[("hitless", mode)]["p99_ms"]), must_med(sg[("nginx", mode)]["p99_ms"])
        if hp and np_ and hp > 3 * np_:
            o.append(
                f"Note the latency tail of hitless in {steady_name(res, mode)}: p99 {hp:.1f} ms against nginx's "
                f"{np_:.1f} ms, while its p50 is {must_med(sg[('hitless', mode)]['p50_ms']):.2f} ms against "
                f"{must_med(sg[('nginx', mode)]['p50_ms']):.2f} ms: at full load on one worker thread some "
                "requests wait much longer than the rest"
                + (" (where it comes from: the next table)." if "tail" in res else ".")
            )
            o.append("")
    if "tail" in res:
        o += tail_table(res)
    o += cpu_lines(res)
    o += rss_lines(res)
    return "\n".join(o)


def steady_table(res: Results, part: str = "steady") -> list[str]:
    """The table of the steady part's runs, or of the tls part's."""
    sg = steady_groups(res, part)
    o = [
        "| mode | server | req/s | hitless / nginx (paired by run) | p50 ms | p99 ms | server CPU µs/req "
        "| of which user / kernel | server core busy | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in steady_modes(res, part):
        for srv in ("hitless", "nginx"):
            k = sg[(srv, mode)]
            ratio = fmt(paired_ratios(res, mode, part=part), 2, "×") if srv == "hitless" else ""
            o.append(
                f"| {steady_name(res, mode)} | {srv} | {fmt(k['rps'])} | {ratio} | {fmt(k['p50_ms'], 3)} | "
                f"{fmt(k['p99_ms'], 2)} | {fmt(k['us_per_req'], 1)} | "
                f"{num(must_med(k['user_us_per_req']), 1)} / {num(must_med(k['sys_us_per_req']), 1)} | "
                f"{fmt([x * 100 for x in k['server_core_busy']])} % | {sum(k['errors'])} |"
            )
    return o


def cpu_lines(res: Results, part: str = "steady") -> list[str]:
    """Server CPU per request, hitless relative to nginx, and turned around."""
    sg = steady_groups(res, part)
    modes = steady_modes(res, part)
    cpu_ratios = {
        m: must_med(
            [h / n for h, n in zip(sg[("hitless", m)]["us_per_req"], sg[("nginx", m)]["us_per_req"], strict=False)]
        )
        for m in modes
    }
    return [
        "Server CPU per request, hitless relative to nginx (the median of the runs' ratios, paired by run): "
        + ", ".join(f"{steady_name(res, m)} {cpu_ratios[m]:.2f}×" for m in modes)
        + " (below 1 = hitless cheaper). "
        "Turned around, the requests one fully used core would serve (10⁶ / µs per request): "
        + ", ".join(
            f"{steady_name(res, m)} hitless {num(1e6 / must_med(sg[('hitless', m)]['us_per_req']))} vs nginx "
            f"{num(1e6 / must_med(sg[('nginx', m)]['us_per_req']))} "
            f"({must_med(sg[('nginx', m)]['us_per_req']) / must_med(sg[('hitless', m)]['us_per_req']):.2f}×)"
            for m in modes
        )
        + ".",
        "",
    ]


def tail_table(res: Results) -> list[str]:
    """The HTTP/2 tail part: the same load against hitless and the minimal
    hyper server, by tokio scheduler and streams in flight."""
    runs = res["tail"]["runs"]
    keys: list[tuple[str, str, int, int]] = []
    for r in runs:
        k = (r["server"], r["scheduler"], r["connections"], r["streams"])
        if k not in keys:
            keys.append(k)
    o = [
        "HTTP/2 latency tail by tokio scheduler and stream tasks in flight (the same `h2load` load on the "
        "same cores, medians [min–max] over the runs; the minimal hyper server is bench/minimal-hyper, which "
        "has no hitless code):",
        "",
        "| server | tokio scheduler | connections × streams (tasks in flight) | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for server, scheduler, conns, streams in keys:
        rs = [
            r
            for r in runs
            if (r["server"], r["scheduler"], r["connections"], r["streams"]) == (server, scheduler, conns, streams)
        ]
        o.append(
            f"| {server} | {scheduler} | {conns} × {streams} ({conns * streams:,}) | "
            f"{fmt([r['rps'] for r in rs])} | {fmt([r['p50_ms'] for r in rs], 2)} | "
            f"{fmt([r['p99_ms'] for r in rs], 2)} |"
        )
    o += [
        "",
        "So the tail is not hitless': the minimal hyper server has it too, and it goes away with fewer stream "
        "tasks in flight or with tokio's current-thread scheduler. hyper serves every HTTP/2 stream as a "
        "task of its own. The multi-thread scheduler keeps a worker's runnable tasks in a local queue of 256 "
        "(tokio's LOCAL_QUEUE_CAPACITY); when more are woken, half of them move to the shared injection "
        "queue, which a worker looks at only once every few dozen tasks (its global queue interval, which "
        "tokio tunes from the mean poll time), so the "
        "streams that landed there wait behind many turns of the others. The current-thread scheduler's "
        "local queue has no such bound. nginx answers a stream within its connection's event instead.",
        "",
    ]
    return o


def rss_lines(res: Results, part: str = "steady") -> list[str]:
    """The servers' memory during the steady part's runs, or the tls part's."""
    rss = res[part].get("rss_kb", {})
    if not rss:
        return []
    return [
        "Memory during these runs (VmHWM, all processes of the server): "
        + "; ".join(f"{k}: idle {mib(v['idle'])}, peak {mib(v['peak'])}" for k, v in rss.items())
        + ".",
        "",
    ]
