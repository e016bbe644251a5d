"""Boot state and slot selection: the part of the boot loader that boot.py and the app share.

Outside the application slots and never updated over the link (like boot.py). The state
lives in /boot_state.json, always replaced whole (temp file + rename), so after a power
cut at any moment it is either the old or the new state::

    {"active": "a", "previous": "factory", "confirmed": false, "tries": 1, "version": "0.2.0"}

Slots: "factory" (the provisioned files at the flash root), "a" (/slot_a) and "b" (/slot_b).
A slot is complete once its manifest.json exists; the updater writes that file last.
A new slot boots unconfirmed; each boot counts a try; the app confirms it once its main
loop runs and its self-test passes; after MAX_TRIES unconfirmed boots the loader rolls back.
"""

import json
import os

STATE = "/boot_state.json"
KEYS = "/keys.json"
MAX_TRIES = 3
LOADER_VERSION = 1
# What boot.py decided: (slot, reason); slot "safe" means the safe-mode loader runs.
BOOT = None  # type: tuple | None


class OsFs:
    """The unit's flash through os (what booting needs; updater.OsFsFull adds the rest).
    Tests swap in a simulated flash with a write journal."""

    def read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, path, data):
        with open(path, "wb") as f:
            f.write(data)

    def rename(self, old, new):
        os.rename(old, new)

    def exists(self, path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False


FS = OsFs()


def slot_dir(slot):
    return "" if slot == "factory" else "/slot_" + slot


def slot_ok(slot):
    if slot == "factory":
        return FS.exists("/offhook_fw")
    return slot in ("a", "b") and FS.exists(slot_dir(slot) + "/manifest.json")


def read_state():
    raw = FS.read(STATE)
    if raw:
        try:
            state = json.loads(raw)
            if isinstance(state, dict) and state.get("active") in ("factory", "a", "b"):
                return state
        except ValueError:
            pass
    return {"active": "factory", "previous": None, "confirmed": True, "tries": 0}


def write_state(state):
    tmp = STATE + ".tmp"
    FS.write(tmp, json.dumps(state).encode())
    FS.rename(tmp, STATE)


def select(safe_held=False):
    """Decide what to boot, counting this boot's try: (slot, reason). Slot "safe": safe mode."""
    if safe_held:
        return "safe", "button held at power-on"
    state = read_state()
    active = state["active"]
    if not state.get("confirmed"):
        if state.get("tries", 0) >= MAX_TRIES or not slot_ok(active):
            back = state.get("previous") or "factory"
            old = {"active": back, "previous": None, "confirmed": True, "tries": 0, "rolled_back": active}
            old["version"] = state.get("previous_version") or "0.0.0"  # anti-rollback in safe mode
            write_state(old)
            return _fallback(back, "rolled back from slot %s: not confirmed after %d boots" % (active, MAX_TRIES))
        state["tries"] = state.get("tries", 0) + 1
        write_state(state)
    return _fallback(active, "")


def _fallback(slot, reason):
    if slot_ok(slot):
        return slot, reason
    for other in ("a", "b", "factory"):
        if slot_ok(other):
            return other, "slot %s incomplete, booted %s" % (slot, other)
    return "safe", "no complete slot"


def health():
    """ "confirmed", "trial" (a new slot not yet confirmed) or "safe"."""
    if BOOT and BOOT[0] == "safe":
        return "safe"
    return "confirmed" if read_state().get("confirmed") else "trial"


def confirm():
    """The running slot passed its self-test: keep it. Installs a rotated key first. True if changed."""
    state = read_state()
    if state.get("confirmed"):
        return False
    key = FS.read(slot_dir(state["active"]) + "/key.json")
    if key and FS.read(KEYS) != key:
        FS.write(KEYS + ".tmp", key)
        FS.rename(KEYS + ".tmp", KEYS)
    state["confirmed"] = True
    state["tries"] = 0
    write_state(state)
    return True


def public_key():
    """The key store's modulus (hex), read by the app and the safe-mode loader alike."""
    raw = FS.read(KEYS)
    if not raw:
        return None
    try:
        return json.loads(raw)["n"]
    except (ValueError, KeyError, TypeError):
        return None
