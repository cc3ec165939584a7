# The hardening of the units as NixOS runs them (the packaged unit plus the
# module's drop-in, scored by the running systemd) and of the packaged files
# offline. A slot (hitless@blue.service, the process that faces the network)
# and hitless.service (which only drives the slots, as root) are scored. The
# container tests hold them to their bounds on systemd 252; NixOS' newer
# systemd may weigh settings 252 does not know, so this test prints every
# score, holds each unit to the rating systemd calls safe (slot) or OK
# (hitless.service), and compares with the container bounds only in its log.
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

    units = "${packages.hitless}/lib/systemd/system"
    # systemd-analyze's ratings: below 2.0 is "SAFE", below 5.0 "OK".
    checks = [
        ("hitless@blue.service", f"--offline=true {units}/hitless@.service", "hitless@i.service", 2.0,
         sc.MAX_EXPOSURE),
        ("hitless.service", f"--offline=true {units}/hitless.service", "hitless.service", 5.0,
         sc.CONTROLLER_MAX_EXPOSURE),
    ]


    def exposure(args, unit):
        output = machine.succeed(f"systemd-analyze security --no-pager {args} 2>&1")
        print(output)
        match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", output)
        assert match, f"no overall exposure level in the output for {unit}"
        return float(match.group(1))


    machine.wait_for_unit("hitless.socket")

    for unit, offline_args, offline_name, bound, container_bound in checks:
        with subtest(f"{unit} as NixOS runs it, and the packaged file offline"):
            for how, args, name in (("NixOS, unit + drop-in", unit, unit), ("offline", offline_args, offline_name)):
                score = exposure(args, name)
                print(f"SECURITY SCORE ({how}): {unit} {score} (bound {bound}; systemd 252 in the "
                      f"container tests: at most {container_bound})")
                assert score < bound, f"{unit} ({how}) exposure {score} is not below {bound}"
  '';
}
