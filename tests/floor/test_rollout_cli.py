"""`offhook rollout` over a real PostgreSQL (tests/floor/rig.py): central refuses a bundle not signed
by the fleet's key; create, status (--json and plain), pause, resume, abort, pins; bad input is one
line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from offhook.cli import main
from tests.fleet import keyring


def _pub(tmp_path: Path, index: int) -> Path:
    path = tmp_path / f"fleet{index}.pub"
    path.write_bytes(
        keyring.key(index)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def test_rollout_create_status_and_controls(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pub = str(_pub(tmp_path, 0))
    good, other = tmp_path / "good.ohb", tmp_path / "other.ohb"
    good.write_bytes(keyring.signed(version="1.2.0", board="pico"))
    other.write_bytes(keyring.signed(version="1.2.0", board="pico", signer=1))
    tampered = tmp_path / "tampered.ohb"
    tampered.write_bytes(keyring.flip(good.read_bytes(), len(good.read_bytes()) - 30))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["rollout", *args, "--db", db])
        out = capsys.readouterr()
        return code, out.out, out.err

    def refused(*args: str) -> str:
        """The one line on stderr of a refusal (exit 2)."""
        code, out, err = run(*args)
        assert code == 2 and not out and err.count("\n") == 1, (code, out, err)
        return err

    base = ["--pubkey", pub, "--target", "team=sales"]
    assert "bundle refused: bad signature" in refused("create", str(other), *base)
    assert "bundle refused: sha256 mismatch" in refused("create", str(tampered), *base)
    for bad, message in (
        (["--canary", "0"], "--canary must be N"),
        (["--waves", "3"], "--waves is a percentage"),
        (["--soak", "soon"], "--soak must look like"),
        (["--window", "9-17"], "window '9-17' is not HH:MM-HH:MM"),
        (["--target", "colour=red"], "is not team=NAME"),
    ):
        assert message in refused("create", str(good), *base, *bad), bad

    code, out, _ = run("create", str(good), *base, "--canary", "1", "--waves", "50%", "--soak", "10m")
    assert code == 0 and out.startswith("rollout pico-1.2.0: pico 1.2.0")
    assert "a rollout named 'pico-1.2.0' exists" in refused("create", str(good), *base)

    code, out, _ = run("status", "--json")
    (row,) = json.loads(out)
    assert (row["name"], row["status"], row["stage"], row["version"]) == ("pico-1.2.0", "running", 0, "1.2.0")
    code, out, _ = run("status")
    assert out.splitlines()[0] == "pico-1.2.0: pico 1.2.0 running, stage 0, 0/0 done, 0 failed"

    assert run("pause", "pico-1.2.0")[1] == "rollout pico-1.2.0: paused\n"
    assert "is paused, not running" in refused("pause", "pico-1.2.0")
    assert run("resume", "pico-1.2.0")[1] == "rollout pico-1.2.0: running\n"
    assert run("abort", "pico-1.2.0")[1] == "rollout pico-1.2.0: aborted\n"
    assert "no rollout named 'nope'" in refused("abort", "nope")

    assert run("pin", "support", "1.1.0")[1] == "team support: pinned to 1.1.0\n"
    assert run("unpin", "support")[1] == "team support: unpinned\n"
    assert "is not MAJOR.MINOR.PATCH" in refused("pin", "support", "latest")
