"""Runs of results.json grouped for the tables and the plot."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .common import MODE_NAMES, STEADY_MODES, Groups, Results


def steady_name(res: Results, mode: str) -> str:
    if mode not in ("h2", "h2-1conn"):
        return MODE_NAMES[mode]
    p = res["steady"]["params"]
    return {"h2": f"HTTP/2 (h2c), {p['h2_conns']} connections", "h2-1conn": "HTTP/2 (h2c), 1 connection"}[mode]


def steady_modes(res: Results, part: str = "steady") -> list[str]:
    """The modes `part` (steady, or tls: the same runs over TLS) measured."""
    seen = {r["mode"] for r in res[part]["runs"]}
    return [m for m in STEADY_MODES if m in seen]


def steady_groups(res: Results, part: str = "steady") -> Groups:
    g: Groups = defaultdict(lambda: defaultdict(list))
    for r in res[part]["runs"]:
        for k in (
            "rps",
            "p50_ms",
            "p99_ms",
            "us_per_req",
            "user_us_per_req",
            "sys_us_per_req",
            "server_core_busy",
            "other_cores",
            "errors",
        ):
            g[(r["server"], r["mode"])][k].append(r.get(k))
    return g


def paired_ratios(res: Results, mode: str, key: str = "rps", part: str = "steady") -> list[float]:
    by_round: dict[int, dict[str, Any]] = defaultdict(dict)
    for r in res[part]["runs"]:
        if r["mode"] == mode:
            by_round[r["round"]][r["server"]] = r[key]
    return [float(d["hitless"]) / float(d["nginx"]) for d in by_round.values() if d.get("nginx") and "hitless" in d]


def upgrade_groups(res: Results) -> Groups:
    """Keys: (variant, load, client mode) per mode; (variant, load, "*") per
    run: the command's duration and what all modes of the run add up to."""
    g: Groups = defaultdict(lambda: defaultdict(list))
    for r in res["upgrade"]["runs"]:
        if r["load"] == "wrk":
            k = g[(r["variant"], "wrk", "keep-alive")]
            k["lost"].append(r["lost"])
            k["refused"].append(r["socket_errors"]["connect"] + r["socket_errors"]["write"])
            k["requests"].append(r["requests"])
            k["rps"].append(r["rps"])
            k["cmd_ms"].append(r["upgrade_cmd_ms"])
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
        k["cmd_ms"].append(r["upgrade_cmd_ms"])
        k["cmd"].append(r["upgrade_cmd"])
        modes = r["modes"].values()
        k["failed"].append(sum(m["failed"] for m in modes))
        k["max"].append(max((m["during_max_ms"] for m in modes if m["during_max_ms"] is not None), default=None))
        k["window"].append(max(m["disturbed_ms"] for m in modes))
        k["new_seen"].append(all(m["new_version_seen"] for m in modes))
        if r.get("slow"):
            k["slow_failed"].append(r["slow"]["failed"])
            k["slow_max"].append(r["slow"]["max_ms"])
            k["slow_on_old"].append(r["slow"]["answered_by"] == [r["from_version"]])
        if r.get("old_stopped_after_ms") is not None:
            k["old_stopped"].append(r["old_stopped_after_ms"])
    return g
