"""python3 -m hitless_testkit.bench.report [results.json] [--docs DIR]"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ...errors import EXIT_CANNOT_RUN
from ...log import die
from ..instructions import existing_section, splice
from . import __doc__ as package_doc
from .markdown import report
from .plot import plot


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/run --report-only", description=package_doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repo", default=".", help="the checkout (bench/run passes its own; default: .)")
    ap.add_argument("results", nargs="?", help="default: $CARGO_TARGET_DIR or <repo>/target, then bench/results.json")
    ap.add_argument("--docs", help="where bench.md and bench.png go (default: <repo>/docs)")
    a = ap.parse_args(argv)
    repo = Path(a.repo).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or repo / "target")
    results = Path(a.results) if a.results else target / "bench/results.json"
    if not results.is_file():
        die(f"report: cannot run: {results} not found (run bench/run first)")
        return EXIT_CANNOT_RUN
    res = json.loads(results.read_text())
    docs = Path(a.docs) if a.docs else repo / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    png = docs / "bench.png"
    have_png = plot(res, png)
    page = report(res, png.name if have_png else None)
    # The instruction counts are bench/instructions' section: kept as it is.
    md = docs / "bench.md"
    kept = existing_section(md.read_text()) if md.is_file() else None
    md.write_text(splice(page, kept) if kept else page)
    print(f"report: wrote {docs / 'bench.md'}" + (f" and {png}" if have_png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
