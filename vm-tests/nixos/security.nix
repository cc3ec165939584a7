# The hardening of hitless.service scores no worse in `systemd-analyze
# security` than the threshold the container tests enforce on the same unit
# file: both as NixOS runs it (the packaged unit plus the module's drop-in,
# scored by the running systemd) and offline, the packaged file alone (what
# the container tests score).
{ pkgs, self }:

let
  common = import ./common.nix { inherit pkgs self; };
  inherit (common) packages;
in
pkgs.testers.runNixOSTest {
  name = "hitless-security";

  nodes.machine = common.server;

  extraPythonPackages = ps: [ (common.testkit ps) ];

  testScript = ''
    import re

    from hitless_testkit import scenarios as sc

    # The container tests' limit, from the shared scenarios.
    threshold = float(sc.MAX_EXPOSURE)


    def exposure(args, unit):
        output = machine.succeed(f"systemd-analyze security --no-pager {args} 2>&1")
        print(output)
        match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", output)
        assert match, f"no overall exposure level in the output for {unit}"
        return float(match.group(1))


    machine.wait_for_unit("hitless.socket")

    with subtest("hitless.service as NixOS runs it"):
        score = exposure("hitless.service", "hitless.service")
        print(f"SECURITY SCORE (NixOS, unit + drop-in): hitless.service {score} (threshold {threshold})")
        assert score <= threshold, f"hitless.service exposure {score} > {threshold}"

    with subtest("the packaged unit file, offline"):
        score = exposure("--offline=true ${packages.hitless}/lib/systemd/system/hitless.service", "hitless.service")
        print(f"SECURITY SCORE (offline, packaged unit): hitless.service {score} (threshold {threshold})")
        assert score <= threshold, f"packaged hitless.service exposure {score} > {threshold}"
  '';
}
