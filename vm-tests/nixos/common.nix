# What the NixOS VM tests share: the flake's packages for this system, a
# server node running hitless through the NixOS module the way a user would,
# and the Python that imports the scenarios the container tests run too
# (vm-tests/scenarios/hitless_scenarios.py).
{ pkgs, self }:

let
  packages = self.packages.${pkgs.stdenv.hostPlatform.system};

  # A directory holding just the module, so it imports under its own name.
  scenarios = pkgs.writeTextDir "hitless_scenarios.py" (builtins.readFile ../scenarios/hitless_scenarios.py);
in
{
  inherit packages;

  server = {
    imports = [ self.nixosModules.default ];

    services.hitless = {
      enable = true;
      package = packages.hitless;
      openFirewall = true;
    };

    # The scenarios poke the service with curl and look at ss (iproute2, in
    # every NixOS system).
    environment.systemPackages = [ pkgs.curl ];
  };

  # Imported, not pasted into the test script: the test build type-checks
  # the script with mypy, and the module is checked by its own tests; the
  # `type: ignore` keeps mypy from looking for it.
  importScenarios = ''
    import sys

    sys.path.insert(0, "${scenarios}")
    import hitless_scenarios as sc  # type: ignore
  '';
}
