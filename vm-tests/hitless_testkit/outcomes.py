"""Pass/fail bookkeeping of a test run: each check runs, is timed and logged,
and recorded; the summary prints one PASS/FAIL line per check and closes with
`<name>: N passed, M failed`.

A check fails when it raises an Exception. Failure (errors.py: a broken
promise) is reported in one line; any other exception is a bug in the test
code and gets its traceback too. Interrupted (a BaseException) is never
caught: the run stops.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import EXIT_FAILED, EXIT_OK, Failure
from .log import log


@dataclass
class Outcome:
    name: str
    passed: bool
    reason: str = ""
    """First line of the failure, empty when passed."""
    seconds: float = 0.0


@dataclass
class Outcomes:
    name: str
    """Names the run in the closing line ("container tests", "rpm")."""
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self, check: str, fn: Callable[[], None]) -> bool:
        """Run one check; True when it passed."""
        log(f"##### {check}")
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:
            took = time.monotonic() - t0
            why = f"{type(e).__name__}: {e}"
            self.outcomes.append(Outcome(check, False, why.splitlines()[0], round(took, 1)))
            log(f"##### {check}: FAILED ({took:.1f}s)")
            if isinstance(e, Failure):
                log(why)
            else:
                traceback.print_exc()
            return False
        took = time.monotonic() - t0
        self.outcomes.append(Outcome(check, True, "", round(took, 1)))
        log(f"##### {check}: passed ({took:.1f}s)")
        return True

    def fail(self, check: str, reason: str) -> None:
        """Record a check that could not even start."""
        self.outcomes.append(Outcome(check, False, reason.splitlines()[0] if reason else ""))

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.passed

    def summary(self) -> int:
        """Print the PASS/FAIL lines and the closing count; return the exit
        status: 0 when every check passed (and there was at least one)."""
        print(f"\n==== {self.name}")
        for o in self.outcomes:
            print(f"{'PASS' if o.passed else 'FAIL'} {o.name}" + (f": {o.reason}" if o.reason else ""))
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return EXIT_OK if self.failed == 0 and self.passed > 0 else EXIT_FAILED
