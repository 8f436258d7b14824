"""Lawful intercept store (issue 5; the seed's CALEA paragraphs): per-call records (call id,
parties, start, end, bearer keys) that a signaling controller can write but not read.

    store = InterceptStore("/var/lib/kerbtel/li", load_public_key("intercept.pub"), sc="sc1")
    store.record("a84b4c76e66710@sc1", {"from": "+15551230001", "to": "+15551230002"},
                 start, end, {"subkey": subkey})          # or store.record(call_record_object)

    for rec in read_records("/var/lib/kerbtel/li", private_key):   # the agency, with the private key
        rec.call_id, rec.parties, rec.keys

Encryption at rest (hybrid, per record): a fresh random 32-byte data key encrypts the record
(AES-256-GCM); the data key is wrapped to the intercept public key with X25519 (a fresh
ephemeral key per record) + HKDF-SHA256 + AES-256-GCM. The SC holds only the public key, so
neither it nor anyone who steals its disk can read a record. Each line of the store is one JSON
object; everything identifying is inside the ciphertext (only the format version, the
algorithm, the recipient key id and the ephemeral public key are in clear, and they are the GCM
associated data, so changing them fails authentication):

    {"v": 1, "alg": "X25519-HKDF-SHA256-A256GCM", "kid": <hex, 16 bytes of SHA-256(public key)>,
     "epk": <b64 ephemeral X25519 public key>, "wk": <b64 nonce(12) + wrapped data key + tag>,
     "ct": <b64 nonce(12) + ciphertext + tag>}

    KEK = HKDF-SHA256(IKM = X25519(ephemeral, recipient), salt = epk || recipient public key,
                      info = "kerbtel li v1 wrap", L = 32)

Files: `DIR/li-YYYY-MM-DD.jsonl` (UTC day of the call's start), mode 0600, directory 0700.
Appends are atomic: one `write` of the whole line under an exclusive `flock`, then `fsync`; a
line left torn by a crash is closed with a newline before the next append (and reported as
corrupt when read), so concurrent writers (several scd workers) never interleave.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.fileio import PRIVATE_MODE, PUBLIC_MODE, atomic_write

__all__ = [
    "ALGORITHM",
    "InterceptRecord",
    "InterceptStore",
    "LiError",
    "LiKeyError",
    "LiRecordError",
    "generate_key_pair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "open_record",
    "read_records",
    "seal_record",
    "store_files",
]

VERSION = 1
ALGORITHM = "X25519-HKDF-SHA256-A256GCM"
_WRAP_INFO = b"kerbtel li v1 wrap"
_NONCE = 12
PRIVATE_KEY_FILE = "intercept.key"
PUBLIC_KEY_FILE = "intercept.pub"


class LiError(Exception):
    """Base class: a lawful-intercept store or key problem, one line for the operator."""


class LiKeyError(LiError):
    """A key file is missing, malformed, or not the key the records are encrypted to."""


class LiRecordError(LiError):
    """A stored record is malformed or does not authenticate (tampered, truncated)."""


# --- keys -------------------------------------------------------------------------------------


def _raw_public(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: X25519PublicKey) -> str:
    """The recipient key id written in every record: 16 bytes of SHA-256(raw public key), hex."""
    return hashlib.sha256(_raw_public(public)).digest()[:16].hex()


def generate_key_pair(directory: str | os.PathLike[str], *, force: bool = False) -> tuple[Path, Path]:
    """Write DIR/intercept.key (PKCS#8 PEM, 0600) and DIR/intercept.pub (PEM, 0644)."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    if not force and (private_path.exists() or public_path.exists()):
        raise LiKeyError(f"{directory} already holds an intercept key; refusing to overwrite it")
    key = X25519PrivateKey.generate()
    atomic_write(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), PRIVATE_MODE)
    atomic_write(public_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo), PUBLIC_MODE)
    return private_path, public_path


def load_public_key(path: str | os.PathLike[str]) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise LiKeyError(f"intercept public key {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise LiKeyError(f"intercept public key {path}: not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise LiKeyError(f"intercept public key {path}: not an X25519 key ({type(key).__name__})")
    return key


def load_private_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise LiKeyError(f"intercept private key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise LiKeyError(f"intercept private key {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise LiKeyError(f"intercept private key {path}: not an X25519 key ({type(key).__name__})")
    return key


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterceptRecord:
    """One call as the agency reads it. Times are ISO 8601 UTC strings (end None: still running
    when recorded). `keys` maps a name (e.g. 'subkey') to key bytes."""

    call_id: str
    parties: dict
    start: str | None
    end: str | None
    keys: dict[str, bytes] = field(repr=False)
    sc: str | None = None
    line: int | None = None  # where it was read from
    file: str | None = None

    def to_json(self) -> dict:
        return {"call_id": self.call_id, "parties": self.parties, "start": self.start, "end": self.end,
                "keys": {name: value.hex() for name, value in self.keys.items()}, "sc": self.sc}


def _time_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("call times must be timezone-aware datetimes")
        return value.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value, _dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return value
    raise ValueError(f"unsupported call time {type(value).__name__}")


def _jsonable(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _plaintext(call_id: str, parties, start, end, keys, sc: str | None) -> bytes:
    if not isinstance(call_id, str) or not call_id:
        raise ValueError("a call record needs a call id")
    key_map: dict[str, str] = {}
    for name, value in dict(keys or {}).items():
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"key {name!r} must be bytes")
        key_map[str(name)] = bytes(value).hex()
    doc = {"call_id": call_id, "parties": _jsonable(dict(parties or {})), "start": _time_text(start),
           "end": _time_text(end), "keys": key_map, "sc": sc}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _aad(header: dict) -> bytes:
    return json.dumps({k: header[k] for k in ("v", "alg", "kid", "epk")}, separators=(",", ":"), sort_keys=True).encode()


def _kek(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=epk + recipient, info=_WRAP_INFO).derive(shared)


def seal_record(public: X25519PublicKey, plaintext: bytes) -> dict:
    """The stored JSON object for `plaintext`, readable only with the matching private key."""
    ephemeral = X25519PrivateKey.generate()
    epk = _raw_public(ephemeral.public_key())
    kek = _kek(ephemeral.exchange(public), epk, _raw_public(public))
    header = {"v": VERSION, "alg": ALGORITHM, "kid": key_id(public), "epk": _b64(epk)}
    aad = _aad(header)
    data_key = AESGCM.generate_key(256)
    wrap_nonce, nonce = os.urandom(_NONCE), os.urandom(_NONCE)
    wrapped = wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, data_key, aad)
    ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)
    return {**header, "wk": _b64(wrapped), "ct": _b64(ciphertext)}


def open_record(private: X25519PrivateKey, obj: dict, *, where: str = "record") -> InterceptRecord:
    """Decrypt one stored object. LiKeyError: not for this key; LiRecordError: malformed/tampered."""
    if not isinstance(obj, dict):
        raise LiRecordError(f"{where}: not a JSON object")
    if obj.get("v") != VERSION or obj.get("alg") != ALGORITHM:
        raise LiRecordError(f"{where}: unknown format (v={obj.get('v')!r}, alg={obj.get('alg')!r})")
    ours = key_id(private.public_key())
    if obj.get("kid") != ours:
        raise LiKeyError(f"{where}: encrypted to intercept key {obj.get('kid')!r}, not to this private key ({ours})")
    try:
        epk = _unb64(obj["epk"])
        wrapped, ciphertext = _unb64(obj["wk"]), _unb64(obj["ct"])
        peer = X25519PublicKey.from_public_bytes(epk)
    except (KeyError, ValueError, TypeError) as exc:
        raise LiRecordError(f"{where}: malformed field ({exc})") from None
    if len(wrapped) < _NONCE + 16 or len(ciphertext) < _NONCE + 16:
        raise LiRecordError(f"{where}: truncated")
    aad = _aad(obj)
    try:
        kek = _kek(private.exchange(peer), epk, _raw_public(private.public_key()))
        data_key = AESGCM(kek).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
        plaintext = AESGCM(data_key).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], aad)
    except (InvalidTag, ValueError):
        raise LiRecordError(f"{where}: does not authenticate (tampered, or not written for this key)") from None
    try:
        doc = json.loads(plaintext)
        keys = {name: bytes.fromhex(value) for name, value in doc["keys"].items()}
        return InterceptRecord(doc["call_id"], doc["parties"], doc["start"], doc["end"], keys, doc.get("sc"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LiRecordError(f"{where}: authenticated but malformed content ({exc})") from None


# --- the store ----------------------------------------------------------------------------------


def _day(start_text: str | None, fallback: _dt.datetime) -> str:
    if start_text:
        try:
            return _dt.datetime.fromisoformat(start_text.replace("Z", "+00:00")).astimezone(_dt.timezone.utc).strftime("%Y-%m-%d")
        except ValueError:
            pass
    return fallback.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d")


def _append_line(path: Path, line: bytes) -> None:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # whatever the umask or an earlier chmod
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(path, "rb") as reader:  # a torn last line (crash mid-write): close it
                    reader.seek(size - 1)
                    if reader.read(1) != b"\n":
                        line = b"\n" + line
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class InterceptStore:
    """An append-only per-SC store in `directory`, encrypted to `public_key` (write-only).

    `record(call_id, parties, start, end, keys)` (keys: dict name -> bytes), or `record(obj)`
    with a call engine's record object (a dataclass such as scd.calls.CallRecord): see
    `_from_object` for how its fields map. Times: aware datetimes, Unix seconds or ISO strings.
    Returns the path written. OSError from the file system propagates (the caller decides
    whether a call may proceed without its record).
    """

    def __init__(self, directory: str | os.PathLike[str], public_key: X25519PublicKey, *, sc: str | None = None) -> None:
        self.directory = Path(directory)
        self.public_key = public_key
        self.sc = sc
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def record(self, call_id, parties=None, start=None, end=None, keys=None, *, now: _dt.datetime | None = None) -> Path:
        if not isinstance(call_id, str):
            call_id, parties, start, end, keys = _from_object(call_id)
        plaintext = _plaintext(call_id, parties, start, end, keys, self.sc)
        obj = seal_record(self.public_key, plaintext)
        day = _day(_time_text(start), now or _dt.datetime.now(_dt.timezone.utc))
        path = self.directory / f"li-{day}.jsonl"
        _append_line(path, json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        return path


_SINGLE_KEY_NAMES = ("subkey", "sub_key", "bearer_key", "bearer_subkey")
_TIME_FIELDS = ("setup",)  # further wallclock times a call engine may carry, stored as ISO text


def _object_fields(obj) -> dict:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    raise TypeError("record() takes (call_id, parties, start, end, keys) or an object with call_id")


def _from_object(obj):
    """(call_id, parties, start, end, keys) from a call engine's record object.

    `call_id`, `start`, `end` are taken as such; `keys` (or `bearer_keys`) as the key map, and
    every other bytes-valued field (e.g. `subkey`) as a key too; `parties` (if any) plus every
    remaining field (caller, callee, principals, role, outcome, spi, suites...) as the call's
    details, which are encrypted like everything else.
    """
    values = _object_fields(obj)
    if "call_id" not in values:
        raise TypeError("record() takes (call_id, parties, start, end, keys) or an object with call_id")
    call_id, start, end = values.pop("call_id"), values.pop("start", None), values.pop("end", None)
    keys: dict = {}
    for name in ("keys", "bearer_keys"):
        if isinstance(values.get(name), Mapping):
            keys.update(values.pop(name))
    parties = dict(values.pop("parties", None) or {})
    for name, value in values.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            keys["subkey" if name in _SINGLE_KEY_NAMES else name] = bytes(value)
        elif name in _TIME_FIELDS and isinstance(value, (int, float, _dt.datetime)):
            parties[name] = _time_text(value)
        else:
            parties[name] = value
    return call_id, parties, start, end, keys


def store_files(path: str | os.PathLike[str]) -> list[Path]:
    """A store file, or every li-*.jsonl of a store directory in date order."""
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob("li-*.jsonl"))
    if not path.exists():
        raise LiError(f"no intercept store at {path}")
    return [path]


def read_records(path: str | os.PathLike[str], private_key: X25519PrivateKey, *,
                 call_id: str | None = None, skip_bad: bool = False, errors: list | None = None) -> Iterator[InterceptRecord]:
    """Decrypt the records of a store (file or directory), optionally only those of `call_id`.

    Raises the first LiKeyError/LiRecordError (naming file and line) unless `skip_bad`, in which
    case the errors are appended to `errors` and reading goes on.
    """
    for file in store_files(path):
        with open(file, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                where = f"{file}:{number}"
                try:
                    try:
                        obj = json.loads(raw)
                    except ValueError:
                        raise LiRecordError(f"{where}: not a JSON line (torn or corrupted)") from None
                    rec = open_record(private_key, obj, where=where)
                except LiError as exc:
                    if not skip_bad:
                        raise
                    if errors is not None:
                        errors.append(exc)
                    continue
                if call_id is None or rec.call_id == call_id:
                    yield InterceptRecord(rec.call_id, rec.parties, rec.start, rec.end, rec.keys, rec.sc, number, str(file))
