{
  description = "hitless: an HTTP service upgraded in place under load without a failed request";

  # Must stay exactly this string: flake.lock was made for it, and any other
  # spelling makes Nix re-lock (nix/lint checks the two agree).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [ "x86_64-linux" "aarch64-linux" ];

      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      packagesFor = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system};
    in
    {
      packages = forAllSystems (pkgs:
        let
          hitless = pkgs.callPackage ./nix/package.nix { };
        in
        {
          default = hitless;
          inherit hitless;

          # The same source reporting version 2.0.0: what the upgrade tests
          # switch to. Its tests are the default package's (same code), so
          # the override skips them.
          hitless-v2 = pkgs.callPackage ./nix/package.nix { versionOverride = "2.0.0"; };

          # Statically linked (musl): runs on any Linux, whatever its libc.
          # Its units point into the store like the default package's.
          hitless-static = pkgs.pkgsStatic.callPackage ./nix/package.nix { };

          hitless-probe = pkgs.callPackage ./nix/probe.nix { };
        });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe (packagesFor pkgs).hitless;
          meta.description = "Run hitless in the foreground (binds 127.0.0.1:8080 unless socket-activated)";
        };
        hitless-probe = {
          type = "app";
          program = lib.getExe (packagesFor pkgs).hitless-probe;
          meta.description = "Load probe: counts failed requests while hitless is upgraded";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            # toolchain
            cargo
            rustc
            clippy
            rustfmt
            rust-analyzer
            # Nix lint (nix/lint)
            nixpkgs-fmt
            deadnix
            # load clients, systemd-socket-activate
            wrk
            nghttp2
            curl
            jq
            python3
            systemd
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);

      nixosModules.default = ./nix/module.nix;

      checks = forAllSystems (pkgs:
        let
          packages = packagesFor pkgs;
          vmTest = file: import file { inherit pkgs self; };
        in
        {
          # Build + `cargo test` (the package's checkPhase) + `--version`.
          inherit (packages) hitless hitless-v2 hitless-probe;

          # NixOS VM tests (need KVM and the `nixos-test` system feature).
          vm-upgrade = vmTest ./vm-tests/nixos/upgrade.nix;
          vm-socket-activation = vmTest ./vm-tests/nixos/socket-activation.nix;
          vm-security = vmTest ./vm-tests/nixos/security.nix;
          vm-fleet = vmTest ./vm-tests/nixos/fleet.nix;
        }
        // pkgs.callPackages ./nix/checks.nix { });
    };
}
