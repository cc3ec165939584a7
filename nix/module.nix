# NixOS module: services.hitless.
#
# The units come from the package (systemd.packages), exactly as every other
# package installs them: hitless.socket, the slot template hitless@.service
# (instances hitless@blue, hitless@green and hitless@red) and hitless.service, which
# starts, flips and stops the slots. This module only adds drop-ins for what
# its options change, and tells switch-to-configuration how to treat each
# unit. See nixos/lib/systemd-lib.nix (generateUnits): a unit that a package
# ships and that is also configured here becomes <unit>.d/overrides.conf;
# that holds for the template too (systemd.services."hitless@" becomes
# hitless@.service.d/overrides.conf, as nixpkgs does for getty@.service).
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

  # Timeouts, in seconds. A slot must send READY=1 within slotStartTimeout
  # (its TimeoutStartSec=, the unit file's own value, set again here because
  # the controller's timeouts are derived from it), or the upgrade is
  # abandoned and the old slot keeps serving. A stopping slot drains for at
  # most drainTimeout; its TimeoutStopSec= is 10 s more, so systemd never
  # kills a drain that is still within its deadline.
  slotStartTimeout = 15;
  slotStopTimeout = cfg.drainTimeout + 10;
  # hitless.service's TimeoutStartSec= bounds its ExecStart= and its
  # ExecReload= (the flip): starting an idle slot may first wait for a drain
  # (when every other slot still drains), then for its start and probation.
  # Its TimeoutStopSec= bounds ExecStopPost=, which waits for the slots' drains
  # (run in parallel). Both leave a margin for the helper's own systemctl
  # calls; with the default drainTimeout they are the unit file's 60 s and
  # 45 s.
  margin = 15;
  controllerStartTimeout = slotStopTimeout + slotStartTimeout + cfg.probation + margin;
  controllerStopTimeout = slotStopTimeout + margin;

  # HTTPS: the certificate and key reach the slots as systemd credentials
  # (systemd.exec(5), LoadCredential=): PID 1 copies them into the slot's
  # own $CREDENTIALS_DIRECTORY, readable by its DynamicUser only, so the
  # slots need no access to where the files live.
  tls = cfg.tls.certificateFile != null;
  tlsArgs = lib.optionals tls [
    "--tls-cert-credential"
    "tls.crt"
    "--tls-key-credential"
    "tls.key"
  ];
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
        are used. Switching to a configuration with another package reloads
        `hitless.service`: an idle slot (`hitless@blue`, `hitless@green` or
        `hitless@red`) is started from a copy of the new package's binary
        (in `/var/lib/hitless-slots`, so that a crashed slot restarts as the
        build it was started with), and once it has sent `READY=1` and stayed
        up for {option}`services.hitless.probation`, the old slot drains and
        exits. Nothing is restarted and `hitless.socket` keeps listening, so
        no client is refused. If the new version does not become ready, or
        fails within the probation, the old slot keeps serving and the switch
        fails.
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
        in the old socket's queue at that moment are dropped, and
        `hitless.service` (with its slot) is restarted along with the
        socket.
      '';
    };

    drainTimeout = lib.mkOption {
      type = lib.types.ints.positive;
      default = 20;
      example = 60;
      description = ''
        Seconds a stopping hitless keeps serving the requests it has already
        accepted (`--drain-timeout`). The slots' `TimeoutStopSec=` is set 10
        seconds above it, so systemd never kills a drain that is still within
        its deadline; `hitless.service`'s start and stop timeouts are derived
        from it too.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "--idle-grace"
        "1s"
      ];
      description = ''
        Extra command-line arguments for hitless (`hitless --help`). A
        switch that changes them (or {option}`services.hitless.drainTimeout`)
        reloads `hitless.service`, which starts a slot with the new arguments.
      '';
    };

    probation = lib.mkOption {
      type = lib.types.ints.unsigned;
      default = 3;
      example = 10;
      description = ''
        Seconds a new slot must stay up, the same process, after `READY=1`
        before the old slot is stopped (`HITLESS_PROBATION_SEC` of
        `hitless.service`). A new version that exits or crashes within it is
        stopped and the old one keeps serving. Both serve meanwhile, so a
        switch takes at least this long. 0 turns it off.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether to open the TCP ports of {option}`services.hitless.listen` in the firewall.";
    };

    tls = {
      certificateFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        example = "/var/lib/acme/example.org/fullchain.pem";
        description = ''
          PEM certificate chain (the server's certificate first) to serve
          HTTPS with, on every address of {option}`services.hitless.listen`
          (with ALPN `h2` and `http/1.1`). Set together with
          {option}`services.hitless.tls.keyFile`. The file is read by PID 1
          (`LoadCredential=`) when a slot starts, and by hitless once: a
          renewed certificate is served after `systemctl reload
          hitless.service`, which flips to a new slot (with
          `security.acme`, list `hitless.service` in `reloadServices`). A
          certificate that cannot be loaded, or does not match the key,
          makes that flip fail, and the old slot keeps serving.
        '';
      };

      keyFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        example = "/var/lib/acme/example.org/key.pem";
        description = ''
          PEM private key of {option}`services.hitless.tls.certificateFile`.
          Give a path as a string: a Nix path literal would copy the key into
          the world-readable Nix store.
        '';
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = (cfg.tls.certificateFile == null) == (cfg.tls.keyFile == null);
        message = "services.hitless.tls: set both certificateFile and keyFile, or neither.";
      }
    ];

    systemd.packages = [ cfg.package ];

    systemd.sockets.hitless = {
      # systemd.packages ignores the units' [Install] sections.
      wantedBy = [ "sockets.target" ];
      # The empty value first clears the unit's ListenStream=8080.
      socketConfig.ListenStream = [ "" ] ++ cfg.listen;
    };

    # The slots: what the options change is their command line and
    # timeouts. No wantedBy: switch-to-configuration starts every active
    # target on each switch, and only hitless.service may start a slot.
    systemd.services."hitless@" = {
      # X-RestartIfChanged=false. A running instance (hitless@blue.service)
      # has no unit file of its own; switch-to-configuration compares it
      # through hitless@.service and its drop-ins, sees this, and leaves it
      # running ("NOT restarting the following changed units"). The reload
      # of hitless.service below replaces it with the other slot instead.
      restartIfChanged = false;

      serviceConfig = {
        ExecStart = [
          ""
          # The slot's pinned copy of the package's binary (hitless-slots
          # makes it before each start); %i is the slot, so it stays
          # outside the escaping, which would double the %.
          ("/var/lib/hitless-slots/%i/hitless " + utils.escapeSystemdExecArgs (
            [
              "--drain-timeout"
              "${toString cfg.drainTimeout}s"
            ]
            ++ tlsArgs
            ++ cfg.extraArgs
          ))
        ];
        TimeoutStartSec = "${toString slotStartTimeout}s";
        TimeoutStopSec = "${toString slotStopTimeout}s";
      }
      // lib.optionalAttrs tls {
        LoadCredential = [
          "tls.crt:${cfg.tls.certificateFile}"
          "tls.key:${cfg.tls.keyFile}"
        ];
      };
    };

    systemd.services.hitless = {
      # X-ReloadIfChanged=true: whatever changed in this unit (the package's
      # store path is in its ExecStart=/ExecReload=/ExecStop=), the switch
      # reloads it, and it does so after its daemon-reload, so the new
      # ExecReload= runs and starts the idle slot from the new
      # hitless@.service. Never a stop (NixOS would stop hitless.socket with
      # it) nor a restart (both slots would stop before one starts).
      reloadIfChanged = true;
      # What makes a flip necessary: the slots' template, i.e. the package
      # (which ships hitless@.service) and the drop-in generated above. With
      # reloadIfChanged, a changed restart trigger reloads; nixpkgs warns
      # when reloadTriggers is combined with reloadIfChanged, since either
      # kind of trigger then does the same.
      restartTriggers = [
        cfg.package
        config.systemd.units."hitless@.service".unit
      ];
      # Only in effect should the reload above be turned off: then restart
      # hitless.service in one step instead of stopping it together with
      # hitless.socket (NixOS' default for a socket-activated service).
      stopIfChanged = false;

      environment.HITLESS_PROBATION_SEC = toString cfg.probation;

      serviceConfig = {
        TimeoutStartSec = "${toString controllerStartTimeout}s";
        TimeoutStopSec = "${toString controllerStopTimeout}s";
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall tcpPorts;
  };
}
