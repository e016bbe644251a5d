"""The updater and boot selection under CPython (the unit's own files): A/B switch, rollback,
safe mode, deferral during a call, key rotation, and a power-cut sweep over every journal
entry and many byte offsets: after each cut the unit boots a complete slot, never a brick."""

from __future__ import annotations

import json

import pytest

from offhook import bundle as B
from offhook import linkproto as L
from offhook.fleet import build
from tests.fleet import keyring
from tests.fleet.simflash import SimFlash, load_unit_modules

bootsel, updater = load_unit_modules()

FACTORY = {"/offhook_fw/__init__.py": b"VERSION = '1.0.0'", "/offhook_fw/app.py": b"factory app"}


def v_files(version: str) -> dict[str, bytes]:
    return {
        "/offhook_fw/__init__.mpy": f"VERSION = {version!r}".encode(),
        "/offhook_fw/app.mpy": b"app " + version.encode() * 400,
        "/lib/linkproto.mpy": b"link " * 300,
        "/boards/pico.mpy": b"pins " + version.encode(),
        **{f"/offhook_fw/m{i}.mpy": f"module {i} of {version} ".encode() * (20 + 7 * i) for i in range(12)},
    }


def fresh_flash() -> SimFlash:
    flash = SimFlash(dict(FACTORY))
    flash.persisted["/keys.json"] = json.dumps({"n": keyring.n_hex(0)}).encode()
    flash.live = dict(flash.persisted)
    return flash


def use(flash: SimFlash) -> SimFlash:
    bootsel.FS = flash
    bootsel.BOOT = None
    return flash


def install(data: bytes, installed: str = "1.0.0", chunk: int = 476, stop_at: int | None = None) -> str:
    up = updater.Updater("pico", installed)
    end = len(data) if stop_at is None else stop_at
    for offset in range(0, end, chunk):
        up.feed(offset, data[offset : min(offset + chunk, end)])
    if stop_at is not None:
        return "stopped"
    up.finish()
    up.switch()
    return up.target


def booted_version(flash: SimFlash) -> tuple[str, str]:
    """Boot (select) and check the chosen slot is whole: every file matches its manifest."""
    use(flash)
    slot, _reason = bootsel.select(False)
    assert slot != "safe", "bricked: no bootable slot"
    if slot == "factory":
        return slot, "1.0.0"
    where = bootsel.slot_dir(slot)
    manifest = B.parse_manifest(flash.live[where + "/manifest.json"])
    for path, size, digest in manifest["files"]:
        data = flash.live[where + path]
        assert len(data) == size and B.sha256_hex(data) == digest, f"slot {slot} has a torn {path}"
    return slot, manifest["version"]


def test_update_switches_to_the_new_slot_on_trial_then_confirms() -> None:
    flash = use(fresh_flash())
    assert install(keyring.signed(v_files("1.1.0"), "1.1.0")) == "a"
    flash = use(flash.reboot())
    assert booted_version(flash) == ("a", "1.1.0")
    assert bootsel.health() == "trial"
    assert bootsel.confirm() is True and bootsel.health() == "confirmed"
    flash = use(flash.reboot())
    install(keyring.signed(v_files("1.2.0"), "1.2.0"), installed="1.1.0")
    assert booted_version(flash.reboot()) == ("b", "1.2.0")


def test_unconfirmed_slot_rolls_back_after_three_boots() -> None:
    flash = use(fresh_flash())
    install(keyring.signed(v_files("1.1.0"), "1.1.0"))
    for boot in range(1, 4):
        flash = use(flash.reboot())
        assert bootsel.select(False)[0] == "a", f"boot {boot} still tries the new slot"
    flash = use(flash.reboot())
    slot, reason = bootsel.select(False)
    assert slot == "factory" and "rolled back from slot a" in reason
    state = json.loads(flash.live["/boot_state.json"])
    assert state["confirmed"] and state["rolled_back"] == "a"
    assert state["version"] == "1.0.0", "the safe-mode loader's anti-rollback floor is the version running again"


def test_button_held_at_power_on_enters_safe_mode_without_counting_a_try() -> None:
    flash = use(fresh_flash())
    install(keyring.signed(v_files("1.1.0"), "1.1.0"))
    flash = use(flash.reboot())
    assert bootsel.select(True)[0] == "safe"
    assert json.loads(flash.live["/boot_state.json"])["tries"] == 0


def test_no_update_while_the_new_slot_is_unconfirmed() -> None:
    flash = use(fresh_flash())
    install(keyring.signed(v_files("1.1.0"), "1.1.0"))
    use(flash.reboot())
    bootsel.select(False)
    with pytest.raises(updater.UpdateError, match="not confirmed"):
        updater.Updater("pico", "1.1.0")


@pytest.mark.parametrize(
    "name", ["wrong key", "downgrade", "wrong board", "flipped bit in /offhook_fw/app.mpy", "truncated"]
)
def test_rejected_bundle_leaves_the_old_version_running(name: str) -> None:
    flash = use(fresh_flash())
    data = dict(keyring.bad_bundles())[name]
    with pytest.raises(updater.UpdateError):
        install(data)
    assert booted_version(flash.reboot()) == ("factory", "1.0.0")


def _status_receiver(sent: list) -> object:
    return updater.Receiver("pico", "1.0.0", lambda t, p: sent.append(L.decode_json(p)))


def test_receiver_defers_the_switch_during_a_call() -> None:
    flash = use(fresh_flash())
    data = keyring.signed(v_files("1.1.0"), "1.1.0")
    sent: list = []
    rx = _status_receiver(sent)
    frames = [L.Frame(L.UPDATE_BEGIN, 0, L.encode_json({"size": len(data)}))]
    frames += [L.Frame(L.UPDATE_CHUNK, 0, L.encode_chunk(o, data[o : o + 476])) for o in range(0, len(data), 476)]
    for frame in frames:
        assert rx.handle(frame, busy=True) is None
    assert rx.handle(L.Frame(L.UPDATE_COMMIT, 0), busy=True) is None
    assert sent[-1]["phase"] == "deferred" and "call" in sent[-1]["reason"]
    assert not rx.reboot and "/boot_state.json" not in flash.live
    rx.poll(busy=True)
    assert not rx.reboot
    rx.poll(busy=False)
    assert rx.reboot and sent[-1]["phase"] == "rebooting"
    assert booted_version(flash.reboot()) == ("a", "1.1.0")


def test_receiver_reports_a_rejection_with_its_reason() -> None:
    use(fresh_flash())
    sent: list = []
    rx = _status_receiver(sent)
    data = dict(keyring.bad_bundles())["downgrade"]
    rx.handle(L.Frame(L.UPDATE_BEGIN, 0, L.encode_json({"size": len(data)})), False)
    reason = None
    for offset in range(0, len(data), 476):
        reason = rx.handle(L.Frame(L.UPDATE_CHUNK, 0, L.encode_chunk(offset, data[offset : offset + 476])), False)
        if reason:
            break
    assert offset < 1500, "refused as soon as the signed manifest is in"
    assert reason and "downgrade refused" in reason
    assert sent[-1] == {"phase": "failed", "result": "rejected", "reason": reason}


def test_key_rotation_reaches_the_key_store_once_the_new_slot_is_confirmed() -> None:
    flash = use(fresh_flash())
    data = build.build_bundle(v_files("1.1.0"), "1.1.0", "pico", keyring.key(0), new_key=keyring.n_hex(1))
    install(data)
    flash = use(flash.reboot())
    bootsel.select(False)
    assert bootsel.public_key() == keyring.n_hex(0), "not before the new firmware proved itself"
    bootsel.confirm()
    assert bootsel.public_key() == keyring.n_hex(1)
    flash = use(flash.reboot())
    with pytest.raises(updater.UpdateError, match="bad signature"):
        install(keyring.signed(v_files("1.2.0"), "1.2.0", signer=0), installed="1.1.0")
    install(keyring.signed(v_files("1.2.0"), "1.2.0", signer=1), installed="1.1.0")
    assert booted_version(flash.reboot()) == ("b", "1.2.0")


def _sweep_points(data: bytes) -> list[tuple[str, int]]:
    use(probe := fresh_flash())
    install(data)
    points = [("journal", n) for n in range(probe.entries + 1)]
    points += [("offset", offset) for offset in range(0, len(data), max(1, len(data) // 100))]
    return points


def test_power_cut_sweep_never_bricks() -> None:
    """Every journal entry of a whole update, and 100 byte offsets into the stream."""
    data = keyring.signed(v_files("1.1.0"), "1.1.0")
    points = _sweep_points(data)
    assert len(points) >= 100
    outcomes = set()
    for kind, n in points:
        flash = use(fresh_flash())
        if kind == "journal":
            flash.cut_power_after(n)
            install(data)
        else:
            flash.cut_power_after(0)
            install(data, stop_at=n)
        slot, version = booted_version(flash.reboot())
        outcomes.add((slot, version))
        assert (slot, version) in {("factory", "1.0.0"), ("a", "1.1.0")}, (kind, n)
    assert outcomes == {("factory", "1.0.0"), ("a", "1.1.0")}


def test_power_cut_during_confirmation_and_rollback_never_bricks() -> None:
    base = use(fresh_flash())
    install(keyring.signed(v_files("1.1.0"), "1.1.0"))
    base = base.reboot()
    for boots in range(5):
        for cut in range(4):
            flash = use(base.reboot())
            flash.cut_power_after(cut)
            for _ in range(boots):
                bootsel.select(False)
            bootsel.confirm()
            slot, version = booted_version(flash.reboot())
            assert (slot, version) in {("factory", "1.0.0"), ("a", "1.1.0")}


def test_a_chunk_ahead_of_a_lost_one_is_nacked_and_the_sender_rewinds() -> None:
    flash = use(fresh_flash())
    data = keyring.signed(v_files("1.1.0"), "1.1.0")
    sent: list = []
    rx = _status_receiver(sent)
    chunks = [(o, data[o : o + 476]) for o in range(0, len(data), 476)]
    assert rx.handle(L.Frame(L.UPDATE_BEGIN, 0, L.encode_json({"size": len(data)})), False) is None
    assert rx.handle(L.Frame(L.UPDATE_CHUNK, 0, L.encode_chunk(*chunks[0])), False) is None
    # chunks[1] is lost on the wire: chunks[2] arrives first.
    assert rx.handle(L.Frame(L.UPDATE_CHUNK, 0, L.encode_chunk(*chunks[2])), False) == "expected offset 476"
    assert not any(s["phase"] == "failed" for s in sent), "nothing lost: the update goes on"
    for offset, piece in chunks[1:]:  # the sender goes back to 476
        assert rx.handle(L.Frame(L.UPDATE_CHUNK, 0, L.encode_chunk(offset, piece)), False) is None
    assert rx.handle(L.Frame(L.UPDATE_CHUNK, 0, L.encode_chunk(*chunks[3])), False) is None  # a late duplicate
    assert rx.handle(L.Frame(L.UPDATE_COMMIT, 0), False) is None
    assert rx.reboot and booted_version(flash.reboot()) == ("a", "1.1.0")
