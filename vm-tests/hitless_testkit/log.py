"""Logging and signal handling, one implementation for every entry point.

log() prints one line to stdout, flushed at once, prefixed with the seconds
since the process started and the tool's tag (set_tag):
`[rpm    12.34s] message`.

Signals: install_signal_handlers() makes SIGINT, SIGTERM and SIGHUP raise
Interrupted, a BaseException, so `except Exception` in test code never
swallows it and it unwinds through every `with` and `finally`: containers,
servers and temporary files are torn down on the way out. Entry points catch
it last and exit with 128 + the signal number, as a shell does.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

_T0 = time.monotonic()
_tag = ""


def set_tag(tag: str) -> None:
    """Name the tool in every following log line."""
    global _tag  # noqa: PLW0603 -- one process, one tag
    _tag = tag


def log(msg: str) -> None:
    """One line (or a block) to stdout, timestamped, flushed at once."""
    tag = f"{_tag:<6} " if _tag else ""
    print(f"[{tag}{time.monotonic() - _T0:8.2f}s] {msg}", flush=True)


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP reached the process; unwinds everything."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"got signal {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)


def die(msg: str) -> None:
    """For entry points: print one line to stderr (no traceback)."""
    print(msg, file=sys.stderr, flush=True)
