"""Section 1b: the steady state over TLS, hitless against nginx."""

from __future__ import annotations

from .common import Results
from .steady import cpu_lines, rss_lines, steady_table


def tls_section(res: Results) -> str:
    p = res["tls"]["params"]
    t = p["tls"]
    o = ["## 1b. Steady state over TLS: hitless vs nginx", ""]
    o.append(
        "The same servers, cores, rounds and run length as section 1, over HTTPS: hitless with "
        "`--tls-cert`/`--tls-key` (rustls with the *ring* provider), nginx on its `ssl` listener of "
        "bench/nginx.conf (OpenSSL). One certificate for both, made in the run by the project's test CA "
        "(vm-tests/hitless_testkit/test_ca.py: ECDSA P-256). TLS 1.3 with "
        f"{t['suite']} and {t['group']} only: the clients offer nothing else (an `OPENSSL_CONF` whose "
        "`system_default` section sets `Ciphersuites` and `Groups`, which OpenSSL applies to every "
        "client context) and nginx accepts nothing else (`ssl_protocols TLSv1.3`, `ssl_conf_command "
        "Ciphersuites`, `ssl_ecdh_curve`); hitless keeps rustls' defaults, which include both, and takes "
        "the client's choice. Negotiated, as `openssl s_client` with the same settings reports it: "
        + ", ".join(f"{server} {what}" for server, what in t["negotiated"].items())
        + f". Control: {t['control']}, so wrk applies the settings."
    )
    o.append("")
    o.append(
        f"- HTTPS keep-alive: `wrk -t1 -c{p['wrk_conns']}`. A new connection, with a full handshake, per "
        f"request: `ab -c{t['ab_conns']} -f TLS1.3` (HTTP/1.0 without keep-alive; percentiles from its `-e` "
        "file, connect to last byte). ab makes a new TLS session for every connection; wrk and h2load "
        "resume the previous one when they reconnect (nginx's `$ssl_session_reused` says `r`), which is "
        "not the handshake this row measures. bench/instructions counts the server's ECDSA signatures "
        "under ab: one per connection. ab also reports the suite and group of each run, which must "
        "be the pinned ones. Every server sends its default two TLS 1.3 session tickets per handshake, "
        "which ab never uses."
    )
    o.append("")
    o += steady_table(res, "tls")
    o.append("")
    o += cpu_lines(res, "tls")
    o += rss_lines(res, "tls")
    return "\n".join(o)
