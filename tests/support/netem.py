"""A participant behind an impaired network: a namespace, a veth link, scripted phases.

The kernel here has no netem, so the link is impaired with what it has: random loss and
outages are nftables drops on the *input* hook at both ends (on the output hook the
sender's ``sendto`` would fail with EPERM, which no real network does), rate caps are
``tbf`` on each end of the veth pair (each end shapes what it sends: the namespace's end
is the uplink, the host's end the downlink), and a new address is the namespace's end
renumbered, as when a phone moves to another network. The namespace's default route is
the link, so everything the browser sends (its WebSocket too) crosses the impairment.

Whole processes go inside: ``chromium_in`` writes a launcher that runs Chromium under
``ip netns exec``, so Playwright still drives it over its pipes (a CDP connection over
TCP would itself cross the impaired link). See docs/network-testing.md.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.binaries import need_binary

SUBNET_PREFIX = "10.213"
_serial = itertools.count()


def _run(*command: str, stdin: str | None = None) -> str:
    return subprocess.run(command, check=True, text=True, input=stdin,
                          capture_output=True).stdout


def _free_subnet() -> int:
    """A third octet no interface of this machine uses yet (parallel runs coexist)."""
    used = {int(n) for n in re.findall(
        rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", _run("ip", "-o", "-4", "addr"))}
    for octet in range(1 + os.getpid() % 200, 255):
        if octet not in used:
            return octet
    raise RuntimeError(f"no free {SUBNET_PREFIX}.x.0/24 subnet for a test network")


def tbf_arguments(kbps: int) -> list[str]:
    """``tc`` arguments of a token bucket of ``kbps`` kilobits per second: a burst of at
    least one full frame (tbf counts frame bytes) and a 200 ms queue, a home router's."""
    burst = max(1600, kbps * 1000 // 8 // 50)
    return ["tbf", "rate", f"{kbps}kbit", "burst", str(burst), "latency", "200ms"]


def drop_rules(interface: str, loss_percent: int, outage: bool) -> str:
    """The nftables input chain body for one end of the link: everything dropped in an
    outage, else UDP at random with ``loss_percent`` (media only: TCP would retransmit)."""
    match = f'iifname "{interface}"'
    if outage:
        return f"{match} drop\n"
    if loss_percent:
        return f"{match} meta l4proto udp numgen random mod 100 < {loss_percent} drop\n"
    return ""


@dataclass
class Link:
    """A network namespace joined to the host by a veth pair, and its current impairment.

    The host end is ``host_address`` (where the server listens), the namespace end is
    ``address``; both are /24 addresses of a subnet no other interface uses."""

    namespace: str
    host_interface: str
    interface: str
    subnet: str  # "10.213.N"
    address: str = ""
    loss_percent: int = 0
    outage: bool = False

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.1"

    def in_namespace(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *command]

    def clean(self) -> None:
        """No loss, no cap, no outage."""
        self.loss_percent, self.outage = 0, False
        self._apply_drops()
        self.cap(None, None)

    def loss(self, percent: int) -> None:
        """Random loss of ``percent`` % of UDP datagrams in each direction."""
        if not 0 <= percent <= 100:
            raise ValueError(f"loss percent out of range: {percent}")
        self.loss_percent = percent
        self._apply_drops()

    def cut(self) -> None:
        """An outage: every packet dropped, both ways, until ``restore``."""
        self.outage = True
        self._apply_drops()

    def restore(self) -> None:
        """End an outage; the loss set before it applies again."""
        self.outage = False
        self._apply_drops()

    def cap(self, up_kbps: int | None, down_kbps: int | None) -> None:
        """Cap what the namespace sends (up) and receives (down); None lifts a cap."""
        for kbps, prefix, interface in ((up_kbps, self.in_namespace(), self.interface),
                                        (down_kbps, [], self.host_interface)):
            if kbps is None:
                subprocess.run([*prefix, "tc", "qdisc", "del", "dev", interface, "root"],
                               capture_output=True)  # no qdisc yet is fine
            else:
                _run(*prefix, "tc", "qdisc", "replace", "dev", interface, "root",
                     *tbf_arguments(kbps))

    def readdress(self) -> str:
        """Move the namespace to a new address (the old one disappears at once, as on a
        network change); returns the new address."""
        old = self.address
        last = int(old.rsplit(".", 1)[1]) if old else 1
        self.address = f"{self.subnet}.{last + 1}"
        if old:  # first, or the kernel drops the new one with it (a secondary address)
            _run(*self.in_namespace("ip", "addr", "del", f"{old}/24", "dev", self.interface))
        _run(*self.in_namespace("ip", "addr", "add", f"{self.address}/24", "dev",
                                self.interface))
        _run(*self.in_namespace("ip", "route", "replace", "default", "via",
                                self.host_address))
        return self.address

    def _apply_drops(self) -> None:
        nft = need_binary("nft")
        table = "visitbridge_netem"
        for prefix, interface in (([], self.host_interface),
                                  (self.in_namespace(), self.interface)):
            name = table if prefix else f"{table}_{self.host_interface}"
            _run(*prefix, nft, "-f", "-", stdin=(
                f"table inet {name} {{}}\ndelete table inet {name}\n"
                f"table inet {name} {{\n  chain input {{ type filter hook input "
                f"priority -10; policy accept;\n"
                f"    {drop_rules(interface, self.loss_percent, self.outage)}  }}\n}}\n"))

    def _remove_host_rules(self) -> None:
        subprocess.run(["nft", "delete", "table", "inet",
                        f"visitbridge_netem_{self.host_interface}"], capture_output=True)


def _stop_namespace_processes(namespace: str) -> None:
    """``ip netns del`` leaves a namespace alive while a process is in it."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


@contextlib.contextmanager
def namespace_link() -> Iterator[Link]:
    """A fresh namespace behind a clean veth link; removed (with anything left running in
    it, and the host's rules) on exit."""
    need_binary("ip")
    need_binary("tc")
    octet = _free_subnet()
    tag = f"{os.getpid() % 100000}{next(_serial)}"
    link = Link(f"vb-{tag}", f"vbh{tag}", f"vbn{tag}", f"{SUBNET_PREFIX}.{octet}")
    _run("ip", "netns", "add", link.namespace)
    try:
        _run("ip", "link", "add", link.host_interface, "type", "veth", "peer", "name",
             link.interface, "netns", link.namespace)
        _run("ip", "addr", "add", f"{link.host_address}/24", "dev", link.host_interface)
        _run("ip", "link", "set", link.host_interface, "up")
        _run(*link.in_namespace("ip", "link", "set", "lo", "up"))
        _run(*link.in_namespace("ip", "link", "set", link.interface, "up"))
        link.readdress()
        link.clean()
        yield link
    finally:
        _stop_namespace_processes(link.namespace)
        link._remove_host_rules()
        subprocess.run(["ip", "link", "del", link.host_interface], capture_output=True)
        subprocess.run(["ip", "netns", "del", link.namespace], capture_output=True)


def chromium_in(link: Link, directory: Path, chromium: str) -> str:
    """A launcher for Playwright's ``executable_path`` that starts ``chromium`` (the
    whole browser, every child process included) inside the link's namespace."""
    launcher = directory / f"chromium-{link.namespace}"
    launcher.write_text(f'#!/bin/sh\nexec ip netns exec {link.namespace} {chromium} "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)
