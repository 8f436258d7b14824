"""Crash-safe file writes, shared by every component that stores keys, certificates or state.

`atomic_write` never leaves a half-written file under the final name: the data goes to a fresh
temporary file in the same directory (created with O_EXCL and the final mode, so a private key is
never readable by others even for an instant), is fsync'ed, renamed over the target with
`os.replace`, and the directory is fsync'ed so that the rename itself survives a power cut.
"""

from __future__ import annotations

import os
import secrets
import stat

__all__ = ["PRIVATE_MODE", "PUBLIC_MODE", "atomic_write", "read_file", "write_private", "InsecureFileMode"]

PRIVATE_MODE = 0o600  # keys, keytabs: owner read/write only
PUBLIC_MODE = 0o644  # certificates and other public material

_TEMP_ATTEMPTS = 16


class InsecureFileMode(PermissionError):
    """A file holding secrets is readable or writable by group or others."""


def _fsync_directory(dirpath: str) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(dirpath, flags)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = PUBLIC_MODE) -> None:
    """Replace `path` with `data` atomically, the new file having exactly permission `mode`.

    Readers see either the old content or the new content, never a mixture or an empty file. The
    temporary file ('.NAME.<random>.tmp' next to the target) is removed if anything fails. The
    mode is set with fchmod after creation, so the process umask cannot change it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("atomic_write takes bytes")
    target = os.path.abspath(os.fspath(path))
    dirpath, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(_TEMP_ATTEMPTS):
        tmp = os.path.join(dirpath, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, mode & 0o600)  # never wider than owner-only while being written
            break
        except FileExistsError:  # pragma: no cover - 48 random bits colliding
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"could not create a temporary file next to {target}")
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(dirpath)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """`atomic_write` with mode 0600, for private keys and keytabs."""
    atomic_write(path, data, PRIVATE_MODE)


def read_file(path: str | os.PathLike[str], *, private: bool = False, max_size: int = 16 * 1024 * 1024) -> bytes:
    """Read a whole (regular) file.

    With `private=True` the file must not be accessible to group or others (like ssh does for
    its keys): `InsecureFileMode` otherwise. Files larger than `max_size` raise ValueError.
    """
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{os.fspath(path)} is not a regular file")
        if private and st.st_mode & 0o077:
            raise InsecureFileMode(
                f"{os.fspath(path)} has mode {stat.S_IMODE(st.st_mode):04o}; a private key file must be 0600 "
                f"(chmod 600 {os.fspath(path)})"
            )
        data = fh.read(max_size + 1)
        if len(data) > max_size:
            raise ValueError(f"{os.fspath(path)} is larger than {max_size} bytes")
        return data
