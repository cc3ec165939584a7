# Upgrade under load: a client VM runs hitless-probe against the server VM
# (HTTP/1 new connections, HTTP/1 keep-alive and h2, concurrently) while the
# server switches between its configuration (package 1.0.0) and the
# specialisation whose package is 2.0.0. Passes when no request failed in any
# mode, every mode saw the versions in order (1.0.0, then 2.0.0, ...), and
# every switch restarted hitless.service instead of stopping it together
# with its socket. The scenarios are the container tests' own
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
    };

    client = {
      environment.systemPackages = [ packages.hitless-probe pkgs.curl ];
    };
  };

  extraPythonPackages = ps: [ (common.testkit ps) ];

  testScript = { nodes, ... }: ''
    import re

    from hitless_testkit import scenarios as sc

    # The system to switch to for each version: the node's own
    # configuration, or its specialisation with the v2 package.
    systems = {
        "1.0.0": "${nodes.server.system.build.toplevel}",
        "2.0.0": "${nodes.server.system.build.toplevel}/specialisation/v2",
    }


    def socket_since():
        return server.succeed("systemctl show --property=ActiveEnterTimestampMonotonic --value hitless.socket")


    def switch_to(version):
        """Install `version` the NixOS way: switch-to-configuration. It must
        restart hitless.service alone; stopping the service and its socket
        (NixOS's default for a changed socket-activated service) would
        refuse connections until the socket is started again."""
        since = socket_since()
        output = server.succeed(f"{systems[version]}/bin/switch-to-configuration test 2>&1")
        print(output)
        assert re.search(r"^restarting the following units: .*\bhitless\.service\b", output, re.M), \
            "switch-to-configuration did not restart hitless.service"
        for verb in ("stopping", "starting"):
            assert not re.search(rf"^{verb} the following units: .*\bhitless\.(service|socket)\b", output, re.M), \
                f"switch-to-configuration was {verb} hitless units: connections would be refused"
        assert socket_since() == since, "hitless.socket was restarted: its queue was closed"


    start_all()
    server.wait_for_unit("hitless.socket")
    client.wait_for_unit("multi-user.target")
    client.wait_until_succeeds("curl --fail --silent --max-time 5 http://server:8080/healthz", timeout=120)

    env = sc.Env(
        server=server,
        client=client,
        upgrade=switch_to,
        versions=["1.0.0", "2.0.0"],
        url="http://server:8080",
        server_url="http://127.0.0.1:8080",
        subtest=subtest,
        log=print,
    )
    # 1.0.0 -> 2.0.0 -> 1.0.0 -> 2.0.0: an upgrade, a rollback, an upgrade.
    sc.upgrade_under_load(env, rounds=3)
    sc.restart_with_slow_requests(env)
    print(sc.format_results(env.results))

    with subtest("the service keeps its socket"):
        info = sc.served(env)
        assert info.socket_activated, info
  '';
}
