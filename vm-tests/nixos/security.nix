# The hardening of hitless.service, as NixOS runs it (the packaged unit plus
# the module's drop-in), scores no worse in `systemd-analyze security` than
# the threshold the container tests enforce on the same unit file.
{ pkgs, self }:

let
  common = import ./common.nix { inherit pkgs self; };
in
pkgs.testers.runNixOSTest {
  name = "hitless-security";

  nodes.machine = common.server;

  testScript = ''
    import re

    threshold = 1.0


    def exposure(machine, unit):
        output = machine.succeed(f"systemd-analyze security --no-pager {unit} 2>&1")
        print(output)
        match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", output)
        assert match, f"no overall exposure level in the output for {unit}"
        return float(match.group(1))


    machine.wait_for_unit("hitless.socket")

    with subtest("the service's exposure stays at or below the threshold"):
        score = exposure(machine, "hitless.service")
        assert score <= threshold, f"hitless.service exposure {score} > {threshold}"
  '';
}
