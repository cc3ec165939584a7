"""rpm/test: build, lint and exercise the hitless RPM (see __init__.py).

python3 -m hitless_testkit.rpm --repo DIR --probe PATH [--no-repro] [--reuse]
    [--only-static] [--rounds N] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..errors import EXIT_CANNOT_RUN, CannotRun
from ..log import Interrupted, die, install_signal_handlers, log, set_tag
from ..outcomes import Outcomes
from . import builds, guests, static
from .host import V2, CheckFailed, RpmRun, cargo_field, run


def tests(r: RpmRun, args: argparse.Namespace, outcomes: Outcomes) -> None:
    r.sde = run(["git", "log", "-1", "--format=%ct"], cwd=r.repo).strip()
    if args.reuse:
        r.src = r.repo
    else:
        builds.take_snapshots(r, repro=not args.no_repro)
    r.v1 = cargo_field(r.src, "app/Cargo.toml", "version")
    if args.reuse:
        log(f"--reuse: packages from {r.out}/v1 and {r.out}/v2")
        v2_ok = True
    else:
        if not outcomes.run(f"build v{r.v1} (rpm/build)", lambda: builds.build_v1(r)):
            return
        if not args.no_repro:
            outcomes.run("reproducible: a second build gives identical bytes", lambda: builds.build_again(r))
        v2_ok = outcomes.run(f"build v{V2} from the same source (HITLESS_VERSION={V2})", lambda: builds.build_v2(r))
    if v2_ok:
        outcomes.run("name, version, gzip payload, binary version", lambda: static.check_metadata(r))
    outcomes.run("portable binary: GLIBC_ <= 2.28, build-id, debuginfo", lambda: static.check_binary(r))
    outcomes.run("units from units/, licences, bundled(crate()) provides", lambda: static.check_units_and_licences(r))
    outcomes.run("scriptlets (rpm -qp --scripts) match what the upgrade relies on", lambda: static.check_scriptlets(r))
    outcomes.run("rpmlint (Fedora-like config): 0 errors, only explained warnings", lambda: static.check_rpmlint(r))
    if v2_ok and not args.only_static:
        try:
            guests.containers(r, outcomes)
        except (CheckFailed, CannotRun) as e:
            outcomes.fail("containers", str(e))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="rpm/test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repo", required=True, help="the checkout to build (rpm/test passes its own)")
    p.add_argument("--probe", required=True, help="hitless-probe binary (scripts/build-versions builds it)")
    p.add_argument("--no-repro", action="store_true", help="skip the second build (reproducibility)")
    p.add_argument("--reuse", action="store_true", help="test the packages of the last run, build nothing")
    p.add_argument("--only-static", action="store_true", help="no container tests")
    p.add_argument("--rounds", type=int, default=3, help="rpm -U rounds under load per container (default 3)")
    p.add_argument(
        "--out", help="where packages and results go (default: $CARGO_TARGET_DIR or <repo>/target, then rpm-test)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    set_tag("rpm")
    args = parse_args(argv)
    repo = Path(args.repo).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or repo / "target")
    out = Path(args.out or target / "rpm-test").resolve()
    install_signal_handlers()
    tmp = Path(tempfile.mkdtemp(prefix="hitless-rpm-test-"))
    r = RpmRun(repo=repo, out=out, probe=Path(args.probe), tmp=tmp, rounds=args.rounds)
    outcomes = Outcomes("rpm")
    t0 = time.monotonic()
    try:
        if os.geteuid() != 0:
            raise CannotRun("must run as root (rpmbuild's dependencies, systemd-nspawn)")
        if not args.only_static and not r.probe.is_file():
            raise CannotRun(f"{r.probe} not found (scripts/build-versions builds it)")
        out.mkdir(parents=True, exist_ok=True)
        tests(r, args, outcomes)
    except CannotRun as e:
        die(f"rpm: cannot run: {e}")
        return EXIT_CANNOT_RUN
    except CheckFailed as e:
        outcomes.fail("setup", str(e))
    except Interrupted as e:
        log(f"interrupted ({e}); containers were torn down")
        return e.exit_status
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r.results.total_s = round(time.monotonic() - t0, 1)
    results = out / "results.json"
    results.write_text(json.dumps(dataclasses.asdict(r.results), indent=2) + "\n")
    log(f"results in {results}")
    return outcomes.summary()


if __name__ == "__main__":
    sys.exit(main())
