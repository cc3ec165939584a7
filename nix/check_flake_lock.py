"""Check that flake.lock is consistent with flake.nix, without Nix.

Nix re-locks (and so needs the network) when the lock does not match the
inputs flake.nix declares. This checks, from the two files alone:

* flake.nix declares exactly one input, nixpkgs, as ``github:OWNER/REPO/REF``;
* the lock (version 7) has exactly that input at its root, its ``original``
  is exactly that URL split into fields, and its ``locked`` is a complete
  GitHub lock: same owner and repo, a 40-hex ``rev``, an SRI sha256
  ``narHash`` and ``lastModified``.

Usage: python3 nix/check_flake_lock.py FLAKE_LOCK FLAKE_NIX
Exit status: 0 consistent, 1 inconsistent (one line per finding on stderr),
2 usage or unreadable files.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

INPUT_URL = re.compile(r'^\s*inputs\.([\w-]+)\.url\s*=\s*"([^"]*)"\s*;', re.M)
GITHUB_URL = re.compile(r"github:([\w.-]+)/([\w.-]+)/([\w./-]+)")
LOCKED_FIELDS = {"lastModified", "narHash", "owner", "repo", "rev", "type"}


def problems(lock: dict[str, Any], flake_nix: str) -> list[str]:
    """Every inconsistency between a parsed flake.lock and flake.nix's text."""
    errors: list[str] = []
    if lock.get("version") != 7:
        errors.append(f"lock file version is {lock.get('version')!r}, expected 7")
    declared = INPUT_URL.findall(flake_nix)
    if [name for name, _ in declared] != ["nixpkgs"]:
        return [*errors, f"flake.nix declares inputs {declared}, expected exactly one: nixpkgs"]
    url = declared[0][1]
    m = GITHUB_URL.fullmatch(url)
    if not m:
        return [*errors, f"inputs.nixpkgs.url = {url!r} is not github:OWNER/REPO/REF"]
    owner, repo, ref = m.groups()

    nodes = lock.get("nodes", {})
    root_inputs = nodes.get(lock.get("root", ""), {}).get("inputs")
    if root_inputs != {"nixpkgs": "nixpkgs"}:
        errors.append(f"root inputs are {root_inputs}, expected only nixpkgs")
    node = nodes.get("nixpkgs", {})
    original = node.get("original")
    want = {"owner": owner, "repo": repo, "ref": ref, "type": "github"}
    if original != want:
        errors.append(f"nodes.nixpkgs.original = {original} does not match flake.nix's {url!r}")
    locked = node.get("locked", {})
    if set(locked) != LOCKED_FIELDS:
        errors.append(f"nodes.nixpkgs.locked has fields {sorted(locked)}, expected {sorted(LOCKED_FIELDS)}")
    if (locked.get("type"), locked.get("owner"), locked.get("repo")) != ("github", owner, repo):
        errors.append(f"nodes.nixpkgs.locked is not github:{owner}/{repo}")
    if not re.fullmatch(r"[0-9a-f]{40}", str(locked.get("rev", ""))):
        errors.append(f"nodes.nixpkgs.locked.rev = {locked.get('rev')!r} is not a 40-hex commit")
    if not re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", str(locked.get("narHash", ""))):
        errors.append(f"nodes.nixpkgs.locked.narHash = {locked.get('narHash')!r} is not an SRI sha256 hash")
    if not isinstance(locked.get("lastModified"), int):
        errors.append("nodes.nixpkgs.locked.lastModified is not a number")
    return errors


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: check_flake_lock.py FLAKE_LOCK FLAKE_NIX", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            lock = json.load(f)
        with open(argv[2], encoding="utf-8") as f:
            flake_nix = f.read()
    except (OSError, ValueError) as e:
        print(f"check_flake_lock: {e}", file=sys.stderr)
        return 2
    found = problems(lock, flake_nix)
    for line in found:
        print(f"flake.lock: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
