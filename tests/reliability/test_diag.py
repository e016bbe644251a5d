"""`offhook diag`: the support bundle holds what support needs and none of the secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from offhook.api.tokens import TokenStore
from offhook.diag import REDACTED, scrub

OFFHOOK = Path(sys.executable).with_name("offhook")
PRIVATE_KEY = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq\n-----END ENCRYPTED PRIVATE KEY-----"
)


def test_scrub_removes_secrets_and_numbers() -> None:
    text = (
        'auth token=abcDEF0123456789abcDEF0123456789xyz; {"passphrase": "hunter2!"} '
        "incoming from sip:+4930123456@pbx.example and tel +49 30 1234567; open "
        "http://127.0.0.1:8677/panel/#token=Zm9vYmFy " + PRIVATE_KEY + " my-known-secret-value"
    )
    out = scrub(text, ["my-known-secret-value"])
    for secret in (
        "abcDEF0123456789abcDEF0123456789xyz",
        "hunter2!",
        "4930123456",
        "1234567",
        "Zm9vYmFy",
        "MIIFHDBOBgkq",
        "my-known-secret-value",
    ):
        assert secret not in out
    assert "sip:«number»@pbx.example" in out and REDACTED in out


def test_diag_bundle_has_versions_and_no_secrets(tmp_path: Path) -> None:
    tokens = TokenStore()  # the test's private XDG dirs (conftest)
    user_token = tokens.user_token()
    origin_token = tokens.pair("https://crm.example.com", "Acme CRM")
    origin_hash = tokens.paired()["https://crm.example.com"]["sha256"]
    log = tmp_path / "daemon.log"
    log.write_text(
        f"INFO API client auth with {user_token}\n"
        f"INFO paired https://crm.example.com token {origin_token}\n"
        "INFO incoming {'call': 'a84b', 'peer': 'sip:+4930123456@pbx'}\n"
        f"DEBUG key file\n{PRIVATE_KEY}\n"
    )
    out = tmp_path / "bundle.tar.gz"
    result = subprocess.run(
        [OFFHOOK, "diag", "-o", str(out), "--log", str(log), "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bundle"] == str(out)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(out) as bundle:
        contents = {m.name.split("/", 1)[1]: bundle.extractfile(m).read().decode() for m in bundle.getmembers()}
    assert {"versions.json", "config.json", "units.json", "paired-origins.json", "logs/daemon.log"} <= set(contents)
    assert json.loads(contents["versions.json"])["micropython_target"] == "1.27"
    assert "Acme CRM" in contents["paired-origins.json"]
    everything = "\n".join(contents.values())
    for secret in (user_token, origin_token, origin_hash, "4930123456", "MIIFHDBOBgkq"):
        assert secret not in everything
    assert "INFO incoming" in contents["logs/daemon.log"]  # the log itself is still there to read


def test_diag_missing_log_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([OFFHOOK, "diag", "--log", str(tmp_path / "nope.log")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "no such file" in result.stderr
