"""The server's encryption key for data at rest (project secrets).

    keys = keys.for_settings(settings)
    token = keys.encrypt(b"...")     # Fernet token (str), with the newest key
    plain = keys.decrypt(token)      # bytes; any of the keys; KeyMismatch if none fits

Where the key comes from:

- ``CORRAL_SECRET_KEY``: one Fernet key (``corral.services.keys.generate_key()``), or several
  separated by commas, **newest first**. The first encrypts; every one decrypts, so a key is
  rotated by putting the new one in front, re-saving the secrets, then dropping the old one.
- otherwise ``<data_dir>/secret.key``, created on first use (owner-only, 0600, written
  atomically so that processes starting together agree on one key). Several replicas on
  different machines must share it: set ``CORRAL_SECRET_KEY`` on each.

A key is never printed, logged or kept in a repr.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets as _random
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from corral.services.errors import ServiceError

if TYPE_CHECKING:
    from corral.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"


class KeyUnusable(ServiceError):
    """The configured key is unusable: a server misconfiguration (the message never holds the key)."""

    status_code = 500
    code = "server_key_unusable"


class KeyMismatch(Exception):
    """A ciphertext none of the server's keys can decrypt (corrupt, or encrypted with another key)."""


class SecretKeys:
    """One or more Fernet keys, newest first."""

    __slots__ = ("_fernet", "_raw", "count")

    def __init__(self, keys: Sequence[bytes | str]) -> None:
        if not keys:
            raise KeyUnusable("no key given")
        fernets = []
        for i, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise KeyUnusable(f"key {i} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded bytes; "
                                "make one with `python -c 'from corral.services.keys import generate_key; "
                                "print(generate_key())'`)") from None
        self._fernet = MultiFernet(fernets)
        self._raw = [base64.urlsafe_b64decode(key) for key in keys]
        self.count = len(fernets)

    def __repr__(self) -> str:
        return f"SecretKeys(<{self.count} key{'s' if self.count != 1 else ''}>)"

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise KeyMismatch("cannot decrypt with the server's key: it was encrypted with another key "
                              "(CORRAL_SECRET_KEY or <data_dir>/secret.key changed?) or is corrupt") from None

    def derive(self, purpose: bytes) -> list[bytes]:
        """A 32-byte key per server key (newest first) for another use, by HKDF: signing
        workload-origin tickets needs no secret of its own, and rotates with these keys."""
        return [HKDF(algorithm=hashes.SHA256(), length=32, salt=b"corral", info=purpose).derive(raw)
                for raw in self._raw]

    def rotate(self, token: str) -> str:
        """The same plaintext, re-encrypted with the newest key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise KeyMismatch("cannot decrypt with the server's key") from None


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def parse_keys(value: str) -> SecretKeys:
    """``CORRAL_SECRET_KEY``: keys separated by commas (or whitespace), newest first."""
    keys = [k for k in value.replace(",", " ").split() if k]
    if not keys:
        raise KeyUnusable("CORRAL_SECRET_KEY is set but empty")
    try:
        return SecretKeys(keys)
    except KeyUnusable as exc:
        raise KeyUnusable(f"CORRAL_SECRET_KEY: {exc}") from None


def load_or_create_key_file(path: Path) -> bytes:
    """The key in ``path``, created (0600, atomically) if there is none yet."""
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            # A hard link never replaces an existing file: whoever links first wins, and
            # nobody ever sees a half-written key.
            os.link(tmp, path)
            log.info("created a new secret key in %s (keep it: project secrets cannot be read without it)", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        key = f.read().strip()
    if stat.S_IMODE(mode) & 0o077:
        log.warning("%s is readable by other users (mode %o); make it owner-only: chmod 600 %s",
                    path, stat.S_IMODE(mode), path)
    if not key:
        raise KeyUnusable(f"the key file {KEY_FILE_NAME} in the data directory is empty; restore the key, or "
                          "remove the file to start over (secrets encrypted with the old key are then lost)")
    return key


_cache: dict[tuple[str | None, str], SecretKeys] = {}
_lock = threading.Lock()


def for_settings(settings: Settings) -> SecretKeys:
    """The server's keys for these settings (read once, then cached per process)."""
    return load(settings.secret_key, settings.data_dir)


def load(secret_key: Any, data_dir: Path) -> SecretKeys:
    """Keys from ``CORRAL_SECRET_KEY`` (a str or SecretStr) if set, else ``<data_dir>/secret.key``."""
    configured = secret_key.get_secret_value() if hasattr(secret_key, "get_secret_value") else secret_key
    if configured is not None and not configured.strip():
        configured = None
    path = (Path(data_dir).expanduser() / KEY_FILE_NAME).resolve()
    cache_key = (configured, str(path))
    with _lock:
        found = _cache.get(cache_key)
        if found is None:
            if configured is not None:
                found = parse_keys(configured)
            else:
                key = load_or_create_key_file(path)
                try:
                    found = SecretKeys([key])
                except KeyUnusable as exc:
                    raise KeyUnusable(f"the key file {KEY_FILE_NAME} in the data directory: {exc}") from None
            _cache[cache_key] = found
        return found
