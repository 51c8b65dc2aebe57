"""Encryption of camera passwords at rest (Fernet: AES-128-CBC with HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"


class SecretBoxError(Exception):
    """A key is malformed, or a stored secret cannot be decrypted with the configured key."""


def check_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is a Fernet key (urlsafe base64 of 32 bytes)."""
    try:
        Fernet(key.encode())
    except (ValueError, TypeError) as err:
        raise ValueError(
            "must be 44 characters of urlsafe base64 (32 bytes); make one with `kitchencam gen-key`"
        ) from err


def generate_key() -> str:
    """A new random key, as text."""
    return Fernet.generate_key().decode()


def load_or_create_key(data_dir: Path) -> str:
    """The key kept in ``data_dir``, created (mode 0600) on first use.

    Several processes may start at once on one data directory: the key is written to a
    temporary file and linked into place, so exactly one key wins and all read it.
    """
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{KEY_FILE_NAME}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generate_key() + "\n")
        try:
            os.link(tmp, path)
            log.info("generated a new camera-password key in %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


class SecretBox:
    """Encrypts and decrypts short secrets with one key."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())
        self._fingerprint = hmac.new(key.encode(), b"kitchencam key check", hashlib.sha256)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @property
    def fingerprint(self) -> str:
        """A value that identifies the key without revealing it (stored in Redis to catch a
        process started with a different key)."""
        return self._fingerprint.hexdigest()[:32]

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext of ``plaintext``, as text."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Plaintext of ``ciphertext``; ``SecretBoxError`` if it was made with another key."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as err:
            raise SecretBoxError(
                "cannot decrypt a stored camera password: KITCHENCAM_SECRET_KEY differs "
                "from the key it was stored with"
            ) from err
