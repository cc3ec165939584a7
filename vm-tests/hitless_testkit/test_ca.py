"""A throwaway certificate authority for the TLS tests, made with the
openssl command line at test time: a CA, and server certificates it signs
for localhost, 127.0.0.1 and ::1 (RFC 5280 subjectAltName; clients ignore
the common name).

    python3 -m hitless_testkit.test_ca DIR      # ca.pem, server-1.pem, server-1.key

Nothing here is secret: the keys live as long as the test's directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SUBJECT_ALT_NAMES = "DNS:localhost,IP:127.0.0.1,IP:::1"
DAYS = "2"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)


class TestCa:
    """The CA's files in `directory`: `ca.pem` (what clients trust) and its
    key; `issue(name)` makes `name.pem` (the certificate) and `name.key`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", DAYS,
            "-subj", "/CN=hitless test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(self, name: str) -> tuple[Path, Path]:
        """A server certificate and its key, signed by this CA."""
        cert, key, csr = self.dir / f"{name}.pem", self.dir / f"{name}.key", self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        ext.write_text(
            f"subjectAltName={SUBJECT_ALT_NAMES}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", DAYS, "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return cert, key

    def fingerprint(self, cert: Path) -> str:
        """SHA-256 fingerprint of `cert`, as `openssl x509 -fingerprint` prints it."""
        out = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.strip().split("=", 1)[1]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m hitless_testkit.test_ca DIR", file=sys.stderr)
        return 2
    ca = TestCa(Path(argv[0]))
    ca.issue("server-1")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
