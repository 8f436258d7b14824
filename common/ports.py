"""Free ports for deployments, demos and tests that hand a port to another process.

Ports come from below Linux's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
default): the kernel never hands those to an outgoing connection or a bind to port 0, so a port we
checked stays free until the process we configure binds it, unless someone else picks it on
purpose. Picking with bind(("", 0)) instead loses that race now and then (a TCP connection's
source port lands on it).
"""

from __future__ import annotations

import random
import socket

__all__ = ["PORT_LOW", "PORT_HIGH", "bindable", "free_port", "free_port_block", "free_udp_ports"]

PORT_LOW, PORT_HIGH = 20000, 32700
_KINDS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def bindable(host: str, port: int, kinds: tuple[str, ...] = ("tcp", "udp")) -> bool:
    """Whether `port` can be bound on `host` right now for every transport in `kinds`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in kinds:
        try:
            with socket.socket(family, _KINDS[kind]) as s:
                s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, host: str = "127.0.0.1", kinds: tuple[str, ...] = ("tcp", "udp"), *,
                    even: bool = False, exclude: tuple[int, ...] = (), attempts: int = 500) -> int:
    """The first of `count` consecutive ports free for every transport in `kinds` (an even first
    port when `even`, as RTP wants)."""
    for _ in range(attempts):
        base = random.randrange(PORT_LOW, PORT_HIGH - count)
        if even:
            base &= ~1
        block = range(base, base + count)
        if any(p in exclude for p in block):
            continue
        if all(bindable(host, p, kinds) for p in block):
            return base
    raise OSError(f"no {count} consecutive free {'+'.join(kinds)} ports on {host} in {PORT_LOW}-{PORT_HIGH}")


def free_port(host: str = "127.0.0.1", kinds: tuple[str, ...] = ("tcp", "udp"), *,
              exclude: tuple[int, ...] = ()) -> int:
    """A port free for every transport in `kinds` (TCP and UDP by default) on `host` right now."""
    return free_port_block(1, host, kinds, exclude=exclude)


def free_udp_ports(count: int, host: str = "127.0.0.1", exclude: tuple[int, ...] = ()) -> list[int]:
    """`count` distinct UDP ports free on `host` right now."""
    ports: list[int] = []
    while len(ports) < count:
        ports.append(free_port(host, ("udp",), exclude=tuple(exclude) + tuple(ports)))
    return ports
