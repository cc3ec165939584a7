# What the NixOS VM tests share: the flake's packages for this system and a
# server node running hitless through the NixOS module, the way a user would.
{ pkgs, self }:

let
  packages = self.packages.${pkgs.stdenv.hostPlatform.system};
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

    environment.systemPackages = [ pkgs.curl ];
  };
}
