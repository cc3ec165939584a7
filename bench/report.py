#!/usr/bin/env python3
"""Turn target/bench/results.json (written by bench/bench.py) into
docs/bench.md (tables) and docs/bench.png (plot, drawn with gnuplot).

    python3 bench/report.py [results.json] [--docs DIR]

Every figure is the median over the runs, with [min–max] beside it.
Standard library only; gnuplot (Debian's gnuplot-nox) draws the plot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1_000_000
MODES = ("keep-alive", "new-conn", "h2")  # client modes of the upgrade runs
STEADY_MODES = ("keep-alive", "new-conn", "h2", "h2-1conn")
MODE_NAMES = {"keep-alive": "HTTP/1.1 keep-alive", "new-conn": "new connection per request",
              "h2": "HTTP/2 (h2c)", "h2-1conn": "HTTP/2 (h2c), one connection"}
VARIANTS = ("hitless (socket)", "hitless (--listen)", "seed (Go)")
VARIANT_NAMES = {"hitless (socket)": "hitless, socket-activated",
                 "hitless (--listen)": "hitless, binds itself (`--listen`, no socket unit)",
                 "seed (Go)": "seed design (Go, fd 3 + `Shutdown`)"}


def med(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return (min(xs), max(xs)) if xs else (None, None)


def num(x, digits: int = 0) -> str:
    if x is None:
        return "–"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def fmt(xs, digits: int = 0, unit: str = "") -> str:
    """median [min–max]"""
    m = med(xs)
    if m is None:
        return "–"
    lo, hi = spread(xs)
    if lo == hi or len([x for x in xs if x is not None]) < 2:
        return f"{num(m, digits)}{unit}"
    return f"{num(m, digits)}{unit} [{num(lo, digits)}–{num(hi, digits)}]"


def mib(kb: float) -> str:
    return f"{kb * 1024 / MB:.2f} MB ({kb / 1024:.2f} MiB)"


def verdict(ok: bool, miss: str = "") -> str:
    return "met" if ok else f"**missed**{': ' + miss if miss else ''}"


# --- aggregation -------------------------------------------------------------

def steady_name(res: dict, mode: str) -> str:
    p = res["steady"]["params"]
    return {"h2": f"HTTP/2 (h2c), {p['h2_conns']} connections",
            "h2-1conn": "HTTP/2 (h2c), 1 connection"}.get(mode, MODE_NAMES[mode])


def steady_modes(res: dict) -> list[str]:
    seen = {r["mode"] for r in res["steady"]["runs"]}
    return [m for m in STEADY_MODES if m in seen]


def steady_groups(res: dict) -> dict:
    g = defaultdict(lambda: defaultdict(list))
    for r in res["steady"]["runs"]:
        for k in ("rps", "p50_ms", "p99_ms", "us_per_req", "user_us_per_req", "sys_us_per_req",
                  "server_core_busy", "other_cores", "errors"):
            g[(r["server"], r["mode"])][k].append(r.get(k))
    return g


def paired_ratios(res: dict, mode: str, key: str = "rps") -> list[float]:
    by_round = defaultdict(dict)
    for r in res["steady"]["runs"]:
        if r["mode"] == mode:
            by_round[r["round"]][r["server"]] = r[key]
    return [d["hitless"] / d["nginx"] for d in by_round.values() if d.get("nginx") and "hitless" in d]


def upgrade_groups(res: dict) -> dict:
    g = defaultdict(lambda: defaultdict(list))
    for r in res["upgrade"]["runs"]:
        if r["load"] == "wrk":
            k = g[(r["variant"], "wrk", "keep-alive")]
            k["lost"].append(r["lost"])
            k["refused"].append(r["socket_errors"]["connect"] + r["socket_errors"]["write"])
            k["requests"].append(r["requests"])
            k["rps"].append(r["rps"])
            k["restart_ms"].append(r["restart_cmd_ms"])
            continue
        for mode, m in r["modes"].items():
            k = g[(r["variant"], r["load"], mode)]
            k["failed"].append(m["failed"])
            k["p99"].append(m["during_p99_ms"])
            k["max"].append(m["during_max_ms"])
            k["window"].append(m["disturbed_ms"])
            k["base_p99"].append(m["baseline_p99_ms"])
            k["requests"].append(m["requests"])
            k["new_seen"].append(m["new_version_seen"])
            for reason, n in m["failures_by_reason"].items():
                k["reasons"].append((reason, n))
        k = g[(r["variant"], r["load"], "*")]
        k["restart_ms"].append(r["restart_cmd_ms"])
        if "slow" in r:
            k["slow_failed"].append(r["slow"]["failed"])
            k["slow_max"].append(r["slow"]["max_ms"])
            k["slow_on_old"].append(r["slow"]["answered_by"] == [r["from"]])
    return g


# --- the plot ----------------------------------------------------------------

def plot(res: dict, png: Path) -> bool:
    gp = shutil.which("gnuplot")
    if not gp:
        print("report: gnuplot not found, no plot (apt-get install gnuplot-nox)", file=sys.stderr)
        return False
    work = Path(tempfile.mkdtemp(prefix="hitless-plot-"))
    try:
        panels = []
        if "steady" in res:
            sg = steady_groups(res)
            rows_rps, rows_cpu = [], []
            for mode in steady_modes(res):
                h, n = sg[("hitless", mode)], sg[("nginx", mode)]
                rows_rps.append((mode, *stats3(h["rps"], 1e-3), *stats3(n["rps"], 1e-3)))
                rows_cpu.append((mode, *stats3(h["us_per_req"]), *stats3(n["us_per_req"])))
            write_dat(work / "rps.dat", rows_rps)
            write_dat(work / "cpu.dat", rows_cpu)
            panels.append(bars("rps.dat", "Steady state: throughput (1 core each)", "thousand req/s",
                               ["hitless", "nginx"]))
            panels.append(bars("cpu.dat", "Steady state: server CPU time per request", "µs / request",
                               ["hitless", "nginx"]))
        if "upgrade" in res:
            ug = upgrade_groups(res)
            rows_win, rows_fail = [], []
            for load, label in (("open", ""), ("open+slow", "\\n+ slow")):
                for mode in MODES:
                    row_w, row_f = [f"{mode}{label}"], [f"{mode}{label}"]
                    for v in VARIANTS:
                        k = ug.get((v, load, mode))
                        row_w += stats3(k["window"]) if k else ["NaN"] * 3
                        row_f += stats3(k["failed"]) if k else ["NaN"] * 3
                    rows_win.append(row_w)
                    rows_fail.append(row_f)
            row_f = ["wrk -c16"]
            for v in VARIANTS:
                k = ug.get((v, "wrk", "keep-alive"))
                row_f += stats3(k["lost"]) if k else ["NaN"] * 3
            rows_fail.append(row_f)
            write_dat(work / "win.dat", rows_win)
            write_dat(work / "fail.dat", rows_fail, zero_as=0.0)
            panels.append(bars("win.dat", "Restart under load: disturbed window (failed or slow requests)",
                               "ms (log scale)", list(VARIANTS), log=True))
            panels.append(bars("fail.dat", "Restart under load: failed requests per restart",
                               "requests (log scale; 0 = no bar)", list(VARIANTS), log=True))
        if not panels:
            return False
        rows = (len(panels) + 1) // 2
        script = [
            f"set terminal pngcairo size 1500,{560 * rows} font 'DejaVu Sans,10'",
            f"set output '{png}'",
            f"set multiplot layout {rows},2",
            "set style data histograms",
            "set style histogram errorbars gap 1 lw 1",
            "set style fill solid 0.8 border -1",
            "set boxwidth 0.9",
            "set key top left",
            "set grid ytics",
            "set bars 0.5",
            "set xtics font ',9'",
            "set bmargin 4",
        ] + panels + ["unset multiplot"]
        (work / "plot.gp").write_text("\n".join(script) + "\n")
        p = subprocess.run([gp, str(work / "plot.gp")], cwd=work, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"report: gnuplot failed:\n{p.stderr}", file=sys.stderr)
            return False
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stats3(xs, scale: float = 1.0):
    m = med(xs)
    if m is None:
        return ["NaN"] * 3
    lo, hi = spread(xs)
    return [m * scale, lo * scale, hi * scale]


def write_dat(path: Path, rows, zero_as=None) -> None:
    with open(path, "w") as f:
        for row in rows:
            cells = [f'"{row[0]}"']
            for x in row[1:]:
                if isinstance(x, str):
                    cells.append(x)
                elif zero_as is not None and x <= 0:
                    cells.append("0.01")  # log scale: 0 draws no bar (below the y range)
                else:
                    cells.append(f"{x:.6g}")
            f.write(" ".join(cells) + "\n")


def bars(dat: str, title: str, ylabel: str, names: list[str], log: bool = False) -> str:
    n = len(names)
    lines = [f"set title '{title}'", f"set ylabel '{ylabel}'"]
    lines += ["set logscale y", "set yrange [0.5:*]"] if log else ["unset logscale y", "set yrange [0:*]"]
    lines += ["set label 1 'no bar: 0 failed (seed: no h2c at all)' at graph 0.99, graph 0.96 right" if "0 = no bar" in ylabel else "unset label 1"]
    parts = []
    for i, name in enumerate(names):
        c = 2 + 3 * i
        parts.append(f"'{dat}' using {c}:{c + 1}:{c + 2}" + (":xtic(1)" if i == 0 else "") + f" title '{name}'")
    lines.append("plot " + ", ".join(parts))
    del n
    return "\n".join(lines)


# --- the Markdown ------------------------------------------------------------

def report(res: dict, png_name: str | None) -> str:
    meta = res["meta"]
    o: list[str] = []
    w = o.append
    w("# Benchmarks")
    w("")
    w("<!-- Generated by bench/run (bench/report.py) from target/bench/results.json. Do not edit by hand. -->")
    w("")
    mode = "**quick mode** (smoke test: fewer, shorter runs; numbers are indicative only)" if meta.get("quick") \
        else "full run"
    w(f"Measured {meta.get('started', '?')}, {mode}. Regenerate with `sudo bench/run` "
      "(about 10 minutes; `--quick` for a smoke test).")
    w("")
    w(machine_section(res))
    w("")
    w("Every figure is the **median** over the runs, with **[min–max]** of the runs beside it. "
      "Servers are interleaved run by run (A B, then B A, ...), so slow drifts of the machine hit all of them alike.")
    w("")
    if png_name:
        w(f"![benchmark plot]({png_name})")
        w("")
        w("Plot: bars are medians, whiskers the min–max over the runs. Bottom right: no bar means 0 failed "
          "requests (hitless socket-activated everywhere); the seed design has no HTTP/2 bars, it serves no h2c.")
        w("")
    w(targets_section(res))
    if "steady" in res:
        w(steady_section(res))
    if "upgrade" in res:
        w(upgrade_section(res))
    if "cost" in res:
        w(cost_section(res))
    w(method_section(res))
    return "\n".join(o).rstrip() + "\n"


def machine_section(res: dict) -> str:
    meta = res["meta"]
    q = meta.get("quiet_check", {})
    t = meta.get("tools", {})
    lines = [
        "## Machine and load",
        "",
        f"- {meta['cpu']}, {meta['cores']} cores, {meta['mem_gib']} GiB, {meta['os']}, Linux {meta['kernel']} "
        f"(virtualization: {meta.get('virtualization', '?')}).",
        f"- Tools: nginx {t.get('nginx', '?')}, {t.get('wrk', '?')}, {t.get('h2load', '?')}, "
        f"{t.get('go', '?')}, {t.get('rustc', '?')}; container: {t.get('systemd (container)') or '?'}.",
        f"- Load average at start: {' / '.join(str(x) for x in q.get('load', []))} (1/5/15 min)"
        + (f", after waiting {q.get('waited_s')} s for a quiet machine" if q.get("waited_s") else "")
        + (". The machine was **quiet** (1-min load < 0.5)." if q.get("quiet") else
           ". The machine was **not quiet**: other jobs were running, the numbers are noisier than they should be."),
    ]
    for part, what in (("steady", "steady-state runs"), ("upgrade", "restarts under load")):
        if part not in res:
            continue
        others = [r.get("other_cores") for r in res[part]["runs"]]
        rep = res[part].get("repeated_for_noise")
        noisy = sum(1 for r in res[part]["runs"] if r.get("noisy"))
        lines.append(f"- CPU used by everything outside the benchmark during the {what} (other jobs, kernel "
                     f"threads): {fmt(others, 2)} cores (of 2)"
                     + (f"; {rep} run(s) were repeated because other jobs used more than "
                        f"{meta.get('noise_limit', 0.25)} cores during them" if rep else "")
                     + (f"; **{noisy} run(s) kept although disturbed** (repeats exhausted)" if noisy else "") + ".")
    for part, ph in meta.get("phases", {}).items():
        lines.append(f"- Phase {part}: {ph['seconds']} s; load average {ph['load_before'][0]} before, "
                     f"{ph['load_after'][0]} after.")
    return "\n".join(lines)


def targets_section(res: dict) -> str:
    rows = []
    if "upgrade" in res:
        ug = upgrade_groups(res)
        total, restarts = 0, 0
        for (v, load, mode), k in ug.items():
            if v == "hitless (socket)":
                if load == "wrk":
                    total += sum(k["lost"])
                    restarts += len(k["lost"])
                elif mode != "*":
                    total += sum(k["failed"])
                elif mode == "*":
                    restarts += len(k["restart_ms"])
        ka_seed = ug.get(("seed (Go)", "wrk", "keep-alive"), {}).get("lost", [])
        rows.append(("zero failed requests during upgrades, every client mode",
                     f"hitless (socket-activated): {total} failed in {restarts} restarts "
                     f"(keep-alive, new-conn, h2, with and without slow requests, and wrk -c16); "
                     f"seed design under wrk -c16: {fmt(ka_seed)} lost per restart",
                     verdict(total == 0, f"{total} failed")))
    if "steady" in res:
        sg = steady_groups(res)
        kas = paired_ratios(res, "keep-alive")
        ka = med(kas)
        lo, hi = spread(kas)
        within = lo is not None and lo <= 1.0 <= hi
        noise = f", within the run-to-run spread" if within else ""
        cpu = med([h / n for h, n in zip(sg[("hitless", "keep-alive")]["us_per_req"],
                                         sg[("nginx", "keep-alive")]["us_per_req"])])
        rows.append(("keep-alive req/s ≥ nginx's", f"{ka:.2f}× nginx [{lo:.2f}–{hi:.2f}]; CPU per request "
                     f"{cpu:.2f}× nginx's",
                     verdict(ka >= 1.0, f"{(1 - ka) * 100:.0f}% below{noise}")
                     + (" (the spread includes 1.0: a tie)" if within and ka >= 1.0 else "")))
        p = res["steady"]["params"]
        for mode, how in (("h2", f"{p['h2_conns']} connections × {p['h2_streams']} streams"),
                          ("h2-1conn", f"1 connection × {p.get('h2_1conn_streams')} streams")):
            if mode not in steady_modes(res):
                continue
            h2s = paired_ratios(res, mode)
            h2 = med(h2s)
            rows.append((f"HTTP/2 req/s ≥ 1.75× nginx's ({how})", f"{h2:.2f}× nginx [{min(h2s):.2f}–{max(h2s):.2f}]",
                         verdict(h2 >= 1.75, f"{h2:.2f}× instead of 1.75× ({(1 - h2 / 1.75) * 100:.0f}% short)")))
        hc, nc = med(sg[("hitless", "new-conn")]["us_per_req"]), med(sg[("nginx", "new-conn")]["us_per_req"])
        rows.append(("new-connection server CPU per request ≤ nginx's",
                     f"{hc:.1f} µs vs nginx {nc:.1f} µs",
                     verdict(hc <= nc, f"{(hc / nc - 1) * 100:.0f}% more ({hc - nc:.1f} µs)")))
    if "cost" in res:
        c = res["cost"]
        r = med(c["ready_ms"]["socket"])
        rows.append(("exec → READY=1 within 10 ms", f"{r:.1f} ms (socket-activated)",
                     verdict(r <= 10, f"{r - 10:.1f} ms over")))
        rss = med(c["idle_rss_kb"]["socket"])
        rows.append(("idle RSS ≤ 4 MB", mib(rss),
                     verdict(rss * 1024 <= 4 * MB, f"{(rss * 1024 - 4 * MB) / MB:.2f} MB over "
                             f"(also over 4 MiB)" if rss > 4096 else f"{(rss * 1024 - 4 * MB) / MB:.2f} MB over "
                             "4 MB (within 4 MiB)")))
        size = c["size_bytes"]["hitless (stripped)"]
        rows.append(("stripped binary ≤ 3 MB", f"{size / MB:.2f} MB ({size / 1024 / 1024:.2f} MiB)",
                     verdict(size <= 3 * MB, f"{(size - 3 * MB) / MB:.2f} MB over")))
    out = ["## Targets", "", "| target | measured (hitless) | verdict |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out.append("")
    out.append("MB = 10⁶ bytes (the stricter reading of the targets); MiB in parentheses.")
    out.append("")
    return "\n".join(out)


def steady_section(res: dict) -> str:
    p = res["steady"]["params"]
    sg = steady_groups(res)
    o = ["## 1. Steady state: hitless vs nginx", ""]
    o.append(f"Each server gets one core (`taskset -c {p['server_cpu']}`; hitless' runtime then starts one worker "
             f"thread, nginx has `worker_processes 1`), the load generator the other (`taskset -c {p['client_cpu']}`). "
             f"{p['rounds']} runs of {p['seconds']:g} s per server and mode, after a 1 s warm-up. hitless serves "
             f"`{p['paths']['hitless']}` (`ok`), nginx `return 200 \"ok\\n\"` (bench/nginx.conf, access log off, "
             "no keep-alive request cap).")
    o.append("")
    o.append(f"- keep-alive: `wrk -t1 -c{p['wrk_conns']}`; new connection per request: the same with "
             f"`-H 'Connection: close'`; HTTP/2: `h2load -t1 -c{p['h2_conns']} -m{p['h2_streams']}` "
             f"(cleartext, prior knowledge; percentiles from its per-request log), and over one connection "
             f"`h2load -t1 -c1 -m{p.get('h2_1conn_streams', 100)}` (everything multiplexed, as behind a proxy). "
             "The HTTP/2 ratio depends on the connection count (nginx loses more than hitless as connections are "
             "added), so both are shown.")
    o.append("- server CPU per request = (utime + stime of the server's processes over the run, from "
             "`/proc/PID/stat`) / requests completed. \"core busy\" is that CPU time over the run's wall time: "
             "below 100 % the load generator, not the server, was the bottleneck, and req/s compares the clients "
             "as much as the servers; CPU per request is then the fairer comparison.")
    o.append("")
    o.append("| mode | server | req/s | hitless / nginx (paired by run) | p50 ms | p99 ms | server CPU µs/req "
             "| of which user / kernel | server core busy | errors |")
    o.append("|---|---|---|---|---|---|---|---|---|---|")
    for mode in steady_modes(res):
        for srv in ("hitless", "nginx"):
            k = sg[(srv, mode)]
            ratio = fmt(paired_ratios(res, mode), 2, "×") if srv == "hitless" else ""
            o.append(f"| {steady_name(res, mode)} | {srv} | {fmt(k['rps'])} | {ratio} | {fmt(k['p50_ms'], 3)} | "
                     f"{fmt(k['p99_ms'], 2)} | {fmt(k['us_per_req'], 1)} | "
                     f"{num(med(k['user_us_per_req']), 1)} / {num(med(k['sys_us_per_req']), 1)} | "
                     f"{fmt([x * 100 for x in k['server_core_busy']])} % | {sum(k['errors'])} |")
    o.append("")
    for mode in steady_modes(res):
        hp, np_ = med(sg[("hitless", mode)]["p99_ms"]), med(sg[("nginx", mode)]["p99_ms"])
        if hp and np_ and hp > 3 * np_:
            o.append(f"Note the latency tail of hitless in {steady_name(res, mode)}: p99 {hp:.1f} ms against nginx's "
                     f"{np_:.1f} ms, while its p50 is {med(sg[('hitless', mode)]['p50_ms']):.2f} ms against "
                     f"{med(sg[('nginx', mode)]['p50_ms']):.2f} ms: at full load on one worker thread some "
                     "requests wait much longer than the rest (cause not investigated here).")
            o.append("")
    cpu_ratios = {m: med([h / n for h, n in zip(sg[("hitless", m)]["us_per_req"], sg[("nginx", m)]["us_per_req"])])
                  for m in steady_modes(res)}
    o.append("Server CPU per request, hitless relative to nginx: " + ", ".join(
        f"{steady_name(res, m)} {cpu_ratios[m]:.2f}×" for m in steady_modes(res)) + " (below 1 = hitless cheaper). "
        "Turned around, the requests one fully used core would serve (10⁶ / µs per request): " + ", ".join(
        f"{steady_name(res, m)} hitless {num(1e6 / med(sg[('hitless', m)]['us_per_req']))} vs nginx "
        f"{num(1e6 / med(sg[('nginx', m)]['us_per_req']))} "
        f"({med(sg[('nginx', m)]['us_per_req']) / med(sg[('hitless', m)]['us_per_req']):.2f}×)"
        for m in steady_modes(res)) + ".")
    o.append("")
    rss = res["steady"].get("rss_kb", {})
    if rss:
        o.append("Memory during these runs (VmHWM, all processes of the server): " + "; ".join(
            f"{k}: idle {mib(v['idle'])}, peak {mib(v['peak'])}" for k, v in rss.items()) + ".")
        o.append("")
    return "\n".join(o)


def upgrade_section(res: dict) -> str:
    u = res["upgrade"]
    p = u["params"]
    ug = upgrade_groups(res)
    o = ["## 2. Upgrade under load, in a systemd container", ""]
    o.append(f"A Debian 12 container with systemd as PID 1 ({p['systemd']}; the driver of vm-tests/driver), "
             "three services side by side, each restarted onto the other version (the binary is renamed over "
             "the old one first, as a package manager does, then `systemctl restart`):")
    o.append("")
    for v in VARIANTS:
        desc = {
            "hitless (socket)": "the project's units/hitless.socket + hitless.service (Type=notify, hardened, "
                                "PrivateNetwork=yes) as shipped;",
            "hitless (--listen)": "bench/units/hitless-listen.service: the same binary binding 0.0.0.0:8081 "
                                  "itself, Type=notify, no socket unit, PrivateNetwork off;",
            "seed (Go)": "bench/seed (Go, `net.FileListener` on fd 3, `http.Server.Shutdown` on SIGTERM) with "
                         "bench/units/seed.socket + seed.service (Type=simple, light hardening).",
        }[v]
        o.append(f"- **{VARIANT_NAMES[v]}**: {desc}")
    o.append("")
    h2 = u.get("h2c_served", {})
    o.append(f"Load (bench/loadgen, pinned to the other core; the services get `CPUAffinity=0`): open loop, "
             f"**{p['rate_per_mode']} requests/s per client mode**, each latency counted from when the request "
             f"was due (no coordinated omission): keep-alive over {p['keepalive_conns']} connections, a new "
             "connection per request, and HTTP/2 over one multiplexed connection. "
             + ("The seed design serves no cleartext HTTP/2, so it gets only the two HTTP/1.1 modes "
                "(its offered load is two thirds of the others'). " if not h2.get("seed (Go)", True) else "")
             + f"The restart comes {p['restart_after_s']:g} s into the run; with slow requests, "
             f"{p['slow_count']} × `/slow?ms={p['slow_ms']}` go out {p['slow_sent_after_s']:g} s into the run, so "
             "they are in flight when the restart begins. A separate run per restart uses "
             f"`wrk -t1 -c{p['keepalive_conns']}` (saturating, closed loop: the way the seed design was measured "
             "before) and counts what wrk counts. "
             f"{p['rounds']} restarts per server and load.")
    o.append("")
    o.append("Definitions: *failed* = the request got no 2xx answer (refused, reset, closed before the answer, "
             "timeout). A keep-alive connection the server closed while idle is replaced before sending, as "
             "pooling clients do; a request already written to a connection that then closes is failed (the "
             "idle-close race). HTTP/2 streams refused unprocessed after GOAWAY are retried by the client, as "
             "the protocol allows. *During the upgrade* = requests due between `systemctl restart` and the "
             "later of (the command returning, the new version's first answer). *Disturbed window* = from the "
             "first disturbed request's start to the last one's end, where disturbed = failed or slower than "
             "5× the p99 of the 1.5 s before the restart (at least 10 ms), taking the cluster of such requests "
             "around the restart (gaps under 100 ms).")
    o.append("")
    for load, title in (("open", "Without slow requests"),
                        ("open+slow", f"With {p['slow_count']} slow requests ({p['slow_ms']} ms) in flight")):
        o.append(f"### {title}")
        o.append("")
        o.append("| server | client mode | failed per restart | p99 ms during | max ms during | disturbed window ms "
                 "| failure reasons (all runs) |")
        o.append("|---|---|---|---|---|---|---|")
        for v in VARIANTS:
            for mode in MODES:
                k = ug.get((v, load, mode))
                if not k:
                    if mode == "h2" and not h2.get(v, True):
                        o.append(f"| {VARIANT_NAMES[v]} | {MODE_NAMES[mode]} | not served (no h2c) | | | | |")
                    continue
                reasons = defaultdict(int)
                for r, n in k["reasons"]:
                    reasons[r] += n
                rs = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "–"
                o.append(f"| {VARIANT_NAMES[v]} | {MODE_NAMES[mode]} | {fmt(k['failed'])} | {fmt(k['p99'], 1)} "
                         f"| {fmt(k['max'], 1)} | {fmt(k['window'], 0)} | {rs} |")
        o.append("")
        o.append("| server | `systemctl restart` took (ms) |" + (" slow requests failed | slow requests answered by "
                                                                 "the old process |" if load == "open+slow" else ""))
        o.append("|---|---|" + ("---|---|" if load == "open+slow" else ""))
        for v in VARIANTS:
            k = ug.get((v, load, "*"))
            if not k:
                continue
            extra = ""
            if load == "open+slow":
                extra = f" {sum(k['slow_failed'])} of {p['slow_count'] * len(k['slow_failed'])} | " \
                        f"{sum(k['slow_on_old'])} of {len(k['slow_on_old'])} runs |"
            o.append(f"| {VARIANT_NAMES[v]} | {fmt(k['restart_ms'], 0)} |{extra}")
        o.append("")
    o.append(f"### Saturating keep-alive: `wrk -t1 -c{p['keepalive_conns']}`, one restart per run")
    o.append("")
    o.append("| server | requests lost per restart (read errors + timeouts + non-2xx) | refused reconnects "
             "(connect + write errors; wrk retries them at once) | req/s over the run |")
    o.append("|---|---|---|---|")
    for v in VARIANTS:
        k = ug.get((v, "wrk", "keep-alive"))
        if k:
            o.append(f"| {VARIANT_NAMES[v]} | {fmt(k['lost'])} | {fmt(k['refused'])} | {fmt(k['rps'])} |")
    o.append("")
    st = u.get("start_ms")
    if st:
        a, b = st.get("as shipped"), st.get("without mount-namespace options")
        o.append("### Where hitless' restart time goes")
        o.append("")
        rs = ug.get(("hitless (socket)", "open", "*"), {}).get("restart_ms", [])
        ready = med(res.get("cost", {}).get("ready_ms", {}).get("socket", [])) if "cost" in res else None
        o.append(f"`systemctl start hitless.service` (returns at READY=1), timed in the container, "
                 f"{len(a)} times each: as shipped **{fmt(a, 1)} ms**; with a drop-in that turns off the options "
                 f"that build its mount namespace (ProtectSystem, ProtectHome, PrivateTmp, PrivateDevices, "
                 f"PrivateMounts, ProtectKernel*, ProtectControlGroups, ProtectClock, ProtectHostname, ProtectProc) "
                 f"**{fmt(b, 1)} ms**. So of the {num(med(rs))} ms a `systemctl restart` takes under load, starting "
                 f"the unit is {num(med(a))} ms, of which the sandbox is about {num(med(a) - med(b))} ms"
                 + (f" and the binary's own exec → READY=1 about {ready:.0f} ms (section 3)" if ready else "")
                 + "; the rest is systemd's stop/start job and the drain. The seed design's unit has much less "
                 "hardening and is Type=simple (systemd does not wait for it to be ready), so its restart is shorter.")
        o.append("")
    return "\n".join(o)


def cost_section(res: dict) -> str:
    c = res["cost"]
    o = ["## 3. Cost of the service", ""]
    o.append(f"exec → READY=1: the benchmark forks, execs the release binary (pinned to one core) with a "
             f"NOTIFY_SOCKET it listens on, and times from just before `execve` to the READY=1 datagram; "
             f"{c['runs']} runs each. RSS = VmRSS 0.3 s after READY=1, idle.")
    o.append("")
    o.append("| what | hitless | for comparison |")
    o.append("|---|---|---|")
    o.append(f"| exec → READY=1, socket-activated (fd 3) | {fmt(c['ready_ms']['socket'], 2)} ms | |")
    o.append(f"| exec → READY=1, `--listen` (binds itself) | {fmt(c['ready_ms']['listen'], 2)} ms | |")
    seed = c.get("seed_idle_rss_kb") or []
    o.append(f"| idle RSS, socket-activated | {mib(med(c['idle_rss_kb']['socket']))} "
             f"[{num(min(c['idle_rss_kb']['socket']))}–{num(max(c['idle_rss_kb']['socket']))} kB] | "
             + (f"seed (Go): {mib(med(seed))}" if seed else "") + " |")
    o.append(f"| idle RSS, `--listen` | {mib(med(c['idle_rss_kb']['listen']))} | |")
    rss = res.get("steady", {}).get("rss_kb", {})
    if rss:
        o.append(f"| peak RSS under the steady-state load (VmHWM) | {mib(rss['hitless']['peak'])} | "
                 f"nginx (master + worker): {mib(rss['nginx']['peak'])} |")
    s = c["size_bytes"]
    o.append(f"| binary, as built (target/versions) | {s['hitless (as built)'] / MB:.2f} MB | |")
    o.append(f"| binary, stripped (`strip`) | {s['hitless (stripped)'] / MB:.2f} MB "
             f"({s['hitless (stripped)'] / 1024 / 1024:.2f} MiB) | seed (Go, `-s -w`, static): "
             f"{s['seed (Go, -s -w)'] / MB:.2f} MB; nginx (dynamically linked): "
             f"{s['nginx (Debian, stripped; + shared libs)'] / MB:.2f} MB + shared libraries |")
    o.append("")
    b = c.get("rss_breakdown_kb")
    if b:
        files = sorted(b["by_file"].items(), key=lambda kv: -kv[1])
        o.append(f"What the idle RSS is (one socket-activated sample, /proc/PID/smaps): {b.get('Rss')} kB resident, "
                 f"of which **{b.get('Anonymous')} kB anonymous** (the process' own heap and stacks) and the rest "
                 "file-backed pages of the binary and the shared libraries, which the page cache shares with every "
                 f"other process using them (PSS {b.get('Pss')} kB). By mapping: "
                 + ", ".join(f"{name} {kb} kB" for name, kb in files[:6]) + ".")
        o.append("")
    bad = {k: v for k, v in c.get("exit_codes", {}).items() if k != "0"}
    if bad:
        o.append(f"Note: some hitless processes did not exit 0 on SIGTERM: {bad}.")
        o.append("")
    return "\n".join(o)


def method_section(res: dict) -> str:
    return "\n".join([
        "## How it is measured",
        "",
        "- `bench/run` installs the tools (apt: nginx-light, wrk, nghttp2-client, golang-go, "
        "golang-golang-x-net-dev, gnuplot-nox, systemd-container, debootstrap), builds hitless 1.0.0 and 2.0.0 "
        "(scripts/build-versions), the Go seed server and the load generator, runs bench/bench.py "
        "(raw results: target/bench/results.json) and bench/report.py (this page and the plot).",
        "- Steady state runs on the host, against loopback; the upgrade runs in an ephemeral container "
        "(vm-tests/driver/nspawn.py, its private network, loopback only).",
        "- bench/loadgen records every request (due time, latency, outcome, answering version); "
        "bench/bench.py reads the records and times `systemctl restart` inside the container, with the same clock.",
        "- Not measured here: more cores than 2, TLS, real networks, large bodies.",
        "",
    ])


def readme_text(res: dict) -> str:
    """The README's benchmark section: the command and the headline numbers
    of this run (docs/bench-readme.md; the lead copies it into README.md)."""
    meta = res["meta"]
    o = ["## Benchmarks", ""]
    o.append("`sudo bench/run` (Debian 12, as root; about 10 minutes, `--quick` for a 3-minute smoke test) installs "
             "its tools, builds everything, measures hitless against nginx and against the alternatives to socket "
             "activation, and writes [docs/bench.md](docs/bench.md) with a plot, [docs/bench.png](docs/bench.png). "
             "It is not part of CI.")
    o.append("")
    quiet = "quiet" if meta.get("quiet_check", {}).get("quiet") else "busy (other jobs running)"
    o.append(f"Headline numbers from the last run ({meta['cpu']}, {meta['cores']} cores, machine {quiet}; "
             f"{'quick mode, ' if meta.get('quick') else ''}medians):")
    o.append("")
    if "upgrade" in res:
        ug = upgrade_groups(res)
        p = res["upgrade"]["params"]
        hs_failed = sum(sum(k["failed"]) for (v, load, mode), k in ug.items()
                        if v == "hitless (socket)" and load != "wrk" and mode != "*")
        hs_lost = sum(sum(k["lost"]) for (v, load, _m), k in ug.items() if v == "hitless (socket)" and load == "wrk")
        restarts = sum(len(k["restart_ms"]) for (v, _l, m), k in ug.items() if v == "hitless (socket)" and m in ("*",)) \
            + len(ug.get(("hitless (socket)", "wrk", "keep-alive"), {}).get("lost", []))
        listen = [k["failed"] for (v, load, mode), k in ug.items() if v == "hitless (--listen)" and load == "open"
                  and mode != "*"]
        listen_slow = [k["failed"] for (v, load, mode), k in ug.items() if v == "hitless (--listen)"
                       and load == "open+slow" and mode != "*"]
        seed_wrk = ug.get(("seed (Go)", "wrk", "keep-alive"), {}).get("lost", [])
        win = lambda v: med([med(ug[(v, "open", m)]["window"]) for m in MODES if (v, "open", m) in ug])  # noqa: E731
        o.append(f"- **Upgrades under load** (systemd container, {p['rate_per_mode']} req/s per client mode): "
                 f"hitless, socket-activated, failed **{hs_failed + hs_lost} requests in {restarts} restarts** "
                 "(keep-alive, new connection per request, HTTP/2; with 3 s requests in flight; under wrk -c16). "
                 f"The same binary binding its own port fails {num(med([med(x) for x in listen]))} requests per "
                 f"mode per restart ({num(med([med(x) for x in listen_slow]))} while a 3 s request drains); the Go "
                 f"seed design loses {num(med(seed_wrk))} per restart under wrk -c16 and serves no cleartext HTTP/2.")
        st = res["upgrade"].get("start_ms") or {}
        sandbox = ""
        if st.get("as shipped") and st.get("without mount-namespace options"):
            a, b = med(st["as shipped"]), med(st["without mount-namespace options"])
            sandbox = (f"; about {a - b:.0f} ms of it is systemd building the hardened unit's mount namespace "
                       f"(`systemctl start` {a:.0f} ms as shipped, {b:.0f} ms without those options), the binary "
                       "itself is ready a few ms after exec")
        o.append(f"- **What a restart costs the clients**: requests are delayed for about "
                 f"{num(win('hitless (socket)'))} ms (disturbed window; seed design: {num(win('seed (Go)'))} ms)"
                 f"{sandbox}. A 3 s request in flight delays new requests by the rest of its 3 s, for the seed "
                 "design too (a restart is stop-then-start).")
    if "steady" in res:
        sg = steady_groups(res)
        parts = []
        for m in steady_modes(res):
            r = med(paired_ratios(res, m))
            parts.append(f"{steady_name(res, m)} {r:.2f}× nginx's req/s, {num(med(sg[('hitless', m)]['us_per_req']), 1)} "
                         f"vs {num(med(sg[('nginx', m)]['us_per_req']), 1)} µs CPU per request")
        o.append("- **Steady state**, one core each: " + "; ".join(parts) + ".")
    if "cost" in res:
        c = res["cost"]
        b = c.get("rss_breakdown_kb") or {}
        o.append(f"- **Cost**: exec → READY=1 in {med(c['ready_ms']['socket']):.1f} ms; idle RSS "
                 f"{med(c['idle_rss_kb']['socket']) * 1024 / MB:.1f} MB"
                 + (f" ({b['Anonymous'] * 1024 / MB:.2f} MB of it private, the rest shared library and binary "
                    "pages)" if b.get("Anonymous") else "")
                 + f"; stripped binary {c['size_bytes']['hitless (stripped)'] / MB:.2f} MB.")
    misses = [line for line in targets_section(res).splitlines() if "**missed**" in line]
    if misses:
        o.append("- **Targets missed**: " + "; ".join(
            f"{cells[1].strip()}: {cells[2].strip()} ({cells[3].replace('**missed**: ', '').strip()})"
            for cells in (m.split("|") for m in misses)) + ".")
    o.append("")
    return "\n".join(o)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("results", nargs="?", default=str(target / "bench/results.json"))
    ap.add_argument("--docs", default=str(REPO / "docs"))
    a = ap.parse_args()
    res = json.loads(Path(a.results).read_text())
    docs = Path(a.docs)
    docs.mkdir(parents=True, exist_ok=True)
    png = docs / "bench.png"
    have_png = plot(res, png)
    (docs / "bench.md").write_text(report(res, png.name if have_png else None))
    (docs / "bench-readme.md").write_text(readme_text(res))
    print(f"report: wrote {docs / 'bench.md'}, {docs / 'bench-readme.md'}" + (f" and {png}" if have_png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
