"""Static checks of the built packages: metadata, the binary, units and
licences, scriptlets, rpmlint."""

from __future__ import annotations

import re
import subprocess
import sys

from ..log import log
from .host import V2, CheckFailed, RpmlintResult, RpmRun, cargo_field, need, qp, rpm_files, run

# Warnings docs/rpm.md explains; anything else fails the lint check.
KNOWN_WARNINGS = [
    r"^hitless(-debuginfo|-debugsource)?\.(x86_64|src): W: no-url-tag$",
    r"^hitless\.(spec|src): W: invalid-url Source[01]: hitless-[^ ]+\.tar\.gz$",
    r"^hitless\.x86_64: W: no-manual-page-for-binary hitless$",
    r"^hitless\.x86_64: W: dangerous-command-in-%preun rm$",
]


def split_scripts(text: str) -> dict[str, str]:
    """`rpm -qp --scripts` output -> {"post": body, "post.interpreter": ..., ...}."""
    out: dict[str, str] = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"^(\w+) scriptlet \(using ([^)]+)\):$", line)
        if m:
            cur = {"preinstall": "pre", "postinstall": "post", "preuninstall": "preun", "postuninstall": "postun"}.get(
                m.group(1), m.group(1)
            )
            out[cur] = ""
            out[cur + ".interpreter"] = m.group(2)
            continue
        if cur:
            out[cur] += line + "\n"
    return out


def code_lines(body: str) -> list[str]:
    return [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def check_metadata(r: RpmRun) -> None:
    for which, version in (("v1", r.v1), ("v2", V2)):
        rpm = r.main_rpm(which)
        need(rpm.exists(), f"{rpm} missing")
        nvr = qp("%{NAME} %{VERSION} %{RELEASE} %{ARCH}", rpm)
        need(nvr == f"hitless {version} 1 x86_64", f"{rpm.name}: {nvr}")
        comp = qp("%{PAYLOADCOMPRESSOR}", rpm)
        need(comp == "gzip", f"{rpm.name}: payload {comp}, want gzip (EL8 reads it)")
        root = r.root(which)
        got = run([str(root / "usr/bin/hitless"), "--version"]).strip()
        need(got == f"hitless {version}", f"{rpm.name}: the binary says {got!r}")
    spec = (r.src / "rpm/hitless.spec").read_text()
    msrv = cargo_field(r.src, "Cargo.toml", "rust-version")
    for tool in ("cargo", "rust"):
        need(
            re.search(rf"^BuildRequires:\s+{tool} >= {re.escape(msrv)}$", spec, re.M),
            f"hitless.spec: want BuildRequires: {tool} >= {msrv} (rust-version in Cargo.toml)",
        )
    m = re.search(r"^%\{!\?hitless_version:%global hitless_version (\S+)\}", spec, re.M)
    need(
        m and m.group(1) == r.v1,
        f"hitless.spec's default version {m.group(1) if m else '?'} != app/Cargo.toml's {r.v1}: "
        "bump it and add a %changelog entry",
    )
    need(f"- {r.v1}-1" in spec.split("%changelog", 1)[1], f"no %changelog entry for {r.v1}-1")


def check_binary(r: RpmRun) -> None:
    rpm = r.main_rpm("v1")
    glibc = re.findall(r"GLIBC_([\d.]+)", qp("--requires", rpm))
    need(glibc, f"{rpm.name} requires no GLIBC_ symbol version")
    top = max(glibc, key=lambda v: tuple(int(x) for x in v.split(".")))
    need(tuple(int(x) for x in top.split(".")) <= (2, 28), f"requires GLIBC_{top} (> 2.28, EL8)")
    binary = r.root("v1") / "usr/bin/hitless"
    syms = run(["objdump", "-T", str(binary)])
    top_sym = max(set(re.findall(r"GLIBC_([\d.]+)", syms)), key=lambda v: tuple(map(int, v.split("."))))
    need(top_sym == top, f"objdump says GLIBC_{top_sym}, the RPM requires GLIBC_{top}")
    note = run(["readelf", "-n", str(binary)])
    m = re.search(r"Build ID: ([0-9a-f]+)", note)
    if m is None:
        raise CheckFailed("no build-id note in /usr/bin/hitless")
    bid = m.group(1)
    files = qp("--list", rpm).split()
    need(f"/usr/lib/.build-id/{bid[:2]}/{bid[2:]}" in files, f"no /usr/lib/.build-id link for {bid}")
    dbg = r.out / "v1" / f"hitless-debuginfo-{r.v1}-1.x86_64.rpm"
    need(dbg.exists(), "no -debuginfo package")
    dfiles = qp("--list", dbg).split()
    need(
        any(f.startswith("/usr/lib/debug/usr/bin/hitless-") and f.endswith(".debug") for f in dfiles),
        "the -debuginfo package has no .debug file for /usr/bin/hitless",
    )
    src = r.out / "v1" / f"hitless-debugsource-{r.v1}-1.x86_64.rpm"
    need(
        any(f.endswith("/app/src/main.rs") for f in qp("--list", src).split()),
        "the -debugsource package lacks app/src/main.rs",
    )
    r.results.glibc_max = top
    r.results.build_id = bid
    log(f"highest GLIBC_ required: {top}; build-id {bid}; debuginfo and debugsource present")


def check_units_and_licences(r: RpmRun) -> None:
    root = r.root("v1")
    for u in ("hitless.socket", "hitless.service", "hitless@.service"):
        shipped = root / "usr/lib/systemd/system" / u
        need(shipped.read_bytes() == (r.src / "units" / u).read_bytes(), f"{u} differs from units/{u}")
    helper = root / "usr/libexec/hitless/hitless-slots"
    need(helper.read_bytes() == (r.src / "units/hitless-slots").read_bytes(), "hitless-slots differs from units/")
    need(helper.stat().st_mode & 0o111 != 0, "hitless-slots is not executable")
    service = (r.src / "units/hitless.service").read_text()
    need(
        re.search(r"^ExecReload=/usr/libexec/hitless/hitless-slots flip$", service, re.M) is not None,
        "hitless.service has no ExecReload= that flips: EL9's reload-or-restart --marked would restart it",
    )
    tag = run(
        [
            sys.executable,
            str(r.src / "rpm/crates.py"),
            "--offline",
            "--target",
            "x86_64-unknown-linux-gnu",
            "license-tag",
        ],
        cwd=r.src,
        stdout_only=True,
    ).strip()
    spec_tag = qp("%{LICENSE}", r.main_rpm("v1"))
    need(tag == spec_tag, f"License: in hitless.spec is\n  {spec_tag}\nCargo.lock says it must be\n  {tag}")
    lic = root / "usr/share/licenses/hitless"
    vendored = (lic / "cargo-vendor.txt").read_text().split("\n")
    crates = [ln.split(" v") for ln in vendored if ln.strip()]
    provides = set(qp("--provides", r.main_rpm("v1")).splitlines())
    for name, version in crates:
        # As the spec writes it: SemVer build metadata (+...) dropped (it
        # does not order versions), pre-release dashes as RPM's tilde.
        rpm_version = version.split("+", 1)[0].replace("-", "~")
        need(
            f"bundled(crate({name})) = {rpm_version}" in provides,
            f"no Provides: bundled(crate({name})) = {rpm_version}",
        )
        texts = lic / "bundled-licenses" / f"{name}-{version}"
        need(texts.is_dir() and any(texts.iterdir()), f"no licence text for {name} {version}")
    summary = (lic / "LICENSE.dependencies").read_text()
    need(all(f"{n} {v}" in summary for n, v in crates), "LICENSE.dependencies misses crates")
    r.results.bundled_crates = len(crates)
    log(f"{len(crates)} bundled crates: Provides, LICENSE.dependencies and licence texts present; License: {spec_tag}")


def check_scriptlets(r: RpmRun) -> None:
    text = qp("--scripts", r.main_rpm("v1"))
    (r.out / "scriptlets.txt").write_text(text)
    s = split_scripts(text)
    need(
        set(k for k in s if "." not in k) == {"post", "preun", "posttrans"},
        f"expected exactly %post, %preun, %posttrans; got {sorted(k for k in s if '.' not in k)}",
    )
    helper = "/usr/lib/systemd/systemd-update-helper"
    for name in ("post", "preun", "posttrans"):
        need(s[name + ".interpreter"] == "/bin/sh", f"%{name} runs with {s[name + '.interpreter']}")
        path = r.tmp / f"{name}.sh"
        path.write_text(s[name])
        run(["dash", "-n", str(path)])
        run(["checkbashisms", "--posix", str(path)])
    post, preun, posttrans = (code_lines(s[k]) for k in ("post", "preun", "posttrans"))
    # First install only: preset both units (EL9 through the helper).
    need(post[0] == "if [ $1 -eq 1 ]; then", f"%post not guarded by $1 -eq 1: {post[0]}")
    need(f"{helper} install-system-units hitless.socket hitless.service || :" in post, "%post: no helper preset")
    need(
        any(ln.startswith("systemctl --no-reload preset hitless.socket hitless.service") for ln in post),
        "%post: no systemctl preset",
    )
    # Erase only: disable and stop both.
    need(preun[0] == "if [ $1 -eq 0 ]; then", f"%preun not guarded by $1 -eq 0: {preun[0]}")
    need(f"{helper} remove-system-units hitless.socket hitless.service || :" in preun, "%preun: no helper")
    need(
        any(ln.startswith("systemctl --no-reload disable --now hitless.socket hitless.service") for ln in preun),
        "%preun: no disable --now",
    )
    # End of an upgrade: daemon-reload, then reload (flip) the service if it
    # runs; never a restart marker (EL9 would restart, not reload), never the
    # socket.
    text_pt = "\n".join(posttrans)
    i_reload = next((i for i, ln in enumerate(posttrans) if "systemctl daemon-reload" in ln), -1)
    i_flip = next((i for i, ln in enumerate(posttrans) if "systemctl try-reload-or-restart hitless.service" in ln), -1)
    need(0 <= i_reload < i_flip, "%posttrans: no daemon-reload followed by try-reload-or-restart hitless.service")
    need("mark-restart" not in text_pt and "Markers" not in text_pt, "%posttrans marks the unit for a restart")
    need("hitless.socket" not in text_pt, "%posttrans touches hitless.socket")
    need(
        not re.search(r"\b(stop|restart|kill)\b", "\n".join(post + preun).replace("disable --now", "")),
        "%post/%preun stop or restart something",
    )
    order = qp("[%{ORDERNAME} %{ORDERFLAGS:deptype}\n]", r.main_rpm("v1")).split("\n")
    need(
        {"systemd post", "systemd preun", "systemd posttrans"} <= set(order),
        f"OrderWithRequires(post/preun/posttrans): systemd missing: {order}",
    )
    log(
        "scriptlets: %post presets, %preun disables --now, %posttrans reloads (flips) hitless.service if it runs; "
        "no restart marker; all POSIX sh"
    )


def check_rpmlint(r: RpmRun) -> None:
    files = [str(r.src / "rpm/hitless.spec"), *map(str, rpm_files(r.out / "v1").values())]
    p = subprocess.run(
        ["rpmlint", "-c", str(r.src / "rpm/rpmlint.toml"), *files],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    (r.out / "rpmlint.txt").write_text(p.stdout)
    lines = [ln for ln in p.stdout.splitlines() if re.search(r": [EW]: ", ln)]
    errors = [ln for ln in lines if ": E: " in ln]
    warnings = sorted(set(ln for ln in lines if ": W: " in ln))
    unknown = [w for w in warnings if not any(re.search(k, w) for k in KNOWN_WARNINGS)]
    summary = re.search(r"\d+ packages and \d+ specfiles checked; .*", p.stdout)
    log(f"rpmlint: {summary.group(0) if summary else p.stdout[-500:]}")
    for w in warnings:
        log(f"  {w}")
    need(not errors and p.returncode == 0, "rpmlint errors:\n" + "\n".join(errors or [p.stdout[-2000:]]))
    need(not unknown, "warnings docs/rpm.md does not explain:\n" + "\n".join(unknown))
    r.results.rpmlint = RpmlintResult(errors=0, warnings=warnings)
