#!/usr/bin/python3
"""Cargo metadata for the RPM: the vendored crates, their versions and licenses.

Subcommands (all read `cargo metadata`, run in the current directory):

  manifest         print cargo-vendor.txt: one "NAME vVERSION" line for every
                   crate built into the hitless binary. rpm/build writes it as a
                   Source of the SRPM; the spec turns each line into
                   `Provides: bundled(crate(NAME)) = VERSION` at parse time.
  license-tag      print the License: value of the spec (the project's licence
                   AND every distinct licence of those crates).
  filter-vendor D  replace the crates in vendor directory D that no target of
                   this platform uses (winapi, windows-sys, wasm-bindgen...) by
                   empty stubs, as `cargo vendor-filterer` does: the vendor
                   tarball stays small (the whole SRPM was 12 MB).
  licenses         (in %build) check cargo-vendor.txt against the vendored
                   sources, then write LICENSE.dependencies and copy every
                   crate's licence files into bundled-licenses/.

"Built into the binary" follows Fedora's %cargo_vendor_manifest: the normal and
build dependency edges of the `hitless` package (proc macros and build scripts
included: they generate code that ends up in the binary), dev-dependencies
excluded, for the target platform only.

Runs on the python3 of EL8 (3.6): standard library only, no newer syntax
(hence typing.List and friends, not list[...] in annotations).
"""
# ruff: noqa: UP006, UP035

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any, Callable, Dict, Iterable, List, Set

PACKAGE = "hitless"
OWN_LICENSE_FILES = ("LICENSE-APACHE", "LICENSE-MIT")
"""hitless' own licence texts, in the source root (as %license installs them)."""
LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|copyright|notice|unlicense|patents)", re.I)


def host_triple() -> str:
    out = subprocess.check_output([os.environ.get("RUSTC", "rustc"), "-vV"], universal_newlines=True)
    for line in out.splitlines():
        if line.startswith("host: "):
            return str(line.split(None, 1)[1])
    raise SystemExit("crates.py: cannot tell the host triple from rustc -vV")


def metadata(args: argparse.Namespace, platform: bool = True, extra: Iterable[str] = ()) -> Dict[str, Any]:
    cmd = [args.cargo, "metadata", "--format-version", "1", "--locked"]
    if args.offline:
        cmd.append("--offline")
    if platform:
        cmd += ["--filter-platform", args.target or host_triple()]
    cmd += list(extra)
    out = subprocess.check_output(cmd, universal_newlines=True)
    meta: Dict[str, Any] = json.loads(out)
    return meta


def bundled(meta: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Packages reached from PACKAGE over normal and build edges, minus workspace members."""
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])
    roots = [i for i in members if packages[i]["name"] == PACKAGE]
    if len(roots) != 1:
        raise SystemExit(f"crates.py: package {PACKAGE!r} not found in the workspace")
    seen: Set[str] = set()
    todo = list(roots)
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds & {None, "build"} and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    return sorted((packages[i] for i in seen - members), key=lambda p: (p["name"], p["version"]))


def manifest_lines(meta: Dict[str, Any]) -> List[str]:
    return [f"{p['name']} v{p['version']}" for p in bundled(meta)]


def split_and(expr: str) -> List[str]:
    """Top-level AND terms of an SPDX expression, outer parentheses removed."""
    terms: List[str] = []
    depth, start = 0, 0
    for m in re.finditer(r"[()]|\sAND\s", expr):
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif depth == 0:
            terms.append(expr[start : m.start()])
            start = m.end()
    terms.append(expr[start:])
    out = []
    for t in terms:
        t = t.strip()
        while t.startswith("(") and t.endswith(")") and balanced(t[1:-1]):
            t = t[1:-1].strip()
        out.append(t)
    return out


def balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            return False
    return depth == 0


def normalize(expr: str) -> List[str]:
    """Canonical top-level AND terms of an SPDX expression: legacy "A/B" means
    "A OR B"; a plain disjunction gets its operands sorted, so "MIT OR
    Apache-2.0" and "Apache-2.0 OR MIT" compare equal."""
    expr = " ".join((expr or "").replace("/", " OR ").split())
    if not expr:
        return ["LicenseRef-unknown"]
    terms = []
    for term in split_and(expr):
        parts = re.split(r"\s+OR\s+", term)
        if all(re.match(r"^[A-Za-z0-9.+-]+$", p) for p in parts):
            term = " OR ".join(sorted(set(parts)))
        terms.append(term)
    return terms


def spdx(terms: Iterable[str]) -> str:
    def wrap(e: str) -> str:
        return f"({e})" if re.search(r"\s(OR|AND|WITH)\s", e) else e

    return " AND ".join(wrap(t) for t in terms)


# C libraries whose sources a crate carries and builds into the binary,
# with their own licence (the crate's `license` field covers only its Rust):
# tikv-jemalloc-sys builds jemalloc (BSD-2-Clause, its COPYING).
C_LIBRARY_LICENSES = {"tikv-jemalloc-sys": "BSD-2-Clause"}


def license_tag(meta_all: Dict[str, Any]) -> str:
    own = [p for p in meta_all["packages"] if p["name"] == PACKAGE and p["id"] in meta_all["workspace_members"]]
    own_terms = normalize(own[0]["license"])
    terms: Set[str] = set()
    for p in bundled(meta_all):
        terms.update(normalize(p["license"]))
        if p["name"] in C_LIBRARY_LICENSES:
            terms.update(normalize(C_LIBRARY_LICENSES[p["name"]]))
    return spdx(own_terms + sorted(terms - set(own_terms)))


def cmd_manifest(args: argparse.Namespace) -> None:
    print("\n".join(manifest_lines(metadata(args))))


def cmd_license_tag(args: argparse.Namespace) -> None:
    print(license_tag(metadata(args)))


def vendor_config(vendor_dir: str) -> List[str]:
    vendor_dir = os.path.abspath(vendor_dir)
    return [
        "--config",
        'source.crates-io.replace-with="hitless-vendor"',
        "--config",
        f'source.hitless-vendor.directory="{vendor_dir}"',
    ]


def cmd_filter_vendor(args: argparse.Namespace) -> None:
    vendor = os.path.abspath(args.vendor_dir)
    cfg = vendor_config(vendor)
    everything = metadata(args, platform=False, extra=cfg)
    used = {p["id"] for p in metadata(args, extra=cfg)["packages"]}
    stubbed = 0
    for p in everything["packages"]:
        crate_dir = os.path.dirname(p["manifest_path"])
        if p["id"] in used or os.path.dirname(crate_dir) != vendor:
            continue
        checksum_file = os.path.join(crate_dir, ".cargo-checksum.json")
        with open(checksum_file) as f:
            checksum = json.load(f)
        for entry in os.listdir(crate_dir):
            if entry in ("Cargo.toml", ".cargo-checksum.json"):
                continue
            path = os.path.join(crate_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        # Cargo still reads the manifest (the lock file names the crate) but
        # never compiles it on this platform; an empty file list in the
        # checksum keeps `cargo --offline` from looking for the removed files.
        os.mkdir(os.path.join(crate_dir, "src"))
        open(os.path.join(crate_dir, "src", "lib.rs"), "w").close()
        checksum["files"] = {}
        with open(checksum_file, "w") as f:
            json.dump(checksum, f, sort_keys=True)
        stubbed += 1
    print(f"crates.py: stubbed {stubbed} crates not used on this platform", file=sys.stderr)


def cmd_licenses(args: argparse.Namespace) -> None:
    meta = metadata(args)
    with open(args.manifest) as f:
        expected = [line.strip() for line in f if line.strip()]
    actual = manifest_lines(meta)
    if expected != actual:
        missing = sorted(set(actual) - set(expected))
        extra = sorted(set(expected) - set(actual))
        raise SystemExit(
            f"crates.py: {args.manifest} is stale (rebuild the sources with rpm/build):\n"
            f"  crates built but not listed: {', '.join(missing) or '-'}\n"
            f"  listed but not built: {', '.join(extra) or '-'}"
        )
    os.makedirs(args.out_dir)
    rows: List[List[str]] = []
    # Where each distinct licence text was put first, relative to out_dir.
    # The project's own licence files are installed beside out_dir (the
    # spec's %license line): a crate with the same text links to them.
    first_copy: Dict[str, str] = {}
    for own in OWN_LICENSE_FILES:
        if os.path.isfile(own):
            with open(own, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            first_copy.setdefault(digest, os.path.relpath(os.path.abspath(own), os.path.abspath(args.out_dir)))
    for p in bundled(meta):
        crate_dir = os.path.dirname(p["manifest_path"])
        dest = os.path.join(args.out_dir, f"{p['name']}-{p['version']}")
        files: List[str] = []
        names = sorted(os.listdir(crate_dir))
        if p.get("license_file"):
            names.append(p["license_file"])
        for name in names:
            src = os.path.join(crate_dir, name)
            base = os.path.basename(name)
            if not LICENSE_FILE.match(base) or base in files:
                continue
            if os.path.isfile(src):
                os.makedirs(dest, exist_ok=True)
                with open(src, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                here = os.path.join(os.path.basename(dest), base)
                if digest in first_copy:
                    # Same text as another crate's: a relative symlink, so the
                    # package carries each distinct licence text once.
                    os.symlink(os.path.join("..", first_copy[digest]), os.path.join(dest, base))
                else:
                    shutil.copyfile(src, os.path.join(dest, base))
                    first_copy[digest] = here
                files.append(base)
            elif os.path.isdir(src):
                shutil.copytree(src, os.path.join(dest, base))
                files.append(base + "/")
        rows.append(
            [
                p["name"],
                p["version"],
                spdx(normalize(p["license"])),
                ", ".join(files) or "(the crate ships no licence file)",
            ]
        )
    with open(args.summary, "w") as out:
        out.write(
            f"Crates built into /usr/bin/{PACKAGE} (Cargo.lock, {args.target or host_triple()}).\n"
            "Their licence files are in bundled-licenses/NAME-VERSION/.\n\n"
        )
        w = max(len(f"{r[0]} {r[1]}") for r in rows)
        for name, version, lic, listed in rows:
            out.write(f"{name + ' ' + version:<{w}}  {lic}  [{listed}]\n")
    print(f"crates.py: {len(rows)} crates, licence files in {args.out_dir}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cargo", default=os.environ.get("CARGO", "cargo"))
    ap.add_argument("--target", help="target triple (default: the host's)")
    ap.add_argument("--offline", action="store_true")
    sub = ap.add_subparsers(dest="cmd")
    sub.add_parser("manifest")
    sub.add_parser("license-tag")
    fv = sub.add_parser("filter-vendor")
    fv.add_argument("vendor_dir")
    li = sub.add_parser("licenses")
    li.add_argument("--manifest", required=True)
    li.add_argument("--out-dir", required=True)
    li.add_argument("--summary", required=True)
    args = ap.parse_args()
    handlers: Dict[str, Callable[[argparse.Namespace], None]] = {
        "manifest": cmd_manifest,
        "license-tag": cmd_license_tag,
        "filter-vendor": cmd_filter_vendor,
        "licenses": cmd_licenses,
    }
    if args.cmd not in handlers:
        ap.error("a subcommand is required")
    handlers[args.cmd](args)


if __name__ == "__main__":
    main()
