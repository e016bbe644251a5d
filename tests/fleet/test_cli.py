"""`offhook fleet keygen|build|show`: keys at rest, a real firmware bundle, clear errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from offhook import bundle as B
from offhook.cli import main
from offhook.fleet import build, keys

PASSPHRASE = "correct horse battery"


@pytest.fixture
def keypair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.setenv(keys.PASSPHRASE_ENV, PASSPHRASE)
    monkeypatch.setattr(keys, "KDF_ITERATIONS", 1000)  # fast; test_keys checks the default cost
    key = tmp_path / "it.key"
    assert main(["fleet", "keygen", str(key)]) == 0
    out = capsys.readouterr()
    assert PASSPHRASE not in out.out + out.err
    return key


def test_keygen_writes_an_encrypted_private_key_with_mode_0600(keypair: Path) -> None:
    assert stat.S_IMODE(keypair.stat().st_mode) == 0o600
    pem = keypair.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert keys.load_private(keypair, PASSPHRASE.encode()).key_size == 3072
    with pytest.raises(keys.KeyError_, match="wrong passphrase"):
        keys.load_private(keypair, b"not the passphrase")


def test_keygen_refuses_to_overwrite(keypair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "keygen", str(keypair)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_build_writes_a_bundle_the_unit_verifier_accepts(
    keypair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fw.ohb"
    assert main(["fleet", "build", "--key", str(keypair), "--version", "0.2.0", "--board", "pico", "-o", str(out)]) == 0
    n = keys.load_public(Path(str(keypair) + ".pub")).public_numbers().n
    manifest, files = build.read_bundle(out.read_bytes(), n, "pico", "0.1.0")
    assert manifest["version"] == "0.2.0" and manifest["min_loader"] == build.LOADER_VERSION
    assert "/offhook_fw/app.mpy" in files and "/lib/linkproto.mpy" in files and "/lib/bundle.mpy" in files
    assert "/boards/pico.mpy" in files and "/boards/esp32s3.mpy" not in files and "/boards/sim.mpy" not in files
    assert not any(path in files for path in build.LOADER_FILES), "the boot loader is never in a slot"
    assert all(data[:2] == b"M\x06" for data in files.values()), "mpy-cross 1.27 bytecode"
    assert PASSPHRASE not in capsys.readouterr().out


def test_build_errors_are_one_line_exit_2(keypair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["fleet", "build", "--key", str(keypair), "--board", "pico", "-o", str(tmp_path / "x.ohb")]
    assert main([*args, "--version", "1.2"]) == 2
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "wrong passphrase!")
    assert main([*args, "--version", "1.2.0"]) == 2
    assert not (tmp_path / "x.ohb").exists()


def test_show_prints_the_manifest(keypair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fw.ohb"
    main(["fleet", "build", "--key", str(keypair), "--version", "0.3.0", "--board", "esp32s3", "-o", str(out)])
    capsys.readouterr()
    assert main(["fleet", "show", str(out)]) == 0
    assert '"board": "esp32s3"' in capsys.readouterr().out
    (tmp_path / "junk").write_bytes(b"junk")
    assert main(["fleet", "show", str(tmp_path / "junk")]) == 2
    with pytest.raises(B.BundleError):
        build.peek_manifest(b"OHB1")
