"""Where the benchmark's inputs and outputs are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

V1, V2 = "1.0.0", "2.0.0"
SERVER_CPU, CLIENT_CPU = 0, 1
"""Servers run pinned to CPU 0, load generators to CPU 1."""


@dataclass(frozen=True)
class Paths:
    repo: Path
    """The checkout: units/ and bench/ (nginx.conf, units/) are read from it."""
    target: Path
    """The cargo target directory (CARGO_TARGET_DIR, default <repo>/target)."""

    @classmethod
    def of(cls, repo: Path) -> Paths:
        return cls(repo=repo, target=Path(os.environ.get("CARGO_TARGET_DIR") or repo / "target"))

    @property
    def assets(self) -> Path:
        return self.repo / "bench"

    @property
    def out(self) -> Path:
        """Built Go binaries, results.json, container logs."""
        return self.target / "bench"

    @property
    def versions(self) -> Path:
        """hitless-<version> from scripts/build-versions."""
        return self.target / "versions"

    def hitless(self, version: str) -> Path:
        return self.versions / f"hitless-{version}"

    def baseline_go(self, version: str) -> Path:
        return self.out / f"baseline-go-{version}"
