"""A private test network of network namespaces: one bridge, and one
namespace per machine joined to it by a veth pair.

    with Lan("hlf1234", "10.89.0.0/24") as lan:
        ns = lan.add("h1", "10.89.0.11")     # /run/netns/hlf1234-h1
        Machine(rootfs, netns=ns)            # the container joins it
        lan.cut("h1"); lan.mend("h1")        # unplug and plug its cable
        lan.run("ctl", ["ssh", ...])         # a host program inside one

The bridge lives in a namespace of its own, so nothing of this network is
ever on the host's: no address, route or interface of the host is touched,
and every namespace is deleted on exit (also after a failure). Needs root
and `ip` (iproute2).
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .errors import CannotRun
from .log import log

NETNS_DIR = Path("/run/netns")
"""Where `ip netns add` keeps the namespaces it names (ip-netns(8))."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CannotRun(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Lan:
    def __init__(self, prefix: str, network: str) -> None:
        self.prefix = prefix
        self.network = ipaddress.ip_network(network)
        self.members: list[str] = []
        self.bridge_ns = f"{prefix}-lan"

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def __enter__(self) -> Lan:
        _ip("netns", "add", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        log(f"test network {self.network}: bridge in netns {self.bridge_ns}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for name in [*self.members, "lan"]:
            with contextlib.suppress(CannotRun):
                _ip("netns", "delete", self.ns(name))

    def add(self, name: str, address: str) -> Path:
        """A namespace for machine `name` with `address` on eth0, plugged
        into the bridge; returns its path for nspawn."""
        if ipaddress.ip_address(address) not in self.network:
            raise ValueError(f"{address} is not in the test network {self.network}")
        ns = self.ns(name)
        _ip("netns", "add", ns)
        self.members.append(name)
        # Both ends are made right inside their namespaces: the host never
        # sees either of them.
        _ip("link", "add", name, "netns", self.bridge_ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.bridge_ns, "link", "set", name, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return NETNS_DIR / ns

    def cut(self, name: str) -> None:
        """Unplug `name` from the bridge: its packets go nowhere, and nobody
        tells the others (no reset, no ICMP), as when a cable is pulled."""
        _ip("-n", self.bridge_ns, "link", "set", name, "down")

    def mend(self, name: str) -> None:
        _ip("-n", self.bridge_ns, "link", "set", name, "up")

    def run(self, name: str, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a host program inside `name`'s namespace (ip netns exec)."""
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", self.ns(name), *argv], text=True, check=False, **kwargs
        )
