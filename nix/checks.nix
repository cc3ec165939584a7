# Lint checks for `nix flake check`: they install nothing, they fail or
# produce an empty file. (Build and unit tests: the packages themselves.
# NixOS VM tests: vm-tests/nixos.)
{ lib
, stdenv
, runCommand
, rustPlatform
, cargo
, rustc
, clippy
, rustfmt
, nixpkgs-fmt
, deadnix
}:

let
  source = import ./source.nix { inherit lib; };

  # Runs a cargo command over the workspace with the dependencies vendored
  # from Cargo.lock, offline, the way buildRustPackage sets them up
  # (rustPlatform.cargoSetupHook).
  cargoLint = name: tools: command:
    stdenv.mkDerivation {
      name = "hitless-${name}";
      inherit (source) src;
      cargoDeps = rustPlatform.importCargoLock { lockFile = ../Cargo.lock; };
      nativeBuildInputs = [ rustPlatform.cargoSetupHook cargo rustc ] ++ tools;
      dontConfigure = true;
      buildPhase = ''
        runHook preBuild
        ${command}
        runHook postBuild
      '';
      installPhase = ''
        touch $out
      '';
    };

  nixFiles = dir: lib.fileset.fileFilter (file: file.hasExt "nix") dir;
in
{
  clippy = cargoLint "clippy" [ clippy ] ''
    cargo clippy --workspace --all-targets --offline -- --deny warnings
  '';

  rustfmt = cargoLint "rustfmt" [ rustfmt ] ''
    cargo fmt --all --check
  '';

  # The same two linters nix/lint runs outside Nix.
  nix-lint = runCommand "hitless-nix-lint"
    {
      nativeBuildInputs = [ nixpkgs-fmt deadnix ];
      src = lib.fileset.toSource {
        root = ../.;
        fileset = lib.fileset.unions [
          ../flake.nix
          (nixFiles ../nix)
          (nixFiles ../vm-tests/nixos)
        ];
      };
    } ''
    cd "$src"
    nixpkgs-fmt --check .
    deadnix --fail .
    touch "$out"
  '';
}
