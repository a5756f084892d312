"""Network namespaces for tests: separate network stacks joined to this one by veth pairs.

``with network_namespaces(2) as namespaces:`` makes two namespaces, each
with a veth pair to the test's own namespace on a /30 network of its own
(``namespaces[i].host_address`` on this side, ``namespaces[i].address``
inside), runs commands inside one (:meth:`Namespace.spawn`), and removes
everything when the block ends, whatever happened: the processes it
started, the namespaces, the veth pairs.

It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and ``ip`` (iproute2);
without them, or where the kernel refuses, the test is skipped with the
reason. Names carry the process ID, and the networks are picked among
those no interface uses yet, so concurrent test runs do not collide.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field

import pytest

#: Seconds an ``ip`` command may take.
IP_TIMEOUT = 10.0


class NamespaceError(RuntimeError):
    """An ``ip`` command failed."""


def _ip(*arguments: str) -> str:
    result = subprocess.run(
        ["ip", *arguments], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise NamespaceError(f"ip {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Namespace:
    """One network namespace, linked to the test's namespace by a veth pair."""

    name: str
    """The namespace's name (``ip netns``)."""

    host_interface: str
    """The veth end in the test's namespace."""

    host_address: str
    """The address of the test's end of the link."""

    address: str
    """The address of the namespace's end of the link."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, argv: Sequence[str], *, stdout: int | None = None, stderr: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace; it is killed when the namespaces are removed."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        self.processes.append(process)
        return process

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace to completion (10 seconds at most)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=IP_TIMEOUT,
            check=False,
        )


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            used.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    return used


def _free_network(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A /30 in 10.128.0.0/9 that overlaps no address of this namespace nor ``taken``."""
    pool = ipaddress.IPv4Network("10.128.0.0/9")
    for _ in range(100):
        offset = random.randrange(pool.num_addresses // 4) * 4
        network = ipaddress.IPv4Network(f"{pool.network_address + offset}/30")
        if not any(network.overlaps(other) for other in taken):
            return network
    raise NamespaceError("no free /30 network")


def _require_root_and_ip() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs the tests as root)")
    if shutil.which("ip") is None:
        pytest.skip("network namespaces need ip (Debian package iproute2)")


@contextmanager
def network_namespaces(count: int) -> Iterator[list[Namespace]]:
    """Make ``count`` namespaces linked to this one; remove them all when the block ends.

    Skips the test where namespaces cannot be made here.
    """
    _require_root_and_ip()
    tag = f"{os.getpid() % 100000}{random.randrange(100):02d}"
    namespaces: list[Namespace] = []
    with ExitStack() as cleanup:
        taken = _used_networks()
        for index in range(count):
            network = _free_network(taken)
            taken.append(network)
            host_address, address = (str(host) for host in network.hosts())
            namespace = Namespace(
                name=f"hface-test-{tag}-{index}",
                host_interface=f"hf{tag}h{index}",
                host_address=host_address,
                address=address,
            )
            try:
                _ip("netns", "add", namespace.name)
            except NamespaceError as exc:
                pytest.skip(f"cannot make a network namespace here: {exc}")
            cleanup.callback(_remove, namespace)
            namespaces.append(namespace)
            inner = f"hf{tag}n{index}"
            _ip("link", "add", namespace.host_interface, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", namespace.name)
            _ip("addr", "add", f"{host_address}/30", "dev", namespace.host_interface)
            _ip("link", "set", namespace.host_interface, "up")
            _ip("-n", namespace.name, "addr", "add", f"{address}/30", "dev", inner)
            _ip("-n", namespace.name, "link", "set", inner, "up")
            _ip("-n", namespace.name, "link", "set", "lo", "up")
        yield namespaces


def _remove(namespace: Namespace) -> None:
    """Stop what runs inside, then delete the namespace and the veth pair (best effort)."""
    for process in namespace.processes:
        if process.poll() is None:
            process.kill()
        process.wait(IP_TIMEOUT)
    for arguments in (("netns", "del", namespace.name), ("link", "del", namespace.host_interface)):
        # Either may be gone already: deleting the namespace deletes the pair.
        with suppress(NamespaceError):
            _ip(*arguments)
