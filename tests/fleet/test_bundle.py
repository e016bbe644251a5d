"""Bundles: the same verifier on CPython and the MicroPython VM; every rejection case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offhook import bundle as B
from offhook import linkproto
from offhook.firmware import LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE
from offhook.fleet import build
from offhook.vm import MicroPythonVM
from tests.fleet import cases, keyring

BUNDLE_SOURCE = Path(B.__file__)


def _expected() -> list[str]:
    return cases.run_all(B, keyring.n_hex(), keyring.bad_bundles())


def test_good_bundle_accepted_and_every_bad_one_rejected_before_install() -> None:
    lines = dict(line.split(": ", 1) for line in _expected() if ": " in line)
    assert lines["good"].startswith("OK 1.1.0 files=4")
    reasons = {
        "wrong key": "bad signature",
        "missing signature": "missing signature",
        "downgrade": "downgrade refused",
        "wrong board": "bundle is for board esp32s3",
        "truncated": "truncated bundle",
        "truncated in manifest": "truncated bundle",
        "flipped bit in manifest": "bad signature",
        "listed file missing": "truncated bundle: /offhook_fw/extra.mpy incomplete or missing",
        "not a bundle": "not an offhook bundle",
        "trailing bytes": "bytes after the last file",
    }
    for name, reason in reasons.items():
        assert lines[name].startswith("REJECTED " + reason), (name, lines[name])
        if name != "listed file missing" and not name.startswith("truncated") and name != "trailing bytes":
            assert "(files started: 0)" in lines[name], "rejected before any file reached the slot"
    flipped = [name for name in lines if name.startswith("flipped bit in /")]
    assert len(flipped) == 3
    for name in flipped:
        assert lines[name].startswith("REJECTED sha256 mismatch in " + name.split(" in ")[1])


def test_same_results_on_the_micropython_vm(mpvm: MicroPythonVM) -> None:
    named = keyring.bad_bundles()
    expected = cases.run_all(B, keyring.n_hex(), named)
    mpvm.put(LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE.read_bytes())
    mpvm.put("/lib/bundle.py", BUNDLE_SOURCE.read_bytes())
    mpvm.put("/cases.py", Path(cases.__file__).read_bytes())
    mpvm.put_files({f"/b{i}.bin": data for i, (_name, data) in enumerate(named)})
    mpvm.put("/n.txt", keyring.n_hex())
    names = json.dumps([name for name, _data in named])
    code = (
        "import json, bundle, cases\n"
        f"names = json.loads({names!r})\n"
        "named = [(name, open('/b%d.bin' % i, 'rb').read()) for i, name in enumerate(names)]\n"
        "print(json.dumps(cases.run_all(bundle, open('/n.txt').read(), named)))"
    )
    result = mpvm.run(code)
    assert json.loads(result.check()) == expected
    assert not result.heap_grew


def test_signature_check_costs_one_modexp_on_the_vm(mpvm: MicroPythonVM) -> None:
    manifest = b'{"format":1}'
    sig = keyring.key(0).sign(manifest, *_pkcs1())
    mpvm.put(LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE.read_bytes())
    mpvm.put("/lib/bundle.py", BUNDLE_SOURCE.read_bytes())
    code = (
        "import bundle, binascii\n"
        f"n = bundle.key_modulus({keyring.n_hex()!r})\n"
        f"sig = binascii.unhexlify({sig.hex()!r})\n"
        f"print(bundle.verify({manifest!r}, sig, n), bundle.verify({manifest!r} + b' ', sig, n))"
    )
    assert mpvm.run(code).check().split() == ["True", "False"]


def _pkcs1() -> tuple:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PKCS1v15(), hashes.SHA256()


def test_host_verifier_returns_the_files() -> None:
    manifest, files = build.read_bundle(keyring.signed(), int(keyring.n_hex(), 16), "pico", "1.0.0")
    assert manifest["version"] == "1.1.0" and files == keyring.FILES


@pytest.mark.parametrize(
    "path", ["/boot.py", "/main.py", "relative.mpy", "/a/../b.mpy", "/a//b.mpy", "/keys.json", "/x" * 40]
)
def test_manifest_refuses_paths_outside_the_slot(path: str) -> None:
    files = {path: b"x"}
    manifest = {"format": 1, "version": "1.0.0", "board": "pico", "min_loader": 1, "files": [[path, 1, "0" * 64]]}
    with pytest.raises(B.BundleError, match="bad or duplicate file path"):
        B.parse_manifest(linkproto.canonical_json(manifest).encode())
    with pytest.raises(B.BundleError):
        build.make_manifest(files, "1.0.0", "pico")


def test_rotation_key_is_covered_by_the_old_signature() -> None:
    data = build.build_bundle(keyring.FILES, "1.2.0", "pico", keyring.key(0), new_key=keyring.n_hex(1))
    manifest, _files = build.read_bundle(data, int(keyring.n_hex(0), 16), "pico", "1.0.0")
    assert manifest["key"] == keyring.n_hex(1)
    with pytest.raises(B.BundleError, match="bad signature"):
        build.read_bundle(data, int(keyring.n_hex(1), 16), "pico", "1.0.0")
