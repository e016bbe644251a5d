"""Receives a signed bundle into the inactive slot and switches slots (sans-IO over bootsel.FS).

Used by the application's session and by the safe-mode loader, imported only when an
update begins. Steps, each safe against a power cut: verify the manifest and signature
(bundle.Reader) before touching flash; clear the target slot (its manifest.json first,
so a half-written slot is never complete); write each file, checking its sha256; write
manifest.json last (temp + rename); switch = one atomic write of the boot state.
"""

import os

import bootsel
import bundle
import linkproto as L

B = bootsel


class OsFsFull(bootsel.OsFs):
    """bootsel's flash access plus what writing a slot needs (kept out of the boot path's heap)."""

    def open(self, path):
        return open(path, "wb")

    def remove(self, path):
        try:
            os.remove(path)
        except OSError:
            pass

    def makedirs(self, path):
        here = ""
        for part in path.strip("/").split("/"):
            here += "/" + part
            if not self.exists(here):
                os.mkdir(here)

    def rmtree(self, path):
        if not self.exists(path):
            return
        for entry in os.ilistdir(path):  # type: ignore[attr-defined]
            child = path + "/" + entry[0]
            if entry[1] == 0x4000:
                self.rmtree(child)
            else:
                os.remove(child)
        os.rmdir(path)


class UpdateError(Exception):
    pass


class OutOfOrder(Exception):
    """A chunk ahead of what arrived (a frame lost and resent): the sender rewinds; nothing is lost."""


class Updater:
    def __init__(self, board, installed):
        if type(B.FS) is B.OsFs:
            B.FS = OsFsFull()
        state = B.read_state()
        if not state.get("confirmed"):
            raise UpdateError("the running firmware is not confirmed yet; try again after it is")
        key = B.public_key()
        if not key:
            raise UpdateError("no public key in the key store")
        self.active = state["active"]
        self.target = "b" if self.active == "a" else "a"
        self.dir = B.slot_dir(self.target)
        self.installed = installed
        self.reader = bundle.Reader(bundle.key_modulus(key), self, board, installed, B.LOADER_VERSION)
        self.ready = False
        self._file = None
        self._cleared = False

    # ------------------------------------------------ bundle.Reader's sink

    def begin(self, path, size):
        fs = B.FS  # OsFsFull on the unit (see __init__), SimFlash in tests
        if not self._cleared:
            fs.remove(self.dir + "/manifest.json")  # type: ignore[attr-defined]  # incomplete from here on
            fs.rmtree(self.dir)  # type: ignore[attr-defined]
            self._cleared = True
        parent = (self.dir + path).rsplit("/", 1)[0]
        fs.makedirs(parent)  # type: ignore[attr-defined]
        self._file = fs.open(self.dir + path)  # type: ignore[attr-defined]

    def write(self, data):
        self._file.write(data)  # type: ignore[union-attr]

    def end(self, path):
        self._file.close()  # type: ignore[union-attr]
        self._file = None

    # ------------------------------------------------ the update

    @property
    def received(self):
        return self.reader.received

    def feed(self, offset, data):
        if offset < self.reader.received:
            return  # already have these bytes (a chunk sent again)
        if offset > self.reader.received:
            raise OutOfOrder("expected offset %d" % self.reader.received)
        try:
            self.reader.feed(data)
        except bundle.BundleError as exc:
            self.abort()
            raise UpdateError(str(exc))

    def finish(self):
        """All bytes are in: mark the slot complete (manifest.json written last)."""
        try:
            self.reader.finish()
        except bundle.BundleError as exc:
            self.abort()
            raise UpdateError(str(exc))
        fs = B.FS
        manifest = self.reader.manifest
        if manifest.get("key"):  # type: ignore[union-attr]
            fs.write(self.dir + "/key.json", ('{"n":"%s"}' % manifest["key"]).encode())  # type: ignore[index]
        fs.write(self.dir + "/manifest.sig", self.reader.signature)
        fs.write(self.dir + "/manifest.tmp", self.reader.manifest_raw)
        fs.rename(self.dir + "/manifest.tmp", self.dir + "/manifest.json")
        self.ready = True
        return manifest["version"]  # type: ignore[index]

    def switch(self):
        """Boot the new slot from the next reset on, on trial (bootsel.MAX_TRIES boots to confirm)."""
        if not self.ready:
            raise UpdateError("nothing to switch to")
        version = self.reader.manifest["version"]  # type: ignore[index]
        state = {"active": self.target, "previous": self.active, "confirmed": False, "tries": 0, "version": version}
        state["previous_version"] = self.installed
        B.write_state(state)

    def abort(self):
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


class Receiver:
    """UPDATE_* messages -> Updater; UPDATE_STATUS out through ``send(mtype, payload)``.

    Shared by the application's session and the safe-mode loader. ``handle`` returns None
    or the reason to NACK the frame with. While ``busy()`` (a call or its wrap-up) the switch
    waits: ``poll()`` makes it once the unit is idle; ``reboot`` then asks for a reset.
    """

    def __init__(self, board, installed, send):
        self.board = board
        self.installed = installed
        self.send = send
        self.updater = None
        self.switch_pending = False
        self.reboot = False
        self.size = 0
        self._chunks = 0

    def status(self, phase, extra=None):
        obj = {"phase": phase}
        if extra:
            for k in extra:
                obj[k] = extra[k]
        self.send(L.UPDATE_STATUS, L.encode_json(obj))

    def handle(self, frame, busy):
        t = frame.type
        try:
            if t == L.UPDATE_BEGIN:
                meta = L.decode_json(frame.payload)
                if self.updater is not None:
                    self.updater.abort()
                self.updater = None
                self.switch_pending = False
                self.updater = Updater(self.board, self.installed)
                self.size = int(meta.get("size", 0))
                self._chunks = 0
                self.status("receiving", {"progress": 0, "slot": self.updater.target})
            elif t == L.UPDATE_CHUNK:
                if self.updater is None:
                    raise UpdateError("no update in progress")
                offset, data = L.decode_chunk(frame.payload)
                self.updater.feed(offset, data)
                self._chunks += 1
                if self._chunks % 32 == 0:
                    self.status("receiving", {"progress": self.updater.received, "size": self.size})
            elif t == L.UPDATE_COMMIT:
                if self.updater is None:
                    raise UpdateError("no update in progress")
                version = self.updater.finish()
                if busy:
                    self.switch_pending = True
                    self.status("deferred", {"version": version, "reason": "call in progress: switching when idle"})
                else:
                    self._switch()
            elif t == L.UPDATE_ABORT:
                if self.updater is not None:
                    self.updater.abort()
                self.updater = None
                self.switch_pending = False
                self.status("aborted")
        except OutOfOrder as exc:
            return str(exc)  # NACKed: the sender goes back to that offset
        except (UpdateError, ValueError, OSError) as exc:
            if self.updater is not None:
                self.updater.abort()
            self.updater = None
            self.status("failed", {"result": "rejected", "reason": str(exc)})
            return str(exc)
        return None

    def poll(self, busy):
        if self.switch_pending and not busy:
            self._switch()

    def _switch(self):
        up = self.updater
        up.switch()  # type: ignore[union-attr]
        self.switch_pending = False
        self.reboot = True
        self.status("rebooting", {"version": up.reader.manifest["version"], "slot": up.target})  # type: ignore[union-attr,index]
