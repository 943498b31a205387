"""Encryption at rest for registry passwords (Fernet: AES-128-CBC + HMAC-SHA256)."""
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


class SecretUnreadable(RuntimeError):
    """The stored secret cannot be decrypted with the configured key."""


def _key() -> bytes:
    configured = current_app.config.get("CREDENTIALS_KEY")
    if configured:
        return configured.encode() if isinstance(configured, str) else configured
    # No key in the environment: one per install, kept beside the SQLite file.
    path = Path(current_app.instance_path) / "credentials.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
    return path.read_bytes().strip()


def encrypt_secret(plain: str) -> str:
    return Fernet(_key()).encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt_secret(token: str) -> str:
    try:
        return Fernet(_key()).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretUnreadable(
            "A stored registry password cannot be decrypted: CREDENTIALS_KEY differs from the key "
            "it was saved with. Restore the key or enter the password again."
        ) from None
