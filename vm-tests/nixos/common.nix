# What the NixOS VM tests share: the flake's packages for this system, a
# server node running hitless through the NixOS module the way a user would,
# and the tests' Python package (vm-tests/hitless_testkit: the scenarios the
# container tests run too), for extraPythonPackages.
{ pkgs, self }:

let
  inherit (pkgs) lib;
  fs = lib.fileset;

  packages = self.packages.${pkgs.stdenv.hostPlatform.system};
in
{
  inherit packages;

  # Built for the Python set the test driver hands to extraPythonPackages,
  # so the driver imports it and the mypy check of the test script reads
  # its real code (it ships py.typed).
  testkit = ps: ps.buildPythonPackage {
    pname = "hitless-testkit";
    inherit ((lib.importTOML ../pyproject.toml).project) version;
    pyproject = true;
    src = fs.toSource {
      root = ../.;
      fileset = fs.unions [
        ../pyproject.toml
        (fs.fileFilter (file: file.hasExt "py" || file.name == "py.typed") ../hitless_testkit)
      ];
    };
    build-system = [ ps.setuptools ];
    pythonImportsCheck = [ "hitless_testkit.scenarios" ];
  };

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
}
