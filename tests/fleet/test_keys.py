"""IT's signing key at rest: a standard PKCS#8 container with a KDF cost worth the name, passphrases
long enough, keys written the old way still open, and every bad passphrase source one line, exit 2."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from offhook.cli import main
from offhook.fleet import build, keys

PASSPHRASE = "correct horse battery"
OFFHOOK = Path(sys.executable).with_name("offhook")
PBKDF2, HMAC_SHA256, AES256_CBC = "1.2.840.113549.1.5.12", "1.2.840.113549.2.9", "2.16.840.1.101.3.4.1.42"


# ------------------------------------------------------------- reading the container (independent of keys.py)


def _der(data: bytes) -> tuple[int, bytes, bytes]:
    """(tag, body, rest) of the first DER element."""
    tag, size, at = data[0], data[1], 2
    if size & 0x80:
        count = size & 0x7F
        size, at = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    return tag, data[at : at + size], data[at + size :]


def _items(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    while body:
        tag, inner, body = _der(body)
        out.append((tag, inner))
    return out


def _oid(body: bytes) -> str:
    parts, value = [body[0] // 40, body[0] % 40], 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def pbes2(pem: bytes) -> dict[str, object]:
    """The PBES2 parameters of a PKCS#8 EncryptedPrivateKeyInfo (RFC 8018)."""
    der = base64.b64decode(b"".join(line for line in pem.splitlines() if not line.startswith(b"-----")))
    (_, info), _ = _items(_der(der)[1])
    (_, _scheme_oid), (_, params) = _items(info)
    (_, kdf), (_, cipher) = _items(params)
    (_, kdf_oid), (_, kdf_params) = _items(kdf)
    fields = _items(kdf_params)
    prf = [_oid(_items(body)[0][1]) for tag, body in fields if tag == 0x30]
    return {
        "kdf": _oid(kdf_oid),
        "salt_bytes": len(fields[0][1]),
        "iterations": int.from_bytes(fields[1][1], "big"),
        "prf": prf[0] if prf else "hmacWithSHA1 (default)",
        "cipher": _oid(_items(cipher)[0][1]),
    }


def old_style_key(path: Path, passphrase: bytes) -> rsa.RSAPrivateKey:
    """A key written as `fleet keygen` wrote them before: cryptography's BestAvailableEncryption."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(passphrase)
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return key


def test_the_container_reader_agrees_with_cryptography_about_the_old_form(tmp_path: Path) -> None:
    old_style_key(tmp_path / "old.key", b"eight ch")
    params = pbes2((tmp_path / "old.key").read_bytes())
    assert params["kdf"] == PBKDF2 and params["iterations"] == 2048  # the weakness this file is about


# ------------------------------------------------------------- the key at rest


def test_a_new_key_uses_pbkdf2_sha256_at_600000_iterations_by_default(tmp_path: Path) -> None:
    private, public = keys.generate(tmp_path / "it.key", PASSPHRASE.encode())  # the default cost, as keygen
    pem = private.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    params = pbes2(pem)
    assert params["kdf"] == PBKDF2 and params["prf"] == HMAC_SHA256 and params["cipher"] == AES256_CBC
    assert params["iterations"] >= 600_000 and params["salt_bytes"] >= 16
    key = keys.load_private(private, PASSPHRASE.encode())
    assert keys.modulus_hex(key.public_key()) == keys.modulus_hex(keys.load_public(public))
    with pytest.raises(keys.KeyError_, match="wrong passphrase"):
        keys.load_private(private, b"correct horse battery!")


def test_the_iteration_count_is_a_parameter_and_two_keys_never_share_a_salt(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    first, second = (keys.encrypt_private(key, PASSPHRASE.encode(), iterations=1000) for _ in range(2))
    assert pbes2(first)["iterations"] == 1000 and first != second
    opened = serialization.load_pem_private_key(second, PASSPHRASE.encode())
    assert isinstance(opened, rsa.RSAPrivateKey) and opened.private_numbers() == key.private_numbers()


def test_a_key_written_the_old_way_with_an_8_character_passphrase_still_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = old_style_key(tmp_path / "old.key", b"eight ch")
    assert keys.load_private(tmp_path / "old.key", b"eight ch").private_numbers() == key.private_numbers()
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "eight ch")
    monkeypatch.setattr(build, "compile_files", lambda sources, version=None: {"/offhook_fw/app.mpy": b"M\x06"})
    out = tmp_path / "fw.ohb"
    args = ["fleet", "build", "--key", str(tmp_path / "old.key"), "--version", "1.0.0", "--board", "sim"]
    assert main([*args, "-o", str(out)]) == 0, capsys.readouterr().err
    build.read_bundle(out.read_bytes(), key.public_key().public_numbers().n, "sim")


# ------------------------------------------------------------- passphrases


@pytest.fixture
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    # `fleet keygen` in tests: fast (the default cost is tested above)
    monkeypatch.setattr(keys, "KDF_ITERATIONS", 1000, raising=False)
    monkeypatch.delenv(keys.PASSPHRASE_ENV, raising=False)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("offhook: error: ") and err.count("\n") == 1, err
    return err


def test_a_new_key_needs_a_12_character_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cheap_kdf: None
) -> None:
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "elevenchars")
    assert main(["fleet", "keygen", str(tmp_path / "it.key")]) == 2
    assert "at least 12 characters" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "twelve chars")
    assert main(["fleet", "keygen", str(tmp_path / "it.key")]) == 0


def test_the_passphrase_file_gives_its_first_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cheap_kdf: None
) -> None:
    passfile = tmp_path / "pass"
    passfile.write_bytes(PASSPHRASE.encode() + b"\r\nnot part of it\n")
    assert main(["fleet", "keygen", str(tmp_path / "it.key"), "--passphrase-file", str(passfile)]) == 0
    keys.load_private(tmp_path / "it.key", PASSPHRASE.encode())
    passfile.write_bytes(b"\xef\xbb\xbf" + PASSPHRASE.encode())  # a UTF-8 BOM (Notepad) is not part of it either
    assert keys.read_passphrase(passfile) == PASSPHRASE.encode()


def test_passphrase_file_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cheap_kdf: None
) -> None:
    passfile = tmp_path / "pass"
    passfile.write_bytes(b"caf\xe9 latin-1 passphrase\n")
    assert main(["fleet", "keygen", str(tmp_path / "it.key"), "--passphrase-file", str(passfile)]) == 2
    assert "not UTF-8 text" in one_line_error(capsys)
    assert main(["fleet", "keygen", str(tmp_path / "it.key"), "--passphrase-file", str(tmp_path / "none")]) == 2
    assert "No such file" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == [passfile]


def test_build_without_a_terminal_or_a_passphrase_is_one_line(tmp_path: Path) -> None:
    old_style_key(tmp_path / "it.key", PASSPHRASE.encode())
    env = {k: v for k, v in os.environ.items() if k != keys.PASSPHRASE_ENV}
    argv = [OFFHOOK, "fleet", "build", "--key", str(tmp_path / "it.key"), "--version", "1.0.0", "--board", "sim"]
    result = subprocess.run(
        [*argv, "-o", str(tmp_path / "fw.ohb")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        start_new_session=True,  # no controlling terminal: getpass cannot open /dev/tty
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "no terminal" in result.stderr and "--passphrase-file" in result.stderr
    assert not (tmp_path / "fw.ohb").exists()


# ------------------------------------------------------------- the output file


@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_build_checks_the_output_before_asking_compiling_or_signing(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached before the output was checked")

    monkeypatch.setattr(keys, "read_passphrase", must_not_run)
    monkeypatch.setattr(build, "build_firmware", must_not_run)
    output = tmp_path / "no-such-dir" / "fw.ohb" if where == "missing directory" else tmp_path
    args = ["fleet", "build", "--key", str(tmp_path / "it.key"), "--version", "1.0.0", "--board", "sim"]
    assert main([*args, "-o", str(output)]) == 2
    err = one_line_error(capsys)
    assert str(output) in err and ("does not exist" in err if where == "missing directory" else "is a directory" in err)
