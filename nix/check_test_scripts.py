"""Lint and type-check the NixOS VM tests' Python the way their build does.

A NixOS test derivation fails before any VM boots when its testScript does not
pass pyflakes (with the driver's symbols and the node names as builtins) or
mypy (with the driver's type hints prepended): see nixpkgs
nixos/lib/testing/driver.nix and nixos/lib/test-script-prepend.py. No Nix
build is possible here, so this script gets the same text another way:

1. It evaluates each vm-tests/nixos/<test>.nix with Debian's nix-instantiate
   against stubs (pkgs.testers.runNixOSTest returns its argument; packages
   are fake store paths), and calls testScript with fake `nodes` when it is a
   function. That is the exact Python the test would run. It also calls
   extraPythonPackages with a stub Python set: a script that imports
   hitless_testkit must get the package from there, as the driver does.
2. It runs pyflakes and mypy on it, with a stub `test_driver` package whose
   Machine methods copy the signatures of the 25.11 driver
   (nixos/lib/test-driver/src/test_driver/machine/__init__.py), so a typo'd
   method or a wrong argument fails here, not on the first KVM host. The
   test's Python packages reach mypy as in the Nix build: on PYTHONPATH
   (here vm-tests/, the source of hitless_testkit), read through py.typed.

pyflakes and mypy come from PyPI into $NIXTOOLS_ROOT/venv (default
/opt/nixtools/venv) when missing.

Usage: nix/check-test-scripts [TEST.nix ...]   (default: every test)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = ROOT / "vm-tests" / "nixos"
# Where hitless_testkit lives, and its name as a Nix package.
TESTKIT_DIR = ROOT / "vm-tests"
TESTKIT = "hitless-testkit"
NOT_TESTS = {"common.nix"}
TOOLS = Path(os.environ.get("NIXTOOLS_ROOT", "/opt/nixtools"))
VENV = TOOLS / "venv"

# Driver.test_symbols() in nixos/lib/test-driver/src/test_driver/driver.py:
# what generate-driver-symbols hands pyflakes besides the machine names.
DRIVER_SYMBOLS = [
    "start_all",
    "test_script",
    "machines",
    "vlans",
    "driver",
    "log",
    "os",
    "create_machine",
    "subtest",
    "run_tests",
    "join_all",
    "retry",
    "serial_stdout_off",
    "serial_stdout_on",
    "polling_condition",
    "Machine",
]

# Stubs standing in for nixpkgs and the flake while evaluating a test file.
# Every attribute a test reads at evaluation time must exist here; a missing
# one is an evaluation error naming it.
EVAL_EXPR = r"""
{ file }:
let
  fakePackage = name: {
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    pname = name;
    meta.mainProgram = name;
    type = "derivation";
  };
  lib = {
    getExe = p: "${p}/bin/${p.meta.mainProgram}";
    mkForce = x: x;
    mkDefault = x: x;
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    fileset = {
      toSource = { root, fileset }: builtins.seq fileset root;
      unions = builtins.foldl' builtins.seq null;
      fileFilter = _pred: dir: dir;
    };
  };
  # Python package set for extraPythonPackages: a package is its arguments.
  pythonPackages = {
    buildPythonPackage = args: args;
    setuptools = fakePackage "setuptools";
  };
  pkgs = {
    inherit lib;
    stdenv.hostPlatform.system = "x86_64-linux";
    testers.runNixOSTest = spec: spec;
    writeTextDir = path: text: fakePackage "${builtins.baseNameOf path}-${toString (builtins.stringLength text)}";
    curl = fakePackage "curl";
    jq = fakePackage "jq";
  };
  self = {
    packages.x86_64-linux = {
      default = fakePackage "hitless-1.0.0";
      hitless = fakePackage "hitless-1.0.0";
      hitless-v2 = fakePackage "hitless-2.0.0";
      hitless-probe = fakePackage "hitless-probe-1.0.0";
    };
    nixosModules.default = { };
  };
  spec = import file { inherit pkgs self; };
  nodeNames = builtins.attrNames (spec.nodes or { });
  nodes = builtins.listToAttrs (map
    (name: {
      inherit name;
      value.system.build.toplevel = "/nix/store/00000000000000000000000000000000-nixos-system-${name}";
    })
    nodeNames);
in
{
  inherit (spec) name;
  inherit nodeNames;
  script = if builtins.isFunction spec.testScript then spec.testScript { inherit nodes; } else spec.testScript;
  pythonPackages = map (p: p.pname) ((spec.extraPythonPackages or (_: [ ])) pythonPackages);
}
"""

# Type hints for mypy: nixos/lib/test-script-prepend.py, trimmed to what a
# test can use, over a stub of the driver's classes.
PREPEND = """\
from test_driver.driver import Driver
from test_driver.vlan import VLan
from test_driver.machine import Machine
from test_driver.logger import Logger
from typing import Callable, ContextManager, List


start_all: Callable[[], None]
subtest: Callable[[str], ContextManager[None]]
retry: Callable[..., None]
test_script: Callable[[], None]
machines: List[Machine]
vlans: List[VLan]
driver: Driver
log: Logger
run_tests: Callable[[], None]
join_all: Callable[[], None]
serial_stdout_off: Callable[[], None]
serial_stdout_on: Callable[[], None]
"""

DRIVER_STUB = {
    "__init__.pyi": "",
    "driver.pyi": "class Driver: ...\n",
    "vlan.pyi": "class VLan: ...\n",
    "logger.pyi": (
        "class Logger:\n"
        "    def info(self, message: str) -> None: ...\n"
        "    def warning(self, message: str) -> None: ...\n"
        "    def error(self, message: str) -> None: ...\n"
    ),
    "machine.pyi": """\
class Machine:
    name: str
    def log(self, msg: str) -> None: ...
    def start(self, allow_reboot: bool = False) -> None: ...
    def shutdown(self) -> None: ...
    def crash(self) -> None: ...
    def reboot(self) -> None: ...
    def is_up(self) -> bool: ...
    def wait_for_shutdown(self) -> None: ...
    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]: ...
    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None: ...
    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]: ...
    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str: ...
    def require_unit_state(self, unit: str, require_state: str = "active") -> None: ...
    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: int | None = 900
    ) -> tuple[int, str]: ...
    def succeed(self, *commands: str, timeout: int | None = None) -> str: ...
    def fail(self, *commands: str, timeout: int | None = None) -> str: ...
    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str: ...
    def wait_until_fails(self, command: str, timeout: int = 900) -> str: ...
    def sleep(self, secs: int) -> None: ...
    def wait_for_file(self, filename: str, timeout: int = 900) -> None: ...
    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: int = 900) -> None: ...
    def wait_for_open_unix_socket(self, addr: str, is_datagram: bool = False, timeout: int = 900) -> None: ...
    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: int = 900) -> None: ...
    def start_job(self, jobname: str, user: str | None = None) -> tuple[int, str]: ...
    def stop_job(self, jobname: str, user: str | None = None) -> tuple[int, str]: ...
    def copy_from_host(self, source: str, target: str) -> None: ...
    def copy_from_vm(self, source: str, target_dir: str = "") -> None: ...
    def wait_for_console_text(self, regex: str, timeout: int | None = None) -> None: ...
    def block(self) -> None: ...
    def unblock(self) -> None: ...
""",
}


def ensure_tools() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "pyflakes").exists() or not (VENV / "bin" / "mypy").exists():
        print(f"==> installing pyflakes and mypy into {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "pyflakes", "mypy"], check=True)
    return VENV / "bin"


@dataclass
class Evaluated:
    """What a test file gives the driver, evaluated against the stubs."""

    name: str
    node_names: list[str]
    script: str
    python_packages: list[str]


def evaluate(test: Path) -> Evaluated:
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", EVAL_EXPR, "--arg", "file", str(test)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{test.relative_to(ROOT)}: evaluation against the stubs failed:\n{result.stderr}")
    doc = json.loads(result.stdout)
    return Evaluated(doc["name"], doc["nodeNames"], doc["script"], doc["pythonPackages"])


def check(test: Path, bin_dir: Path, stub_dir: Path) -> list[str]:
    spec = evaluate(test)
    names = spec.node_names
    machine_names = names + (["machine"] if len(names) == 1 and names != ["machine"] else [])
    problems = []
    if "hitless_testkit" in spec.script and TESTKIT not in spec.python_packages:
        problems.append(f"the script imports hitless_testkit, but extraPythonPackages gives {spec.python_packages}")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "test-script"
        script.write_text(spec.script)
        flakes = subprocess.run(
            [str(bin_dir / "pyflakes"), str(script)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYFLAKES_BUILTINS": ",".join(machine_names + DRIVER_SYMBOLS)},
        )
        if flakes.returncode != 0:
            problems.append("pyflakes:\n" + flakes.stdout + flakes.stderr)
        typed = Path(tmp) / "testScriptWithTypes.py"
        typed.write_text(PREPEND + "".join(f"{n}: Machine\n" for n in machine_names) + spec.script)
        # As in the Nix build: the driver's stub on MYPYPATH, the test's
        # Python packages on PYTHONPATH (installed packages to mypy: it reads
        # them only because they ship py.typed). No config file: cwd is tmp.
        env = {**os.environ, "MYPYPATH": str(stub_dir), "PYTHONPATH": str(TESTKIT_DIR)}
        mypy = subprocess.run(
            [
                str(bin_dir / "mypy"),
                "--no-implicit-optional",
                "--pretty",
                "--no-color-output",
                "--cache-dir",
                str(Path(tmp) / "mypy-cache"),
                str(typed),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp,
            env=env,
        )
        if mypy.returncode != 0:
            problems.append("mypy:\n" + mypy.stdout + mypy.stderr)
    return problems


def main() -> int:
    tests = [Path(a).resolve() for a in sys.argv[1:]] or sorted(
        p for p in TESTS_DIR.glob("*.nix") if p.name not in NOT_TESTS
    )
    bin_dir = ensure_tools()
    failed = False
    with tempfile.TemporaryDirectory() as stubs:
        package = Path(stubs) / "test_driver"
        package.mkdir()
        for name, text in DRIVER_STUB.items():
            (package / name).write_text(text)
        for test in tests:
            problems = check(test, bin_dir, Path(stubs))
            status = "ok" if not problems else "FAILED"
            print(f"{test.relative_to(ROOT)}: {status}")
            for problem in problems:
                print(problem)
            failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
