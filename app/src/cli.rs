//! Command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use hitless::{ListenAddr, PemSource, Settings};
use hyper::http::uri::PathAndQuery;

use crate::fault::Fault;

use crate::version::VERSION;

#[derive(Debug, Parser)]
#[command(
    name = "hitless",
    version = VERSION,
    about = "HTTP service that takes its listening socket from systemd and drains on SIGTERM",
    after_help = "Exit codes: 0 clean exit after drain, 1 runtime error, 2 usage error, \
                  3 bad socket-activation environment, 4 cannot bind a --listen address, \
                  5 drain cut short: the deadline passed while the service was still working on a request, \
                  or a second signal came with connections open (a deadline that only peers which stopped \
                  reading hold exits 0), \
                  6 not ready: the ready check got a 5xx or no answer in time (nothing was served), \
                  7 TLS certificate or key cannot be loaded or do not match.",
    group(ArgGroup::new("cert").args(["tls_cert", "tls_cert_credential"]).requires("key")),
    group(ArgGroup::new("key").args(["tls_key", "tls_key_credential"]).requires("cert")),
)]
pub struct Cli {
    /// Address to bind when NOT socket-activated: HOST:PORT or unix:/PATH.
    /// Repeatable; default 127.0.0.1:8080. Ignored (with a warning) when
    /// systemd passes sockets.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<ListenAddr>,

    /// Hard deadline for the whole drain after SIGTERM. Keep it below the
    /// unit's TimeoutStopSec= so systemd never has to SIGKILL us.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_positive_duration)]
    pub drain_timeout: Duration,

    /// During the drain, how long a connection with nothing in flight stays
    /// open after it was last active (an idle HTTP/1 keep-alive connection,
    /// an HTTP/2 connection with no stream open, a connection that sent no
    /// request yet), so that a request the client already sent is still
    /// served (and answered with `Connection: close`). It covers requests on
    /// their way when SIGTERM came (a network round trip is plenty) and
    /// clients that send their next request promptly. A stop-then-start
    /// restart (not an upgrade, which overlaps) waits for it while idle
    /// connections are open. Requests in flight are only cut by
    /// --drain-timeout.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    pub idle_grace: Duration,

    /// Time a client has to send a complete request head: from the
    /// connection's start for its first request, whatever the protocol
    /// (HTTP/2: preface, SETTINGS and the first HEADERS); from its first
    /// byte for a later HTTP/1 request. Connections that miss it are
    /// closed. Must be above zero.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,

    /// How long a connection with no request in flight stays open between
    /// requests (HTTP/1 keep-alive; HTTP/2 with no stream open, closed with
    /// GOAWAY). Announced on HTTP/1 responses as `Keep-Alive: timeout=N`
    /// (whole seconds). A client whose pool keeps idle connections longer
    /// (Go: 90s) may reuse one just as it is closed; set it above the
    /// clients' pool timeouts to rule that out. Must be above zero.
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = parse_positive_duration)]
    pub keepalive_timeout: Duration,

    /// How often an HTTP/2 connection with a stream open that received
    /// nothing for that long is checked with a PING, to find peers that no
    /// longer answer. 0s (the default) sends no PINGs; TCP keep-alive
    /// (--tcp-keepalive) finds peers whose host has gone.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long to wait for the answer to such a PING before closing the
    /// connection. Must be above zero.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_positive_duration)]
    pub http2_keepalive_timeout: Duration,

    /// Close a connection whose peer took no byte of a ready response for
    /// this long (it stopped reading). Must be above zero.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive_duration)]
    pub send_timeout: Duration,

    /// TCP keep-alive idle time for accepted connections (then 3 probes at
    /// a third of it, at most 10s apart); 0s leaves the socket's setting
    /// alone (systemd.socket KeepAlive=).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub tcp_keepalive: Duration,

    /// Keep the soft RLIMIT_NOFILE as started (systemd: 1024) instead of
    /// raising it to the hard limit.
    #[arg(long)]
    pub keep_nofile_limit: bool,

    /// While this file exists, /healthz answers 404: the host is being
    /// taken out of its load balancer's pool (`hitless-slots leave` creates
    /// it; systemd removes its directory when hitless.service stops).
    #[arg(long, value_name = "PATH", default_value = hitless::DEREGISTRATION_FLAG)]
    pub deregistration_flag: PathBuf,

    /// Before accepting anything and before telling systemd READY=1, send
    /// GET PATH through the service itself (in memory); a 5xx or no answer
    /// within --ready-check-timeout ends the process with exit code 6, so
    /// an upgrade to a build that cannot serve leaves the old one serving.
    #[arg(long, value_name = "PATH", default_value = "/healthz", value_parser = parse_path)]
    pub ready_check: PathAndQuery,

    /// Skip the ready check.
    #[arg(long, conflicts_with = "ready_check")]
    pub no_ready_check: bool,

    /// How long the ready check may take (keep it below the unit's
    /// TimeoutStartSec=). Must be above zero.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub ready_check_timeout: Duration,

    /// A fault to simulate, for the upgrade tests' broken builds only (see
    /// docs/container-tests.md): `answer-500` (every response is a 500,
    /// the ready check's too) or `crash-after=DURATION` (abort that long
    /// after start). Hidden from --help.
    #[arg(long, value_name = "FAULT", hide = true)]
    pub simulate_fault: Option<Fault>,

    /// Serve HTTPS with this PEM certificate chain (the server's
    /// certificate first, then intermediates). Needs a key. Read once at
    /// start: a new certificate takes a new process (`systemctl reload
    /// hitless.service` flips to one).
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Like --tls-cert, from the systemd credential NAME
    /// ($CREDENTIALS_DIRECTORY/NAME; LoadCredential=NAME:PATH in the unit).
    #[arg(long, value_name = "NAME")]
    pub tls_cert_credential: Option<String>,

    /// Like --tls-key, from the systemd credential NAME.
    #[arg(long, value_name = "NAME")]
    pub tls_key_credential: Option<String>,

    /// How long a TLS handshake may take from accept(); --header-read-timeout
    /// bounds it too. Must be above zero.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub tls_handshake_timeout: Duration,
}

/// A path (and query) in origin form, as the ready check sends it.
fn parse_path(s: &str) -> Result<PathAndQuery, String> {
    match s.parse::<PathAndQuery>() {
        Ok(p) if s.starts_with('/') => Ok(p),
        _ => Err("must be a path starting with / (example: /healthz)".to_owned()),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 20s, 500ms, 1m)"))
}

/// A duration for a timeout that closes connections: zero would close
/// every connection at once.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be above zero (examples: 20s, 500ms, 1m)".to_owned()),
        d => Ok(d),
    }
}

impl Cli {
    /// The library settings these flags ask for.
    pub fn settings(&self) -> Settings {
        let defaults = Settings::default();
        Settings {
            fallback: if self.listen.is_empty() {
                defaults.fallback
            } else {
                self.listen.clone()
            },
            drain_timeout: self.drain_timeout,
            idle_grace: self.idle_grace,
            header_read_timeout: self.header_read_timeout,
            keepalive_timeout: self.keepalive_timeout,
            http2_keepalive_interval: self.http2_keepalive_interval,
            http2_keepalive_timeout: self.http2_keepalive_timeout,
            send_timeout: self.send_timeout,
            tcp_keepalive: Some(self.tcp_keepalive).filter(|d| !d.is_zero()),
            raise_nofile_limit: !self.keep_nofile_limit,
            ready_check: (!self.no_ready_check).then(|| self.ready_check.clone()),
            ready_check_timeout: self.ready_check_timeout,
        }
    }

    /// The certificate and key to serve HTTPS with, if asked for (clap
    /// makes sure that both or neither are given).
    pub fn tls(&self) -> Option<(PemSource, PemSource)> {
        let cert = (self.tls_cert.clone().map(PemSource::File))
            .or_else(|| self.tls_cert_credential.clone().map(PemSource::Credential))?;
        let key = (self.tls_key.clone().map(PemSource::File))
            .or_else(|| self.tls_key_credential.clone().map(PemSource::Credential))?;
        Some((cert, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["hitless"]).unwrap();
        assert!(cli.listen.is_empty());
        assert_eq!(cli.settings(), Settings::default());
        assert_eq!(cli.drain_timeout, Duration::from_secs(20));
    }

    #[test]
    fn connection_flags_reach_the_settings() {
        let cli = Cli::try_parse_from([
            "hitless",
            "--keepalive-timeout",
            "90s",
            "--header-read-timeout",
            "5s",
            "--http2-keepalive-interval",
            "0s",
            "--http2-keepalive-timeout",
            "2s",
            "--keep-nofile-limit",
        ])
        .unwrap();
        let s = cli.settings();
        assert_eq!(s.keepalive_timeout, Duration::from_secs(90));
        assert_eq!(s.header_read_timeout, Duration::from_secs(5));
        assert_eq!(s.http2_keepalive_interval, Duration::ZERO);
        assert_eq!(s.http2_keepalive_timeout, Duration::from_secs(2));
        assert!(!s.raise_nofile_limit);
    }

    #[test]
    fn ready_check_flags_reach_the_settings() {
        let cli = Cli::try_parse_from([
            "hitless",
            "--ready-check",
            "/ready?deep=1",
            "--ready-check-timeout",
            "2s",
        ])
        .unwrap();
        let s = cli.settings();
        assert_eq!(s.ready_check.unwrap().as_str(), "/ready?deep=1");
        assert_eq!(s.ready_check_timeout, Duration::from_secs(2));
        let off = Cli::try_parse_from(["hitless", "--no-ready-check"]).unwrap();
        assert_eq!(off.settings().ready_check, None);
    }

    #[test]
    fn listen_flags_replace_the_fallback() {
        let cli = Cli::try_parse_from([
            "hitless",
            "--listen",
            "[::1]:80",
            "--listen",
            "unix:/run/h.sock",
        ])
        .unwrap();
        let want: Vec<ListenAddr> = vec![
            "[::1]:80".parse().unwrap(),
            "unix:/run/h.sock".parse().unwrap(),
        ];
        assert_eq!(cli.settings().fallback, want);
    }

    #[test]
    fn tls_from_files_or_credentials() {
        assert_eq!(Cli::try_parse_from(["hitless"]).unwrap().tls(), None);
        let files = Cli::try_parse_from(["hitless", "--tls-cert", "/c", "--tls-key", "/k"]);
        assert_eq!(
            files.unwrap().tls(),
            Some((PemSource::File("/c".into()), PemSource::File("/k".into())))
        );
        let creds = Cli::try_parse_from([
            "hitless",
            "--tls-cert-credential",
            "tls.crt",
            "--tls-key-credential",
            "tls.key",
        ]);
        assert_eq!(
            creds.unwrap().tls(),
            Some((
                PemSource::Credential("tls.crt".into()),
                PemSource::Credential("tls.key".into())
            ))
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Cli::try_parse_from(["hitless", "--drain-timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["hitless", "--drain-timeout", "5"]).is_err());
        assert!(Cli::try_parse_from(["hitless", "--listen", "unix:relative"]).is_err());
        for flag in [
            "--header-read-timeout",
            "--keepalive-timeout",
            "--http2-keepalive-timeout",
        ] {
            assert!(
                Cli::try_parse_from(["hitless", flag, "0s"]).is_err(),
                "{flag} 0s accepted"
            );
        }
        assert!(Cli::try_parse_from(["hitless", "--ready-check", "healthz"]).is_err());
        assert!(Cli::try_parse_from(["hitless", "--ready-check-timeout", "0s"]).is_err());
        assert!(Cli::try_parse_from(["hitless", "--simulate-fault", "sometimes"]).is_err());
        // A certificate without a key, or two certificates.
        assert!(Cli::try_parse_from(["hitless", "--tls-cert", "/c"]).is_err());
        assert!(Cli::try_parse_from(["hitless", "--tls-key-credential", "k"]).is_err());
        assert!(Cli::try_parse_from([
            "hitless",
            "--tls-cert",
            "/c",
            "--tls-cert-credential",
            "c",
            "--tls-key",
            "/k"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["hitless", "--tls-handshake-timeout", "0s"]).is_err());
        // 0s turns the PINGs off: allowed.
        assert!(Cli::try_parse_from(["hitless", "--http2-keepalive-interval", "0s"]).is_ok());
    }
}
