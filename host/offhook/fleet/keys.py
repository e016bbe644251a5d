"""Signing keys: RSA-3072, the private half passphrase-encrypted at rest (mode 0600).

The passphrase comes from ``--passphrase-file``, the ``OFFHOOK_KEY_PASSPHRASE``
environment variable, or a prompt, in that order. Nothing here logs or prints a
passphrase or key material; errors name the file, never its contents.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_BITS = 3072
PASSPHRASE_ENV = "OFFHOOK_KEY_PASSPHRASE"


class KeyError_(ValueError):
    """A key that cannot be used: wrong passphrase, not a key, wrong size."""


def read_passphrase(passphrase_file: str | Path | None = None, *, confirm: bool = False) -> bytes:
    if passphrase_file is not None:
        text = Path(passphrase_file).read_text().rstrip("\r\n")
    elif os.environ.get(PASSPHRASE_ENV):
        text = os.environ[PASSPHRASE_ENV]
    else:
        text = getpass.getpass("Key passphrase: ")
        if confirm and getpass.getpass("Again: ") != text:
            raise KeyError_("passphrases differ")
    if len(text) < 8:
        raise KeyError_("passphrase must be at least 8 characters")
    return text.encode()


def generate(private_path: Path, passphrase: bytes) -> tuple[Path, Path]:
    """Write PRIVATE (encrypted PEM, 0600) and PRIVATE.pub (PEM); refuses to overwrite."""
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise KeyError_(f"{path} exists; refusing to overwrite a key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def load_private(path: Path, passphrase: bytes) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except (ValueError, TypeError):
        raise KeyError_(f"{path}: wrong passphrase or not an encrypted private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise KeyError_(f"{path}: not an RSA key of at least 2048 bits")
    return key


def load_public(path: Path) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except ValueError:
        raise KeyError_(f"{path}: not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyError_(f"{path}: not an RSA public key")
    return key


def modulus_hex(key: rsa.RSAPublicKey) -> str:
    """The key store's form of a public key: the modulus in hex (e is always 65537)."""
    return format(key.public_numbers().n, "x")


def sign(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    """RSA PKCS#1 v1.5 with SHA-256: the unit checks it with one pow()."""
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
