# Socket activation on demand: after boot only hitless.socket (PID 1) listens;
# the first request starts hitless.service, which starts a slot
# (hitless@blue.service) that serves it on the inherited socket. A stopped service is started again by the next request, also when
# all three client modes arrive at once (the container tests' scenario).
# Also checks that services.hitless.listen replaces the unit's ListenStream=
# list (here a TCP port plus a unix socket, both passed to the one process).
{ pkgs, self }:

let
  common = import ./common.nix { inherit pkgs self; };
  inherit (common) packages;
in
pkgs.testers.runNixOSTest {
  name = "hitless-socket-activation";

  nodes.machine = {
    imports = [ common.server ];
    services.hitless.listen = [ "8080" "/run/hitless.sock" ];
    environment.systemPackages = [ packages.hitless-probe ];
  };

  extraPythonPackages = ps: [ (common.testkit ps) ];

  testScript = ''
    import json

    from hitless_testkit import scenarios as sc


    def version_over(curl_args):
        return json.loads(machine.succeed(f"curl --fail --silent --show-error --max-time 30 {curl_args}"))


    machine.wait_for_unit("multi-user.target")
    machine.wait_for_unit("hitless.socket")

    with subtest("only the socket is up after boot"):
        # Not wait_for_open_port: it connects, which would start the service.
        machine.require_unit_state("hitless.service", "inactive")
        for slot in sc.SLOTS:
            machine.require_unit_state(slot, "inactive")
        machine.succeed("ss -Hltn 'sport = :8080' | grep LISTEN")
        machine.succeed("test -S /run/hitless.sock")
        listens = machine.succeed("systemctl show --property=Listen --value hitless.socket")
        assert "/run/hitless.sock" in listens and "8080" in listens, listens

    with subtest("the first request starts the service"):
        first = version_over("http://127.0.0.1:8080/version")
        machine.require_unit_state("hitless.service", "active")
        machine.require_unit_state("hitless@blue.service", "active")
        pid = machine.succeed("systemctl show --property=MainPID --value hitless@blue.service").strip()
        assert int(pid) == first["pid"], (pid, first)
        assert first["version"] == "1.0.0", first
        assert first["socket_activated"], first
        kinds = sorted(listener["kind"] for listener in first["listeners"])
        assert len(kinds) == 2 and kinds[0] != kinds[1], first
        assert all(listener["name"] == "hitless.socket" for listener in first["listeners"]), first

    with subtest("the unix socket reaches the same process"):
        over_unix = version_over("--unix-socket /run/hitless.sock http://localhost/version")
        assert over_unix["pid"] == first["pid"], (first, over_unix)

    with subtest("a stopped service is started again by the next request"):
        machine.succeed("systemctl stop hitless.service")
        machine.require_unit_state("hitless.service", "inactive")
        machine.require_unit_state("hitless.socket", "active")
        again = version_over("http://127.0.0.1:8080/version")
        machine.require_unit_state("hitless.service", "active")
        assert again["pid"] != first["pid"], (first, again)

    # Stops the service, then starts the probe's three modes at once.
    env = sc.Env(server=machine, client=machine, upgrade=None, subtest=subtest, log=print)
    sc.activation_on_demand(env)
    print(sc.format_results(env.results))
  '';
}
