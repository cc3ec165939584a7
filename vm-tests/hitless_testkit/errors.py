"""Exceptions and exit statuses shared by the entry points."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
"""A test or check failed."""
EXIT_USAGE = 2
"""Bad command line (argparse uses it too)."""
EXIT_CANNOT_RUN = 3
"""The stage cannot run on this host: not root, a tool or an input missing."""


class Failure(AssertionError):
    """A promise under test was broken. Reported in one line, without a
    traceback (a traceback is for bugs in the test code itself)."""


class CannotRun(Exception):
    """The host lacks something the stage needs (root, a tool, a built
    binary). The entry point prints the message as one line and exits with
    EXIT_CANNOT_RUN."""
