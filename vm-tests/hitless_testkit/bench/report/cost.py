"""Section 3: cost of the service."""

from __future__ import annotations

from .common import MB, Results, fmt, mib, must_med, num


def cost_section(res: Results) -> str:
    c = res["cost"]
    o = ["## 3. Cost of the service", ""]
    o.append(
        f"exec → READY=1: the benchmark forks, execs the release binary (pinned to one core) with a "
        f"NOTIFY_SOCKET it listens on, and times from just before `execve` to the READY=1 datagram; "
        f"{c['runs']} runs each. RSS = VmRSS 0.3 s after READY=1, idle."
    )
    o.append("")
    o.append("| what | hitless | for comparison |")
    o.append("|---|---|---|")
    o.append(f"| exec → READY=1, socket-activated (fd 3) | {fmt(c['ready_ms']['socket'], 2)} ms | |")
    o.append(f"| exec → READY=1, `--listen` (binds itself) | {fmt(c['ready_ms']['listen'], 2)} ms | |")
    baseline = c.get("baseline_go_idle_rss_kb") or []
    o.append(
        f"| idle RSS, socket-activated | {mib(must_med(c['idle_rss_kb']['socket']))} "
        f"[{num(min(c['idle_rss_kb']['socket']))}–{num(max(c['idle_rss_kb']['socket']))} kB] | "
        + (f"Go baseline: {mib(must_med(baseline))}" if baseline else "")
        + " |"
    )
    o.append(f"| idle RSS, `--listen` | {mib(must_med(c['idle_rss_kb']['listen']))} | |")
    rss = res.get("steady", {}).get("rss_kb", {})
    if rss:
        o.append(
            f"| peak RSS under the steady-state load (VmHWM) | {mib(rss['hitless']['peak'])} | "
            f"nginx (master + worker): {mib(rss['nginx']['peak'])} |"
        )
    s = c["size_bytes"]
    o.append(f"| binary, as built (target/versions) | {s['hitless (as built)'] / MB:.2f} MB | |")
    o.append(
        f"| binary, stripped (`strip`) | {s['hitless (stripped)'] / MB:.2f} MB "
        f"({s['hitless (stripped)'] / 1024 / 1024:.2f} MiB) | Go baseline (`-s -w`, static): "
        f"{s['Go baseline (-s -w)'] / MB:.2f} MB; nginx (dynamically linked): "
        f"{s['nginx (Debian, stripped; + shared libs)'] / MB:.2f} MB + shared libraries |"
    )
    o.append("")
    b = c.get("rss_breakdown_kb")
    if b:
        files = sorted(b["by_file"].items(), key=lambda kv: -kv[1])
        o.append(
            f"What the idle RSS is (one socket-activated sample, /proc/PID/smaps): {b.get('Rss')} kB resident, "
            f"of which **{b.get('Anonymous')} kB anonymous** (the process' own heap and stacks) and the rest "
            "file-backed pages of the binary and the shared libraries, which the page cache shares with every "
            f"other process using them (PSS {b.get('Pss')} kB). By mapping: "
            + ", ".join(f"{name} {kb} kB" for name, kb in files[:6])
            + "."
        )
        o.append("")
    bad = {k: v for k, v in c.get("exit_codes", {}).items() if k != "0"}
    if bad:
        o.append(f"Note: some hitless processes did not exit 0 on SIGTERM: {bad}.")
        o.append("")
    return "\n".join(o)
