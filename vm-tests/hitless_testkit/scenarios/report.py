"""The scenarios' numbers as a short table for humans, and as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from .records import Record


def as_json(results: Mapping[str, Record]) -> str:
    return json.dumps({name: dataclasses.asdict(r) for name, r in results.items()}, indent=2) + "\n"


def format_results(results: Mapping[str, Record]) -> str:
    """One block per scenario: its scalar numbers, then a line per client mode."""
    lines = []
    for name, record in results.items():
        lines.append(f"{name}:")
        r: dict[str, Any] = dataclasses.asdict(record)
        for k, v in r.items():
            if isinstance(v, dict) and v and all(isinstance(m, dict) and "p50_ms" in m for m in v.values()):
                for mode, m in v.items():
                    lines.append(
                        f"  {k + ' ' if k != 'modes' else ''}{mode:<10} requests={m['requests']:<7} "
                        f"failed={m['failed']:<3} p50={m['p50_ms']}ms p99={m['p99_ms']}ms "
                        f"max={m['max_ms']}ms worst-second-max={m['worst_second_max_ms']}ms "
                        f"{m['failures_by_reason'] or ''}"
                    )
            elif isinstance(v, dict) and v and all(isinstance(c, dict) and "library" in c for c in v.values()):
                for client, c in v.items():
                    lines.append(
                        f"  {client:<17} requests={c['requests']:<6} failed={c['failed']:<4} "
                        f"(documented library fault: {c['documented_failures']}, idle-close race: "
                        f"{c['idle_close_failures']}) connections={c['connections']} "
                        f"{c['library']}"
                    )
            elif isinstance(v, dict) and v and all(isinstance(c, dict) and "retries" in c for c in v.values()):
                for client, c in v.items():
                    lines.append(
                        f"  {k} {client:<17} requests={c['requests']:<4} failed={c['failed']:<4} "
                        f"connections={c['connections']} {'retried' if c['retries'] else 'reported'}"
                    )
            else:
                lines.append(f"  {k}: {v}")
    return "\n".join(lines)
