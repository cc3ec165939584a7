"""What the TLS measurements share (bench/instructions and bench/run's tls
part): one certificate for every server, one cipher suite and key exchange
pinned in the clients and in nginx, and reading back what was negotiated.

- The certificate is made in the run by the project's test CA
  (hitless_testkit.test_ca: ECDSA P-256, signed by a throwaway CA).
- TLS 1.3 with TLS_AES_128_GCM_SHA256 and X25519. The clients offer nothing
  else: h2load through --tls13-ciphers and --groups, ab and wrk (which have
  no such options) through an OPENSSL_CONF whose system_default section sets
  Ciphersuites and Groups; nginx accepts nothing else (ssl_protocols,
  ssl_conf_command Ciphersuites, ssl_ecdh_curve). The rustls servers keep
  rustls' defaults, which include both, and take the client's choice.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..test_ca import TestCa

SUITE, GROUP = "TLS_AES_128_GCM_SHA256", "X25519"
NEGOTIATED = f"TLSv1.3 {SUITE} {GROUP}"
"""What every TLS run must negotiate, as `negotiated` reads it."""

CLIENT_OPENSSL_CONF = f"""\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = {SUITE}
Groups = {GROUP}
"""
"""The clients' OpenSSL settings (OPENSSL_CONF): applied by OpenSSL to every
SSL_CTX a program makes, unless the program overrides them."""


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A server certificate and its key (PEM), for localhost and 127.0.0.1."""
    return TestCa(directory).issue("server")


def client_config(directory: Path) -> Path:
    """The clients' OPENSSL_CONF file, written into `directory`."""
    path = directory / "client-openssl.cnf"
    path.write_text(CLIENT_OPENSSL_CONF)
    return path


def negotiated(out: str) -> str | None:
    """Protocol, suite and group of a TLS connection, as h2load (`TLS
    Protocol:`, `Cipher:`), ab (`SSL/TLS Protocol: PROTO,SUITE,...`) or
    `openssl s_client -brief` (`Protocol version:`, `Ciphersuite:`) and all
    three (`Server Temp Key:`) report them; "PROTO SUITE GROUP", or None
    when the output does not say."""
    pair = (
        re.search(r"^TLS Protocol: (\S+)\nCipher: (\S+)$", out, re.MULTILINE)
        or re.search(r"^SSL/TLS Protocol:\s+([^,\s]+),([^,\s]+),", out, re.MULTILINE)
        or re.search(r"^Protocol version: (\S+)\nCiphersuite: (\S+)$", out, re.MULTILINE)
    )
    group = re.search(r"^Server Temp Key:\s+([^,\s]+)", out, re.MULTILINE)
    return f"{pair.group(1)} {pair.group(2)} {group.group(1)}" if pair and group else None


def probe(port: int, openssl_conf: Path) -> str | None:
    """What a client with the benchmark's OpenSSL settings negotiates with
    the server on `port` (`openssl s_client`, one handshake)."""
    r = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-brief"],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", "OPENSSL_CONF": str(openssl_conf)},
    )
    return negotiated(r.stdout + r.stderr)
