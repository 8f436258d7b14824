"""The systemd notification protocol (sd_notify(3)), without libsystemd.

A unit with `Type=notify` (or `Type=notify-reload`, systemd >= 253) passes the path of a datagram
socket in NOTIFY_SOCKET; the daemon sends newline-separated `VAR=value` assignments to it. When
the variable is unset (run by hand, in tests, under another supervisor) every call is a no-op, so
daemons call the notifier unconditionally.

Sending is best effort and never blocks the event loop: the socket is non-blocking and a failed
send is reported by the return value, not by an exception, because losing a STATUS line must not
take a daemon down. (A lost READY=1 or WATCHDOG=1 is still noticed: systemd times the unit out.)
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["SystemdNotifier", "watchdog_loop", "start_watchdog"]


class SystemdNotifier:
    """Sends READY/STATUS/RELOADING/STOPPING/WATCHDOG messages to systemd, if it is listening."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET names a socket, i.e. systemd expects notifications."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send the assignments (`"READY=1"`, ...) as one datagram; True if it was sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: systemd now considers the unit active."""
        return self.notify("READY=1", *_status_line(status))

    def status(self, text: str) -> bool:
        """A one-line free-form status shown by `systemctl status`."""
        return self.notify(*_status_line(text))

    def reloading(self, status: str | None = None) -> bool:
        """A reload has begun; READY=1 must follow when it is done.

        systemd >= 253 requires MONOTONIC_USEC (CLOCK_MONOTONIC, microseconds) in the same
        message so that it can tell this reload from an earlier one.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}", *_status_line(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1", *_status_line(status))

    def watchdog(self) -> bool:
        """Keep-alive ping for `WatchdogSec=`."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds, or None when no watchdog is armed for this process.

        WATCHDOG_PID, when present, names the process the watchdog is meant for; a child that
        inherited the environment must not ping on its parent's behalf.
        """
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 1_000_000 if usec > 0 else None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog_loop(notifier: SystemdNotifier, interval: float | None = None) -> None:
    """Ping the watchdog at half its interval until cancelled; return at once if none is armed.

    The ping runs on the event loop, so a loop that is blocked or starved misses pings and
    systemd restarts the daemon, which is the point of the watchdog.
    """
    timeout = notifier.watchdog_interval() if interval is None else interval
    if not timeout:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(timeout / 2)


def start_watchdog(notifier: SystemdNotifier) -> asyncio.Task[None] | None:
    """Start `watchdog_loop` as a task when a watchdog is armed; the caller cancels it on stop."""
    if notifier.watchdog_interval() is None:
        return None
    return asyncio.get_running_loop().create_task(watchdog_loop(notifier), name="sd-watchdog")


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        # Linux abstract namespace: a leading NUL byte instead of '@', no file on disk.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # Anything else (e.g. vsock:...) is a transport we do not speak; behave as if unset.
    return None


def _status_line(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # A newline would start a new assignment, letting text smuggle e.g. "READY=1" or "MAINPID=".
    return ("STATUS=" + " ".join(text.splitlines()),)
