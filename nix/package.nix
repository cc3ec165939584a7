# The service binary plus the project's one copy of the unit files.
#
#   pkgs.callPackage ./nix/package.nix { }                               # 1.0.0
#   pkgs.callPackage ./nix/package.nix { versionOverride = "2.0.0"; }    # "v2"
#   pkgs.pkgsStatic.callPackage ./nix/package.nix { }                    # static
{ lib
, stdenv
, rustPlatform
  # Build the same source but report another version (`hitless --version`,
  # the x-hitless-version header, /version). The upgrade tests switch from
  # the default build to one made with "2.0.0". The service reads the
  # build-time variable HITLESS_VERSION (app/src/version.rs).
, versionOverride ? null
}:

let
  source = import ./source.nix { inherit lib; };

  version = if versionOverride == null then source.versionOf "app" else versionOverride;
in
rustPlatform.buildRustPackage {
  pname = "hitless";
  inherit version;

  inherit (source) src;
  cargoLock.lockFile = ../Cargo.lock;

  # The workspace also holds the load probe; it has its own package
  # (probe.nix) and stays out of the service's closure.
  cargoBuildFlags = [ "--package" "hitless" ];
  cargoTestFlags = [ "--package" "hitless" ];

  env = lib.optionalAttrs (versionOverride != null) { HITLESS_VERSION = versionOverride; };

  # The static build is the same code as the default package, whose tests
  # already ran; running them again for musl only costs time.
  doCheck = !stdenv.hostPlatform.isStatic;

  # The units are the ones every package installs (../units); only the path
  # of the binary differs. The NixOS module replaces ExecStart= in a drop-in
  # to add its options, so it relies on the unit starting the binary with no
  # arguments: fail here, loudly, the day that changes.
  postInstall = ''
    install -Dm644 ${../units/hitless.socket} $out/lib/systemd/system/hitless.socket
    install -Dm644 ${../units/hitless.service} $out/lib/systemd/system/hitless.service
    substituteInPlace $out/lib/systemd/system/hitless.service \
      --replace-fail "ExecStart=/usr/bin/hitless" "ExecStart=$out/bin/hitless"
    if ! grep -qx "ExecStart=$out/bin/hitless" $out/lib/systemd/system/hitless.service; then
      echo "units/hitless.service: ExecStart= is not the bare binary any more;" >&2
      echo "update nix/module.nix, which rewrites that line." >&2
      exit 1
    fi
  '';

  doInstallCheck = stdenv.buildPlatform.canExecute stdenv.hostPlatform;
  installCheckPhase = ''
    runHook preInstallCheck
    [ "$($out/bin/hitless --version)" = "hitless ${version}" ]
    runHook postInstallCheck
  '';

  meta = {
    description = "HTTP service that takes its socket from systemd and drains on SIGTERM, so upgrades lose no request";
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "hitless";
    platforms = lib.platforms.linux;
  };
}
