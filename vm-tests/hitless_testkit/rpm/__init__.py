"""Build, lint and exercise the hitless RPM; see docs/rpm.md.

    rpm/test [--no-repro] [--reuse] [--only-static] [--rounds N] [--out DIR]

1. builds.py: builds v1 with rpm/build, builds it again from a clean clone
   elsewhere and compares the bytes, and builds v2 (HITLESS_VERSION=2.0.0)
   from the same source.
2. static.py: rpmlint with rpm/rpmlint.toml (0 errors, only the warnings
   docs/rpm.md explains), glibc symbol versions, build-id and debuginfo,
   payload, licences and bundled(crate()) provides, units identical to
   units/, and the scriptlets (`rpm -qp --scripts`) against what an upgrade
   relies on.
3. guests.py: in two Debian 12 containers with systemd as PID 1, one acting
   as EL8 (no systemd-update-helper) and one as EL9 (a stand-in helper and
   systemd's RPM file triggers, rpm/tests/): `rpm -i` v1, enable the socket
   as docs/rpm.md says, `rpm -U` between v1 and v2 under load in every
   client mode with zero failed requests, an upgrade with the service
   stopped, and `rpm -e`.

Prints one PASS/FAIL line per check and ends with "rpm: N passed, M failed".
"""
