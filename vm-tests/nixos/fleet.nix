# Several hosts behind HAProxy: two hitless hosts (h1, h2), a balancer (lb)
# with the repository's HAProxy recipe (deploy/haproxy/hitless.cfg), and a
# client, on one test VLAN. Under load through the balancer, the hosts
# switch to their v2 specialisation one at a time, each waiting for the
# balancer to see the host healthy before the next, as a rolling deployment
# with deploy-rs or colmena would (each host's switch reloads
# hitless.service: a flip). Then h1 leaves the pool with `hitless-slots
# leave` (HAProxy sees its /healthz 404, then the host drains) and comes
# back with `systemctl start hitless.socket`. No request may fail.
{ pkgs, self }:

let
  inherit (pkgs) lib;
  common = import ./common.nix { inherit pkgs self; };
  inherit (common) packages;

  # The recipe's defaults, frontend and backend; the NixOS module writes the
  # global section itself (it runs HAProxy as its own user, master-worker,
  # with a stats socket that passes the listeners on reload).
  recipe = "defaults\n" + lib.last (lib.splitString "\ndefaults\n" (builtins.readFile ../../deploy/haproxy/hitless.cfg));

  host = { lib, ... }: {
    imports = [ common.server ];
    virtualisation.vlans = [ 1 ];
    specialisation.v2.configuration = {
      services.hitless.package = lib.mkForce packages.hitless-v2;
    };
  };
in
pkgs.testers.runNixOSTest {
  name = "hitless-fleet";

  nodes = {
    h1 = host;
    h2 = host;

    lb = {
      virtualisation.vlans = [ 1 ];
      networking.firewall.allowedTCPPorts = [ 80 ];
      services.haproxy = {
        enable = true;
        config = ''
          ${recipe}
              server h1 h1:8080
              server h2 h2:8080

          listen stats
              bind 127.0.0.1:8404
              stats enable
              stats uri /stats
        '';
      };
      environment.systemPackages = [ pkgs.curl ];
    };

    client = {
      virtualisation.vlans = [ 1 ];
      environment.systemPackages = [ packages.hitless-probe pkgs.curl ];
    };
  };

  extraPythonPackages = ps: [ (common.testkit ps) ];

  testScript = { nodes, ... }: ''
    import csv
    import io
    import json

    from hitless_testkit import scenarios as sc
    from hitless_testkit.scenarios.probe import Probe

    hosts = {"h1": h1, "h2": h2}
    v2 = "${nodes.h1.system.build.toplevel}/specialisation/v2"
    slots = "${packages.hitless}/libexec/hitless/hitless-slots"


    def states():
        """HAProxy's status of each host: UP, NOLB, DOWN, ..."""
        out = lb.succeed("curl -sS --fail 'http://127.0.0.1:8404/stats;csv'")
        rows = csv.DictReader(io.StringIO(out.lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "hitless" and r["svname"] in hosts}


    def wait_state(name, want):
        retry(lambda _last_try: states().get(name) == want, timeout=60)


    def version(machine):
        return json.loads(machine.succeed("curl -sS --fail http://127.0.0.1:8080/version"))["version"]


    start_all()
    for m in hosts.values():
        m.wait_for_unit("hitless.socket")
    lb.wait_for_unit("haproxy.service")
    client.wait_for_unit("multi-user.target")
    for name in hosts:
        wait_state(name, "UP")

    env = sc.Env(server=lb, client=client, url="http://lb", subtest=subtest, log=print)
    probe = Probe(env, "fleet").start()
    probe.wait_ok()

    with subtest("rolling switch to v2, one host at a time"):
        for name, m in hosts.items():
            m.succeed(f"{v2}/bin/switch-to-configuration test")
            assert version(m) == "2.0.0", f"{name} does not serve 2.0.0"
            wait_state(name, "UP")
        # Each mode saw 1.0.0, then (from both hosts) only 2.0.0.
        probe.wait_seen(["1.0.0", "2.0.0"])

    with subtest("h1 leaves the pool and comes back"):
        h1.succeed(f"{slots} leave 5")
        wait_state("h1", "DOWN")
        h1.fail("curl -sS --max-time 2 http://127.0.0.1:8080/healthz")
        h1.succeed("systemctl start hitless.socket")
        wait_state("h1", "UP")

    stopped = probe.stop()
    stopped.require_pass("rolling switch and a host leaving, through HAProxy")
    print(f"fleet: 0 failed of {stopped.report.requests()} requests through HAProxy")
  '';
}
