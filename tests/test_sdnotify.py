"""SystemdNotifier against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from common.sdnotify import SystemdNotifier, start_watchdog, watchdog_loop


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: one datagram per notify() call."""

    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def recv(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
            return True
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(5)


@pytest.fixture
def systemd(tmp_path: Path):
    path = tmp_path / "notify"
    if len(str(path)) > 100:  # sun_path holds 108 bytes; long test names can exceed it
        path = Path(tempfile.mkdtemp(prefix="sd", dir="/tmp")) / "notify"
    fake = FakeSystemd(str(path))
    fake.env = {"NOTIFY_SOCKET": str(path)}
    yield fake
    fake.sock.close()


def test_without_notify_socket_every_call_is_a_no_op():
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.stopping() is False
    assert notifier.watchdog_interval() is None


def test_ready_with_status_is_one_datagram(systemd):
    notifier = SystemdNotifier(systemd.env)
    assert notifier.enabled
    assert notifier.ready("kdc: listening on 0.0.0.0:88")
    assert systemd.recv() == ["READY=1", "STATUS=kdc: listening on 0.0.0.0:88"]
    assert notifier.ready()
    assert systemd.recv() == ["READY=1"]


def test_status_stopping_and_watchdog(systemd):
    notifier = SystemdNotifier(systemd.env)
    notifier.status("3 calls")
    notifier.stopping()
    notifier.watchdog()
    assert systemd.recv() == ["STATUS=3 calls"]
    assert systemd.recv() == ["STOPPING=1"]
    assert systemd.recv() == ["WATCHDOG=1"]


def test_status_text_cannot_inject_assignments(systemd):
    SystemdNotifier(systemd.env).status("peer said\nREADY=1\nMAINPID=1")
    assert systemd.recv() == ["STATUS=peer said READY=1 MAINPID=1"]


def test_reloading_carries_monotonic_usec(systemd):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    SystemdNotifier(systemd.env).reloading("re-reading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic, status = systemd.recv()
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=")
    assert before <= int(monotonic.split("=", 1)[1]) <= after
    assert status == "STATUS=re-reading config"


def test_abstract_socket_address():
    name = f"kerbtel-test-{uuid.uuid4().hex}"
    fake = FakeSystemd(b"\0" + name.encode())
    try:
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert fake.recv() == ["READY=1"]
    finally:
        fake.sock.close()


def test_unsupported_address_is_treated_as_unset():
    assert not SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    assert not SystemdNotifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_send_failure_is_reported_not_raised(tmp_path):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled
    assert notifier.ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env, expected):
    assert SystemdNotifier(env).watchdog_interval() == expected


async def test_watchdog_loop_pings_at_half_the_interval(systemd):
    notifier = SystemdNotifier({**systemd.env, "WATCHDOG_USEC": "40000"})  # 40 ms
    task = start_watchdog(notifier)
    assert task is not None
    await asyncio.sleep(0.05)  # pings at 0, 20 and 40 ms (at least two of them)
    task.cancel()
    pings = 0
    while systemd.pending():
        assert systemd.recv() == ["WATCHDOG=1"]
        pings += 1
    assert pings >= 2  # no upper bound: a loaded machine may oversleep


async def test_no_watchdog_task_when_not_armed(systemd):
    notifier = SystemdNotifier(systemd.env)
    assert start_watchdog(notifier) is None
    await asyncio.wait_for(watchdog_loop(notifier), 1)  # returns at once
    assert not systemd.pending()
