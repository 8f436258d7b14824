"""common.fileio atomic writes and common.pki.store: key files 0600, certificates 0644, loaders."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from common import fileio, pki
from tests.test_pki_factories import der, ec_key, rsa_key, world


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(directory) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


@pytest.fixture
def permissive_umask():
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def strict_umask():
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_atomic_write_creates_with_exact_mode(tmp_path, permissive_umask):
    target = tmp_path / "cert.pem"
    fileio.atomic_write(target, b"public")
    assert target.read_bytes() == b"public" and mode(target) == 0o644
    fileio.write_private(tmp_path / "key.pem", b"secret")
    assert mode(tmp_path / "key.pem") == 0o600
    assert leftovers(tmp_path) == []


def test_mode_is_not_narrowed_by_umask(tmp_path, strict_umask):
    fileio.atomic_write(tmp_path / "cert.pem", b"public")
    assert mode(tmp_path / "cert.pem") == 0o644


def test_atomic_write_replaces_existing_file(tmp_path):
    target = tmp_path / "key.pem"
    target.write_bytes(b"old content that is longer")
    os.chmod(target, 0o644)
    inode = os.stat(target).st_ino
    fileio.write_private(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600  # the old, wider mode is not inherited
    assert os.stat(target).st_ino != inode  # a new file was renamed over it, not rewritten in place
    assert leftovers(tmp_path) == []


def test_failed_replace_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "key.pem"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        fileio.write_private(target, b"new")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_failed_write_leaves_no_temp(tmp_path, monkeypatch):
    def broken_write(fd, data):
        raise OSError("no space left")

    monkeypatch.setattr(fileio.os, "write", broken_write)
    with pytest.raises(OSError, match="no space"):
        fileio.atomic_write(tmp_path / "x", b"data")
    assert os.listdir(tmp_path) == []


def test_temp_file_is_private_while_written(tmp_path, monkeypatch, permissive_umask):
    seen = []
    real_write = os.write

    def spy(fd, data):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(fileio.os, "write", spy)
    fileio.atomic_write(tmp_path / "cert.pem", b"x" * 10)
    assert seen and all(m & 0o077 == 0 for m in seen)


def test_atomic_write_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", spy)
    fileio.atomic_write(tmp_path / "f", b"data")
    assert synced == [False, True]


def test_atomic_write_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        fileio.atomic_write(tmp_path / "nope" / "f", b"x")


def test_atomic_write_refuses_text(tmp_path):
    with pytest.raises(TypeError):
        fileio.atomic_write(tmp_path / "f", "text")


def test_read_file_private_check(tmp_path):
    path = tmp_path / "key.pem"
    path.write_bytes(b"k")
    os.chmod(path, 0o640)
    with pytest.raises(fileio.InsecureFileMode):
        fileio.read_file(path, private=True)
    assert fileio.read_file(path) == b"k"
    os.chmod(path, 0o600)
    assert fileio.read_file(path, private=True) == b"k"
    with pytest.raises(ValueError):
        fileio.read_file(path, max_size=0)
    with pytest.raises(OSError):  # a directory
        fileio.read_file(tmp_path)


@pytest.mark.parametrize("key", [rsa_key(10), ec_key(1)], ids=["rsa", "ec"])
def test_private_key_roundtrip(tmp_path, key):
    path = tmp_path / pki.KEY_FILE
    pki.save_private_key(path, key)
    assert mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = pki.load_private_key(path)
    assert loaded.private_numbers() == key.private_numbers()


def test_load_private_key_refuses_readable_file(tmp_path):
    path = tmp_path / "key.pem"
    pki.save_private_key(path, rsa_key(10))
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        pki.load_private_key(path)
    pki.load_private_key(path, check_mode=False)


def test_load_private_key_der_and_garbage(tmp_path):
    path = tmp_path / "key.der"
    fileio.write_private(
        path,
        rsa_key(10).private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    assert pki.load_private_key(path).key_size == 2048
    fileio.write_private(path, b"not a key")
    with pytest.raises(ValueError):
        pki.load_private_key(path)


def test_certificate_bundle_roundtrip(tmp_path):
    w = world()
    path = tmp_path / "chain.pem"
    pki.save_certificates(path, w.provisioned, w.operator.certificate)
    assert mode(path) == 0o644
    assert pki.load_certificates(path) == [w.provisioned, w.operator.certificate]
    assert pki.load_certificate(path) == w.provisioned
    (tmp_path / "c.der").write_bytes(der(w.kdc))
    assert pki.load_certificate(tmp_path / "c.der") == w.kdc
    with pytest.raises(ValueError):
        pki.save_certificates(path)


def test_parse_certificate_errors():
    w = world()
    with pytest.raises(pki.MalformedCertificate):
        pki.parse_certificate(b"garbage")
    with pytest.raises(pki.MalformedCertificate):
        pki.parse_certificate(pki.certificate_pem(w.kdc, w.device))
    with pytest.raises(pki.MalformedCertificate):
        pki.parse_certificate(der(w.kdc)[:-10])
    assert pki.parse_certificate(der(w.kdc)) == w.kdc
    assert pki.parse_certificate(pki.certificate_pem(w.kdc)) == w.kdc


def test_ca_directory_roundtrip(tmp_path):
    w = world()
    directory = tmp_path / "ca"
    pki.save_ca(w.operator, directory)
    assert mode(directory) == 0o700
    assert mode(directory / pki.CA_KEY_FILE) == 0o600 and mode(directory / pki.CA_CERT_FILE) == 0o644
    loaded = pki.load_ca(directory)
    assert loaded.certificate == w.operator.certificate and loaded.role is pki.Role.OPERATOR
    pki.save_private_key(directory / pki.CA_KEY_FILE, rsa_key(3))
    with pytest.raises(ValueError, match="not the key"):
        pki.load_ca(directory)
    assert leftovers(directory) == []
