"""Write docs/container-results.md and docs/rpm-results.md from the
results.json of several runs of the container tests or of rpm/test, so the
numbers in the docs are the measurement's own output, with the range over
the runs, and never hand copies.

    PYTHONPATH=vm-tests python3 -m hitless_testkit.results \\
        /tmp/hitless-container-tests/*/results.json > docs/container-results.md
    PYTHONPATH=vm-tests python3 -m hitless_testkit.results --what "rpm/test" \\
        RUN1/results.json RUN2/results.json > docs/rpm-results.md

Each scenario gets a table: one row per number it recorded, with the lowest
and highest value over the runs (or every distinct value, for text). Per
client mode numbers are summed (requests, failures) or maxed (latencies).
Exit status: 0 written, 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

Value = float | int | str | bool


MODES = {"h2", "keep-alive", "new-conn"}


def is_modes(v: object) -> bool:
    """A per-client-mode block of the probe: {"h2": {"requests": ...}, ...}."""
    return isinstance(v, dict) and bool(v) and set(v) <= MODES and all(isinstance(m, dict) for m in v.values())


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Value]:
    """The numbers of one scenario's record, by a readable name."""
    out: dict[str, Value] = {}
    for key, v in record.items():
        name = f"{prefix}{key}"
        if is_modes(v):
            modes = v.values()
            label = "" if key == "modes" else f"{key}: "
            for field, what, fold in (
                ("requests", "requests (all modes)", sum),
                ("failed", "failed (all modes)", sum),
                ("p99_ms", "p99 ms (worst mode)", max),
                ("max_ms", "max latency ms (worst mode)", max),
            ):
                got = [m[field] for m in modes if isinstance(m.get(field), int | float)]
                if got:
                    out[f"{prefix}{label}{what}"] = fold(got)
        elif isinstance(v, dict) and v and all(isinstance(x, int | float) for x in v.values()):
            for k, x in v.items():
                out[f"{name} {k}"] = x
        elif isinstance(v, dict):
            out.update(flatten(v, prefix=f"{name}."))
        elif isinstance(v, int | float | str | bool):
            out[name] = v
    return out


def spread(values: list[Value]) -> str:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) == len(values):
        lo, hi = min(numbers), max(numbers)
        return _number(lo) if lo == hi else f"{_number(lo)} – {_number(hi)}"
    distinct = sorted({str(v) for v in values})
    return " / ".join(d.replace("|", "\\|").replace("\n", " ") for d in distinct)


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, int) else f"{x:.4g}"


def render(runs: list[dict[str, Any]], sources: Iterable[str], what: str, about: str) -> str:
    table: dict[str, dict[str, list[Value]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for scenario, record in run.items():
            if isinstance(record, dict):
                for name, value in flatten(record).items():
                    table[scenario][name].append(value)
            elif isinstance(record, int | float | str | bool):
                table["run"][scenario].append(record)
    lines = [
        f"# {what}: measured",
        "",
        "Written by `python3 -m hitless_testkit.results` from the `results.json` of "
        f"{len(runs)} run(s) of `{what}` (Debian 12 host, "
        f"{os.cpu_count()} cores, kernel {platform.release()}; systemd 252 in the containers; "
        "8 workers and 300 requests/s per client mode). Each cell is the range over the runs. "
        f"What each test does and asserts: [{about}]({about}).",
        "",
        "Sources: " + ", ".join(f"`{os.path.basename(s)}`" for s in sources),
    ]
    for scenario, numbers in table.items():
        present = sum(1 for run in runs if scenario in run or scenario == "run")
        lines += ["", f"## {scenario}", "", f"In {present} of the {len(runs)} runs.", ""]
        lines += ["| measure | over the runs |", "|---|---|"]
        lines += [f"| {name} | {spread(values)} |" for name, values in numbers.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python3 -m hitless_testkit.results", description=__doc__.split("\n\n")[0])
    p.add_argument("--what", default="vm-tests/run-container-tests", help="the command that measured")
    p.add_argument("--about", default="container-tests.md", help="the doc that says what the tests assert")
    p.add_argument("results", nargs="+", help="results.json files, one per run")
    args = p.parse_args(argv[1:])
    runs = []
    for path in args.results:
        try:
            with open(path, encoding="utf-8") as f:
                runs.append(json.load(f))
        except (OSError, ValueError) as e:
            print(f"results: {path}: {e}", file=sys.stderr)
            return 2
    sys.stdout.write(render(runs, args.results, args.what, args.about))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
