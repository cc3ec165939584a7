# NixOS module: services.hitless.
#
# The units come from the package (systemd.packages), exactly as every other
# package installs them; this module only adds drop-ins for what its options
# change. See nixos/lib/systemd-lib.nix (generateUnits): a unit that a package
# ships and that is also configured here becomes
# <unit>.d/overrides.conf.
{ config, lib, pkgs, utils, ... }:

let
  cfg = config.services.hitless;

  # The TCP port of a ListenStream= value: "8080", "0.0.0.0:8080" and
  # "[::1]:8080" have one; a path ("/run/hitless.sock"), an abstract socket
  # ("@hitless") or a vsock address ("vsock:2:8080") do not.
  portOf =
    listen:
    let
      m = builtins.match "([^/@]*:)?([0-9]+)" listen;
    in
    if m == null || lib.hasPrefix "vsock:" listen then null else lib.toInt (builtins.elemAt m 1);

  tcpPorts = lib.unique (lib.filter (port: port != null) (map portOf cfg.listen));
in
{
  options.services.hitless = {
    enable = lib.mkEnableOption "hitless, an HTTP service that is upgraded in place without failing a request";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage \"\${hitless}/nix/package.nix\" { }";
      description = ''
        The hitless package. Its `lib/systemd/system` holds the units that
        are used. Switching to a configuration with another package restarts
        `hitless.service` while `hitless.socket` keeps listening, so no
        client is refused.
      '';
    };

    listen = lib.mkOption {
      type = lib.types.nonEmptyListOf lib.types.str;
      default = [ "8080" ];
      example = [
        "127.0.0.1:8080"
        "[::1]:8080"
        "/run/hitless/http.sock"
      ];
      description = ''
        Addresses `hitless.socket` listens on, as `ListenStream=` values
        (systemd.socket(5)); they replace the unit's own list. A bare port
        listens on all IPv4 and IPv6 addresses.

        A configuration switch does not restart a changed socket unit (that
        would close the queue the upgrade relies on). After changing this
        option, run `systemctl restart hitless.socket`; connections waiting
        in the old socket's queue at that moment are dropped.
      '';
    };

    drainTimeout = lib.mkOption {
      type = lib.types.ints.positive;
      default = 20;
      example = 60;
      description = ''
        Seconds a stopping hitless keeps serving the requests it has already
        accepted (`--drain-timeout`). `TimeoutStopSec=` is set 10 seconds
        above it, so systemd never kills a drain that is still within its
        deadline.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "--idle-grace"
        "1s"
      ];
      description = "Extra command-line arguments for hitless (`hitless --help`).";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether to open the TCP ports of {option}`services.hitless.listen` in the firewall.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.packages = [ cfg.package ];

    systemd.sockets.hitless = {
      # systemd.packages ignores the units' [Install] sections.
      wantedBy = [ "sockets.target" ];
      # The empty value first clears the unit's ListenStream=8080.
      socketConfig.ListenStream = [ "" ] ++ cfg.listen;
    };

    systemd.services.hitless = {
      # The default (true) stops the service and its socket before the switch
      # and starts only the socket afterwards: clients are refused meanwhile.
      # false: one `systemctl restart hitless.service`; the socket, owned by
      # PID 1, stays open and queues new connections until the new process
      # is ready.
      stopIfChanged = false;

      serviceConfig = {
        ExecStart = [
          ""
          (utils.escapeSystemdExecArgs (
            [
              (lib.getExe cfg.package)
              "--drain-timeout"
              "${toString cfg.drainTimeout}s"
            ]
            ++ cfg.extraArgs
          ))
        ];
        TimeoutStopSec = "${toString (cfg.drainTimeout + 10)}s";
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall tcpPorts;
  };
}
