"""common.ports: ports handed to other processes come from outside the ephemeral range."""

import socket

import pytest

from common import ports


def _ephemeral_range() -> tuple[int, int]:
    low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
    return int(low), int(high)


def test_ports_are_below_the_ephemeral_range_and_free():
    low, _ = _ephemeral_range()
    for _ in range(20):
        port = ports.free_port()
        assert ports.PORT_LOW <= port < min(ports.PORT_HIGH, low)
        assert ports.bindable("127.0.0.1", port, ("tcp", "udp"))


def test_a_port_in_use_is_not_bindable_and_is_not_chosen():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", ports.free_port(kinds=("udp",))))
        taken = held.getsockname()[1]
        assert not ports.bindable("127.0.0.1", taken, ("udp",))
        assert ports.bindable("127.0.0.1", taken, ("tcp",))  # only UDP is held
        chosen = ports.free_udp_ports(50, exclude=(taken,))
        assert taken not in chosen
        assert len(set(chosen)) == 50


def test_block_is_consecutive_even_and_free():
    base = ports.free_port_block(10, kinds=("udp",), even=True)
    assert base % 2 == 0
    assert all(ports.bindable("127.0.0.1", p, ("udp",)) for p in range(base, base + 10))


def test_no_room_is_an_error(monkeypatch):
    monkeypatch.setattr(ports, "bindable", lambda *a, **k: False)
    with pytest.raises(OSError, match="no 3 consecutive free udp ports"):
        ports.free_port_block(3, kinds=("udp",), attempts=5)
