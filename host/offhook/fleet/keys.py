"""Signing keys: RSA-3072, the private half passphrase-encrypted at rest (mode 0600).

The private key file is standard PKCS#8 PEM ("ENCRYPTED PRIVATE KEY"), PBES2 with
PBKDF2-HMAC-SHA256 at KDF_ITERATIONS (OWASP's advice for PBKDF2-SHA256) and AES-256-CBC:
any PKCS#8 reader opens it (``openssl pkcs8``, cryptography's ``load_pem_private_key``).
cryptography cannot set the KDF cost of the PKCS#8 it writes (2,048 iterations), so the
container is assembled here; reading stays with the library. Keys written that way before
still open.

The passphrase comes from ``--passphrase-file`` (its first line), the
``OFFHOOK_KEY_PASSPHRASE`` environment variable, or a prompt, in that order. Nothing here
logs or prints a passphrase or key material; errors name the file, never its contents.
"""

from __future__ import annotations

import base64
import getpass
import os
import warnings
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

KEY_BITS = 3072
PASSPHRASE_ENV = "OFFHOOK_KEY_PASSPHRASE"
MIN_NEW_PASSPHRASE = 12  # new keys; keys made before (8 at least) still open
KDF_ITERATIONS = 600_000  # PBKDF2-HMAC-SHA256 (OWASP); ``generate(iterations=)`` lets tests go lower

# DER of the algorithm identifiers (RFC 8018): PBES2, PBKDF2, hmacWithSHA256, aes256-CBC.
_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")
_OID_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")
_NULL = b"\x05\x00"


class KeyError_(ValueError):
    """A key that cannot be used: wrong passphrase, not a key, wrong size."""


def read_passphrase(passphrase_file: str | Path | None = None, *, new: bool = False) -> bytes:
    """The passphrase as UTF-8 bytes; ``new``: for a new key (asked twice, MIN_NEW_PASSPHRASE long)."""
    if passphrase_file is not None:
        text = _first_line(Path(passphrase_file))
    elif os.environ.get(PASSPHRASE_ENV):
        text = os.environ[PASSPHRASE_ENV]
    else:
        text = _prompt(new)
    if new and len(text) < MIN_NEW_PASSPHRASE:
        raise KeyError_(f"a new key's passphrase must be at least {MIN_NEW_PASSPHRASE} characters")
    if not text:
        raise KeyError_("the passphrase is empty")
    return text.encode()


def _first_line(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyError_(f"passphrase file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig").split("\n", 1)[0].rstrip("\r")
    except UnicodeDecodeError:
        raise KeyError_(f"passphrase file {path} is not UTF-8 text") from None


def _prompt(confirm: bool) -> str:
    # getpass falls back to reading stdin, echoing, when there is no terminal: refuse instead.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", getpass.GetPassWarning)
            text = getpass.getpass("Key passphrase: ")
            if confirm and getpass.getpass("Again: ") != text:
                raise KeyError_("passphrases differ")
    except (getpass.GetPassWarning, EOFError, OSError):
        raise KeyError_(f"no passphrase: no terminal to ask on; use --passphrase-file or ${PASSPHRASE_ENV}") from None
    return text


def generate(private_path: Path, passphrase: bytes, *, iterations: int | None = None) -> tuple[Path, Path]:
    """Write PRIVATE (encrypted PKCS#8 PEM, 0600) and PRIVATE.pub (PEM); refuses to overwrite.

    ``iterations``: PBKDF2 cost, KDF_ITERATIONS unless given (tests use a low one to stay fast)."""
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise KeyError_(f"{path} exists; refusing to overwrite a key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = encrypt_private(key, passphrase, KDF_ITERATIONS if iterations is None else iterations)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def encrypt_private(key: rsa.RSAPrivateKey, passphrase: bytes, iterations: int = KDF_ITERATIONS) -> bytes:
    """PKCS#8 EncryptedPrivateKeyInfo (RFC 5958) as PEM: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC."""
    if not passphrase or iterations < 1:
        raise KeyError_("a key needs a passphrase and a positive KDF iteration count")
    salt, iv = os.urandom(16), os.urandom(16)
    secret = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
    plain = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    padder = symmetric_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    kdf = _seq(_OID_PBKDF2, _seq(_tlv(0x04, salt), _integer(iterations), _seq(_OID_HMAC_SHA256, _NULL)))
    scheme = _seq(_OID_AES256_CBC, _tlv(0x04, iv))
    der = _seq(_seq(_OID_PBES2, _seq(kdf, scheme)), _tlv(0x04, sealed))
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END ENCRYPTED PRIVATE KEY-----\n"
    ).encode()


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes((tag, size)) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # +1: a leading 0 keeps it positive


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
