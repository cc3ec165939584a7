# Upgrade under load: a client VM runs hitless-probe against the server VM
# (HTTP/1 new connections, HTTP/1 keep-alive and h2, concurrently) while the
# server switches to a configuration whose package is v2. Passes when no
# request failed in any mode, the probe saw 1.0.0 and then 2.0.0, and
# switch-to-configuration restarted hitless.service instead of stopping it
# together with its socket.
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

  testScript = { nodes, ... }: ''
    import json
    import re

    switch_to_v2 = "${nodes.server.system.build.toplevel}/specialisation/v2/bin/switch-to-configuration test"
    url = "http://server:8080/"


    def served_version(machine, url):
        return json.loads(machine.succeed(f"curl --fail --silent --show-error --max-time 10 {url}version"))


    def install_v2():
        """The NixOS way to upgrade: switch to the configuration with v2."""
        socket_since = server.succeed("systemctl show --property=ActiveEnterTimestampMonotonic --value hitless.socket")
        output = server.succeed(f"{switch_to_v2} 2>&1")
        print(output)
        assert re.search(r"^restarting the following units: .*\bhitless\.service\b", output, re.M), \
            "switch-to-configuration did not restart hitless.service"
        for verb in ("stopping", "starting"):
            assert not re.search(rf"^{verb} the following units: .*\bhitless\.(service|socket)\b", output, re.M), \
                f"switch-to-configuration was {verb} hitless units: connections would be refused"
        assert server.succeed("systemctl show --property=ActiveEnterTimestampMonotonic --value hitless.socket") == socket_since, \
            "hitless.socket was restarted: its queue was closed"


    start_all()
    server.wait_for_unit("hitless.socket")
    client.wait_for_unit("multi-user.target")

    with subtest("v1 serves the client over the network, socket-activated"):
        client.wait_until_succeeds(f"curl --fail --silent --max-time 5 {url}healthz", timeout=120)
        v1 = served_version(client, url)
        assert v1["version"] == "1.0.0", v1
        assert v1["socket_activated"], v1

    with subtest("switch to v2 while the probe runs every client mode"):
        # The probe runs as a transient unit, so its exit status stays
        # inspectable; SIGINT ends the run early and it still reports.
        client.succeed(
            "systemd-run --unit=probe --service-type=exec --remain-after-exit "
            f"${pkgs.lib.getExe packages.hitless-probe} --url {url} "
            "--mode new-conn --mode keep-alive --mode h2 "
            "--duration 300s --expect-versions 1.0.0,2.0.0 --report /tmp/probe-report.json"
        )
        client.sleep(5)
        client.succeed("systemctl is-active probe.service")
        install_v2()
        client.wait_until_succeeds(f"curl --fail --silent --max-time 5 {url}version | grep -F '\"2.0.0\"'", timeout=60)
        client.sleep(5)
        client.succeed("systemctl kill --signal=SIGINT probe.service")
        client.wait_until_succeeds("test \"$(systemctl show --property=SubState --value probe.service)\" != running", timeout=60)
        print(client.succeed("cat /tmp/probe-report.json"))
        print(client.succeed("journalctl --unit=probe.service --no-pager --output=cat"))
        result = client.succeed("systemctl show --property=Result --value probe.service").strip()
        status = client.succeed("systemctl show --property=ExecMainStatus --value probe.service").strip()
        assert result == "success" and status == "0", \
            f"the probe saw failed requests or not 1.0.0 then 2.0.0 (result={result}, exit status={status})"

    with subtest("v2 runs, still socket-activated"):
        v2 = served_version(server, "http://127.0.0.1:8080/")
        assert v2["version"] == "2.0.0", v2
        assert v2["socket_activated"], v2
        assert v2["pid"] != v1["pid"], (v1, v2)
  '';
}
