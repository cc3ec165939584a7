# The load probe the upgrade tests run against the service (vm-tests/probe).
{ lib, rustPlatform }:

let
  source = import ./source.nix { inherit lib; };
in
rustPlatform.buildRustPackage {
  pname = "hitless-probe";
  version = source.versionOf "vm-tests/probe";

  inherit (source) src;
  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [ "--package" "hitless-probe" ];
  cargoTestFlags = [ "--package" "hitless-probe" ];

  meta = {
    description = "Load probe: HTTP/1 new-connection, keep-alive and h2 clients that count every failed request";
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "hitless-probe";
    platforms = lib.platforms.linux;
  };
}
