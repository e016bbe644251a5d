"""`offhook diag` on a realistic daemon log: secrets and customer numbers go, and nothing else does.
Support must still read when things happened, on which address and port, which unit (serial), which
firmware and which call; masking those as "numbers" made bundles unreadable."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from offhook.cli import main
from offhook.diag import REDACTED, scrub

NUMBER = "«number»"

USER_TOKEN = "q3Z8vN1xK0pL7mR2tY5wB9cE4hJ6sD0aF3gU8iO1kP"
ONE_TIME = "Zm9vYmFyYmF6cXV4"
PEM = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq\n-----END ENCRYPTED PRIVATE KEY-----"

# The daemon's text log format ("%(asctime)s %(levelname)s %(name)s: %(message)s"), a --log-json line,
# baresip's events echoed in an error, the daemon's saved state, a fleet tool's debug output.
LOG = f"""\
2025-03-14 09:12:03,517 INFO offhook.daemon.service: unit 00000000f1ee7000 (pico, firmware 0.2.0) on serial /dev/ttyACM0
2025-03-14 09:12:03,902 INFO offhook.api.server: API client client-1 connected (127.0.0.1:53124)
2025-03-14 09:12:04,010 WARNING offhook.api.server: API authentication failed from 127.0.0.1:53130
2025-03-14 09:12:04,200 INFO offhook.api.server: panel at http://127.0.0.1:8677/panel/#token={ONE_TIME}
2025-03-14 09:13:41,200 DEBUG offhook.daemon.service: softphone: incoming 3a1f9c2e-77b1-4c1e-9d0a-5c2b1e8f4d11
2025-03-14 09:13:41,201 ERROR offhook.softphone.baresip: baresip sent an unreadable message (Expecting value): \
b'{{"type":"CALL_INCOMING","peeruri":"sip:+4930123456@pbx.example.com","id":"3a1f9c2e'
2025-03-14 09:13:41,350 INFO offhook.daemon.service: button hook short -> answer
2025-03-14 09:14:02,004 INFO offhook.daemon.service: transfer to sip:0301234567@pbx.example.com, caller \
+49 (30) 123-4567
2025-03-14 09:14:02,010 INFO offhook.daemon.service: consult sips:anna.schmidt@pbx.example.com; call back (030) 98765-43
2025-03-14 09:14:05,800 WARNING offhook.daemon.unit: unit refused frame 17 (BAD_STATE): call 2 unknown
2025-03-14 09:14:06,000 INFO offhook.fleet: flashed 37498 bytes in 0.35 s (104 KiB/s), heap 51623; \
0ff0514d000000e2 confirmed
2025-03-14 09:15:00,000 DEBUG offhook.api.server: auth {{"type": "auth", "token": "{USER_TOKEN}"}}
2025-03-14 09:15:00,001 DEBUG offhook.fleet: OFFHOOK_KEY_PASSPHRASE=correct-horse-battery
2025-03-14 09:15:00,002 DEBUG offhook.fleet: {{'passphrase': 'correct horse battery', 'key': '/home/it/it.key'}}
2025-03-14 09:15:00,003 DEBUG offhook.fleet: {PEM}
{{"ts": 1741943700.123, "level": "info", "logger": "offhook.daemon.service", "msg": "unit given back by client-3"}}
state {{'calls': [{{'call': 'a84b', 'peer': '+49 30 1234567', 'state': 'active', 'since': 1741943641.2}}]}}
"""

KEPT = (
    "2025-03-14 09:12:03,517",  # timestamps
    "09:14:06,000",
    "1741943700.123",
    "127.0.0.1:53124",  # loopback addresses and ports
    "http://127.0.0.1:8677/panel/",
    "00000000f1ee7000",  # unit serials
    "0ff0514d000000e2",
    "firmware 0.2.0",
    "/dev/ttyACM0",
    "3a1f9c2e-77b1-4c1e-9d0a-5c2b1e8f4d11",  # call ids
    "'call': 'a84b'",
    "frame 17",
    "37498 bytes in 0.35 s (104 KiB/s), heap 51623",
    "@pbx.example.com",  # the PBX, not the customer
)
GONE = (
    USER_TOKEN,
    ONE_TIME,
    "correct-horse-battery",
    "correct horse battery",
    "horse battery",
    "MIIFHDBOBgkq",
    "4930123456",
    "0301234567",
    "123-4567",
    "anna.schmidt",
    "98765-43",
    "30 1234567",
)


def test_scrub_masks_secrets_and_customer_numbers_and_keeps_what_support_reads() -> None:
    out = scrub(LOG)
    for secret in GONE:
        assert secret not in out
    for kept in KEPT:
        assert kept in out
    assert out.count("\n") == LOG.count("\n") - PEM.count("\n"), "one line per line, the key block one «redacted»"
    assert "sip:«number»@pbx.example.com" in out and "caller «number»" in out and "'peer': '«number»'" in out
    assert '"token": "«redacted»"' in out and "'passphrase': '«redacted»'" in out


def test_scrub_is_unchanged_on_a_log_with_nothing_private() -> None:
    private = (*GONE, "token", "PRIVATE KEY")
    quiet = "\n".join(line for line in LOG.splitlines() if not any(word in line for word in private))
    assert quiet.count("\n") >= 6
    assert scrub(quiet) == quiet


def test_the_bundle_holds_the_scrubbed_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "daemon.log"
    log.write_text(LOG)
    out = tmp_path / "diag.tar.gz"
    assert main(["diag", "-o", str(out), "--log", str(log)]) == 0
    with tarfile.open(out) as bundle:
        member = bundle.extractfile("offhook-diag/logs/daemon.log")
        assert member is not None
        text = member.read().decode()
    assert text == scrub(LOG) and REDACTED in text and NUMBER in text


def test_diag_onto_a_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diag", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("offhook: error: ") and err.count("\n") == 1 and "is a directory" in err
    assert list(tmp_path.parent.glob(f"{tmp_path.name}.tmp")) == []
