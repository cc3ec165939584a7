"""docs/bench.png: bar charts with min-max whiskers, drawn by gnuplot."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .aggregate import steady_groups, steady_modes, upgrade_groups
from .common import MODES, VARIANT_NAMES, VARIANTS, Results, stats3


def plot(res: Results, png: Path) -> bool:
    gp = shutil.which("gnuplot")
    if not gp:
        print("report: gnuplot not found, no plot (apt-get install gnuplot-nox)", file=sys.stderr)
        return False
    work = Path(tempfile.mkdtemp(prefix="hitless-plot-"))
    try:
        panels: list[str] = []
        if "steady" in res:
            sg = steady_groups(res)
            rows_rps: list[list[float | str]] = []
            rows_cpu: list[list[float | str]] = []
            for mode in steady_modes(res):
                h, n = sg[("hitless", mode)], sg[("nginx", mode)]
                rows_rps.append([mode, *stats3(h["rps"], 1e-3), *stats3(n["rps"], 1e-3)])
                rows_cpu.append([mode, *stats3(h["us_per_req"]), *stats3(n["us_per_req"])])
            write_dat(work / "rps.dat", rows_rps)
            write_dat(work / "cpu.dat", rows_cpu)
            panels.append(
                bars("rps.dat", "Steady state: throughput (1 core each)", "thousand req/s", ["hitless", "nginx"])
            )
            panels.append(
                bars("cpu.dat", "Steady state: server CPU time per request", "µs / request", ["hitless", "nginx"])
            )
        if "upgrade" in res:
            ug = upgrade_groups(res)
            rows_win: list[list[float | str]] = []
            rows_fail: list[list[float | str]] = []
            for load, label in (("open", ""), ("open+slow", "\\n+ slow"), ("open+dead-peer", "\\n+ dead\\npeer")):
                for mode in MODES:
                    row_w: list[float | str] = [f"{mode}{label}"]
                    row_f: list[float | str] = [f"{mode}{label}"]
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
            names = [VARIANT_NAMES[v].replace("`", "") for v in VARIANTS]
            write_dat(work / "win.dat", rows_win, zero_as=0.0)
            write_dat(work / "fail.dat", rows_fail, zero_as=0.0)
            panels.append(
                bars(
                    "win.dat",
                    "Upgrade under load: disturbed window (failed or slow requests)",
                    "ms (log scale)",
                    names,
                    log=True,
                    note="no bar: 0 ms, no request disturbed",
                )
            )
            panels.append(
                bars(
                    "fail.dat",
                    "Upgrade under load: failed requests per upgrade",
                    "requests (log scale; 0 = no bar)",
                    names,
                    log=True,
                    note="no bar: 0 failed (Go baseline: no h2c)",
                )
            )
        if not panels:
            return False
        rows = (len(panels) + 1) // 2
        script = [
            f"set terminal pngcairo size 1800,{600 * rows} font 'DejaVu Sans,10'",
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
            "set bmargin 5",
            *panels,
            "unset multiplot",
        ]
        (work / "plot.gp").write_text("\n".join(script) + "\n")
        p = subprocess.run([gp, str(work / "plot.gp")], cwd=work, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            print(f"report: gnuplot failed:\n{p.stderr}", file=sys.stderr)
            return False
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_dat(path: Path, rows: Sequence[Sequence[float | str]], zero_as: float | None = None) -> None:
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


def bars(dat: str, title: str, ylabel: str, names: list[str], log: bool = False, note: str = "") -> str:
    lines = [f"set title '{title}'", f"set ylabel '{ylabel}'"]
    lines += ["set logscale y", "set yrange [0.5:*]"] if log else ["unset logscale y", "set yrange [0:*]"]
    lines += [f"set label 1 '{note}' at graph 0.99, graph 0.96 right" if note else "unset label 1"]
    parts = []
    for i, name in enumerate(names):
        c = 2 + 3 * i
        parts.append(f"'{dat}' using {c}:{c + 1}:{c + 2}" + (":xtic(1)" if i == 0 else "") + f" title '{name}'")
    lines.append("plot " + ", ".join(parts))
    return "\n".join(lines)
