"""A throwaway server behind a veth pair in its own network namespace, whose packets a test can drop.

The namespace gets a /30 from 10.213.0.0/16 that no interface or route of this machine
uses: one address on the root namespace's end of the veth pair (the client side),
the other inside the namespace (the server). Traffic never leaves the machine.
`black_hole()` drops every packet in the server's namespace, as a lost host or a
firewall that forgot the connection would. Needs root, `ip` (iproute2) and iptables;
everything is removed at teardown, namespace first to last.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import (
    START_TIMEOUT,
    MariaDBServer,
    PostgresServer,
    ServerUnavailable,
    _is_root,
    _run,
    server_unavailable,
)

POOL = ipaddress.ip_network("10.213.0.0/16")


def _ip(*args: str) -> str:
    return _run(["ip", *args], timeout=30)


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    text = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show", "table", "all")
    found = []
    for word in text.split():
        with contextlib.suppress(ValueError):
            if "/" in word:
                found.append(ipaddress.ip_network(word, strict=False))
    return [net for net in found if isinstance(net, ipaddress.IPv4Network)]


class NetworkNamespace:
    """A network namespace joined to this one by a veth pair; see the module docstring."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.name = f"dbconfig-{suffix}"
        self.host_link = f"dbch{suffix}"
        self.ns_link = f"dbcn{suffix}"
        in_use = _networks_in_use()
        candidates = list(POOL.subnets(new_prefix=30))
        for _ in range(100):
            net = secrets.choice(candidates)
            if not any(net.overlaps(other) for other in in_use):
                break
        else:
            raise ServerUnavailable("no free /30 in 10.213.0.0/16 for a test network namespace")
        self.client_ip, self.server_ip = (str(address) for address in net.hosts())
        self.prefix = net.prefixlen

    def __repr__(self) -> str:
        return f"<NetworkNamespace {self.name} {self.client_ip} -> {self.server_ip}>"

    def create(self) -> NetworkNamespace:
        if not _is_root():
            raise ServerUnavailable("network namespaces need root")
        _ip("netns", "add", self.name)
        # Even if the run is interrupted before the fixture's teardown.
        atexit.register(self.remove)
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link)
        _ip("link", "set", self.ns_link, "netns", self.name)
        _ip("addr", "add", f"{self.client_ip}/{self.prefix}", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        _ip("-n", self.name, "addr", "add", f"{self.server_ip}/{self.prefix}", "dev", self.ns_link)
        _ip("-n", self.name, "link", "set", self.ns_link, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def iptables(self, *args: str) -> None:
        _run([*self.exec_prefix(), "iptables", "-w", *args], timeout=30)

    def black_hole(self) -> None:
        """Drop every packet in the server's namespace, both ways, without a reset."""
        self.iptables("-A", "INPUT", "-j", "DROP")
        self.iptables("-A", "OUTPUT", "-j", "DROP")

    def restore(self) -> None:
        """Let packets through again."""
        self.iptables("-F", "INPUT")
        self.iptables("-F", "OUTPUT")

    def remove(self) -> None:
        """Delete the namespace (its end of the veth pair goes with it) and our end."""
        for args in (("netns", "delete", self.name), ("link", "delete", self.host_link)):
            subprocess.run(["ip", *args], capture_output=True, timeout=30, check=False)


class NamespacedPostgres(PostgresServer):
    """A throwaway PostgreSQL listening only on the namespace's address."""

    def __init__(self, netns: NetworkNamespace, **kwargs: Any) -> None:
        self.netns = netns
        self.host = netns.server_ip
        super().__init__(**kwargs)

    def _settings(self) -> dict[str, str]:
        return super()._settings() | {"listen_addresses": f"'{self.host}'"}

    def _hba(self) -> str:
        return (
            super()._hba()
            + f"host     all          {self.user}       {self.netns.client_ip}/32    scram-sha-256\n"
        )

    def _pg_ctl(self, *args: str, timeout: float = START_TIMEOUT) -> str:
        user = ["runuser", "-u", self.os_user, "--"] if self.os_user else []
        return _run(
            [*self.netns.exec_prefix(), *user, str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args],
            cwd=self.base_dir,
            timeout=timeout + 10,
        )


class NamespacedMariaDB(MariaDBServer):
    """A throwaway MariaDB listening only on the namespace's address."""

    def __init__(self, netns: NetworkNamespace, **kwargs: Any) -> None:
        self.netns = netns
        self.host = netns.server_ip
        super().__init__(**kwargs)

    def _server_args(self) -> list[str]:
        args = [
            f"--bind-address={self.host}" if a.startswith("--bind-address=") else a
            for a in super()._server_args()
        ]
        return [*self.netns.exec_prefix(), *args]


@contextlib.contextmanager
def _namespace() -> Iterator[NetworkNamespace]:
    netns = None
    try:
        netns = NetworkNamespace().create()
    except Exception as exc:
        if netns is not None:
            netns.remove()
        server_unavailable("a network namespace (root, iproute2, iptables)", exc)
    try:
        yield netns
    finally:
        netns.remove()


@pytest.fixture(scope="module")
def pg_in_netns() -> Iterator[NamespacedPostgres]:
    """PostgreSQL in its own network namespace; `.netns.black_hole()` cuts it off."""
    with _namespace() as netns:
        try:
            server = NamespacedPostgres(netns)
        except Exception as exc:
            server_unavailable("throwaway PostgreSQL in a network namespace", exc)
        try:
            try:
                server.start()
            except Exception as exc:
                server_unavailable("throwaway PostgreSQL in a network namespace", exc)
            yield server
        finally:
            server.cleanup()


@pytest.fixture(scope="module")
def mariadb_in_netns() -> Iterator[NamespacedMariaDB]:
    """MariaDB in its own network namespace; `.netns.black_hole()` cuts it off."""
    with _namespace() as netns:
        try:
            server = NamespacedMariaDB(netns)
        except Exception as exc:
            server_unavailable("throwaway MariaDB in a network namespace", exc)
        try:
            try:
                server.start()
            except Exception as exc:
                server_unavailable("throwaway MariaDB in a network namespace", exc)
            yield server
        finally:
            server.cleanup()
