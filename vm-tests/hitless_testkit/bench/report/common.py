"""Names, and the statistics every table shows: median with [min-max]."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

Results = dict[str, Any]
"""results.json as written by python3 -m hitless_testkit.bench."""
Groups = dict[tuple[str, ...], dict[str, list[Any]]]
"""Runs grouped by (server, mode) or (variant, load, mode): lists of values per key."""

MB = 1_000_000
MODES = ("keep-alive", "new-conn", "h2")  # client modes of the upgrade runs
STEADY_MODES = ("keep-alive", "new-conn", "h2", "h2-1conn", "tls-keep-alive", "tls-new-conn")
"""Modes of the steady and tls parts, in the order of the tables."""
MODE_NAMES = {
    "keep-alive": "HTTP/1.1 keep-alive",
    "new-conn": "new connection per request",
    "h2": "HTTP/2 (h2c)",
    "h2-1conn": "HTTP/2 (h2c), one connection",
    "tls-keep-alive": "HTTPS keep-alive",
    "tls-new-conn": "HTTPS, new connection (full handshake) per request",
}
VARIANTS = ("hitless flip", "hitless restart", "hitless (--listen)", "Go baseline")
VARIANT_NAMES = {
    "hitless flip": "hitless, flip (`systemctl reload`)",
    "hitless restart": "hitless, restart (`systemctl restart`)",
    "hitless (--listen)": "hitless binding its port (`--listen`, restart)",
    "Go baseline": "Go baseline (fd 3 + `Shutdown`, restart)",
}
OPEN_LOADS = ("open", "open+slow", "open+dead-peer")
"""The conditions of the open-loop upgrade runs."""
DEAD_PEER_NAMES = {
    "h2": "HTTP/2: preface + SETTINGS, then silence",
    "h1": "HTTP/1.1: half a request head, then silence",
}


def _values(xs: Iterable[Any]) -> list[float]:
    return [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]


def med(xs: Iterable[Any]) -> float | None:
    """Median of the values that are there (None and NaN left out)."""
    vs = _values(xs)
    return statistics.median(vs) if vs else None


def must_med(xs: Iterable[Any]) -> float:
    """Median where the runs must have given values."""
    m = med(xs)
    if m is None:
        raise ValueError("no values to take the median of")
    return m


def spread(xs: Iterable[Any]) -> tuple[float, float] | tuple[None, None]:
    vs = _values(xs)
    return (min(vs), max(vs)) if vs else (None, None)


def num(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def fmt(xs: Iterable[Any], digits: int = 0, unit: str = "") -> str:
    """median [min-max]"""
    xs = list(xs)
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


def stats3(xs: Iterable[Any], scale: float = 1.0) -> list[float | str]:
    """median, min, max (scaled) for a gnuplot errorbar; NaN when empty."""
    xs = list(xs)
    m = med(xs)
    lo, hi = spread(xs)
    if m is None or lo is None or hi is None:
        return ["NaN"] * 3
    return [m * scale, lo * scale, hi * scale]
