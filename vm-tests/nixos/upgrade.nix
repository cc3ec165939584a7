# Upgrade under load: a client VM runs hitless-probe against the server VM
# (HTTP/1 new connections, HTTP/1 keep-alive and h2, concurrently) while the
# server switches between its configuration (package 1.0.0) and the
# specialisation whose package is 2.0.0. Every switch must reload
# hitless.service (a flip to the other slot) and never stop, start or restart
# a hitless unit; no request may fail; slow requests in flight finish on the
# old version while the new one serves; a dead HTTP/2 peer on the old version
# does not hold up the switch. A specialisation whose hitless exits at once
# (an unknown flag) must make the switch fail while the old version serves
# every request; so must one whose hitless crashes a second after READY=1
# (within the probation), rolled back to the old slot. The scenarios are the container tests' own
# (hitless_testkit.scenarios); only the way to install a version is NixOS's.
{ pkgs, self }:

let
  common = import ./common.nix { inherit pkgs self; };
  inherit (common) packages;
in
pkgs.testers.runNixOSTest {
  name = "hitless-upgrade";

  nodes = {
    server = { lib, ... }: {
      imports = [ common.server ];
      # A specialisation also turns on system.switch.enable in test VMs
      # (nixos/lib/testing/nixos-test-base.nix).
      specialisation.v2.configuration = {
        services.hitless.package = lib.mkForce packages.hitless-v2;
      };
      # A broken release: hitless exits before READY=1 (usage error).
      specialisation.broken.configuration = {
        services.hitless.extraArgs = [ "--no-such-flag" ];
      };
      # A release that passes its ready check, says READY=1, serves, and
      # crashes a second after its start (app/src/fault.rs).
      specialisation.crashes.configuration = {
        services.hitless.extraArgs = [ "--simulate-fault" "crash-after=1s" ];
      };
    };

    client = {
      environment.systemPackages = [ packages.hitless-probe pkgs.curl ];
    };
  };

  extraPythonPackages = ps: [ (common.testkit ps) ];

  testScript = { nodes, ... }: ''
    import re
    import time

    from hitless_testkit import scenarios as sc

    # The system to switch to for each version: the node's own
    # configuration, or its specialisation with the v2 package.
    systems = {
        "1.0.0": "${nodes.server.system.build.toplevel}",
        "2.0.0": "${nodes.server.system.build.toplevel}/specialisation/v2",
        "broken": "${nodes.server.system.build.toplevel}/specialisation/broken",
        "crashes": "${nodes.server.system.build.toplevel}/specialisation/crashes",
    }


    def socket_since():
        return server.succeed("systemctl show --property=ActiveEnterTimestampMonotonic --value hitless.socket")


    def hitless_units_touched(output):
        """Lines of switch-to-configuration that stop, start or restart a
        hitless unit (all it may do is reload hitless.service)."""
        pattern = r"^(stopping|starting|restarting) the following units: .*\bhitless(@[\w-]*)?\.(service|socket)\b"
        return re.findall(pattern, output, re.M)


    def attempt(version):
        """Switch to the system that has `version` (or the broken one)."""
        since = socket_since()
        t0 = time.monotonic()
        rc, output = server.execute(f"{systems[version]}/bin/switch-to-configuration test 2>&1")
        took = time.monotonic() - t0
        print(output)
        assert re.search(r"^reloading the following units: (.*, )?hitless\.service(,|$)", output, re.M), \
            "switch-to-configuration did not reload hitless.service"
        assert not hitless_units_touched(output), \
            f"switch-to-configuration stopped, started or restarted hitless units: {hitless_units_touched(output)}"
        assert socket_since() == since, "hitless.socket was restarted: its queue was closed"
        failed = rc != 0 or "Failed to reload hitless.service" in output
        return sc.Attempt(ok=not failed, seconds=took, output=output)


    def switch_to(version):
        got = attempt(version)
        assert got.ok, f"the switch to {version} failed"


    start_all()
    server.wait_for_unit("hitless.socket")
    client.wait_for_unit("multi-user.target")
    client.wait_until_succeeds("curl --fail --silent --max-time 5 http://server:8080/healthz", timeout=120)

    env = sc.Env(
        server=server,
        client=client,
        upgrade=switch_to,
        attempt=attempt,
        broken={"exits": "broken", "crashes": "crashes"},
        versions=["1.0.0", "2.0.0"],
        url="http://server:8080",
        server_url="http://127.0.0.1:8080",
        slots_status="${packages.hitless}/libexec/hitless/hitless-slots status",
        subtest=subtest,
        log=print,
    )
    # 1.0.0 -> 2.0.0 -> 1.0.0 -> 2.0.0: an upgrade, a rollback, an upgrade.
    sc.upgrade_under_load(env, rounds=3)
    sc.upgrade_with_slow_requests(env)
    sc.dead_h2_peer(env)
    sc.bad_build_rejected(env, "exits")
    sc.bad_build_rejected(env, "crashes")
    sc.admin_verbs(env)
    print(sc.format_results(env.results))

    with subtest("the service keeps its socket"):
        info = sc.served(env)
        assert info.socket_activated, info
  '';
}
