// One simulated desk unit: the real firmware on the real MicroPython VM, with the
// simulated board, its flash kept in a host directory through a write journal.
//
// Usage: node unit.mjs FLASH_DIR SERIAL_HEX [HEAP_BYTES] [HELD_PINS]
// HELD_PINS: comma-separated input pins held low at power-on (safe mode: the hook key).
// FLASH_DIR/files/ is the unit's filesystem (provisioned by the Python side);
// FLASH_DIR/journal.jsonl records every file write, rename and removal as it reaches
// "flash". A power cut after N journal entries drops every later write.
//
// stdin (JSON lines):  {"link": HEX} bytes from the host | {"pin": ID, "level": 0|1}
//                      {"pin": ID, "pattern": [[LEVEL, MS], ...]} a press timed on the unit's clock
//                      {"cut_after": N} | {"quit": true}
// stdout (JSON lines): {"ready": true} | {"link": HEX} bytes from the unit
//                      {"leds": [duty, ...]} when a PWM duty changes | {"log": TEXT}
// The process exits when stdin closes, so it never outlives its parent.
//
// Nothing polls: the board's link and the simulated PWM tell this runner when the firmware wrote
// (LINK.write, machine.handler), and it reads them once that task of the firmware has yielded
// (setImmediate), so an idle unit costs only the firmware's own timers, and bytes and lamps leave
// as soon as the firmware wrote them.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { createInterface } from "node:readline";
import fs from "node:fs";
import path from "node:path";

const [flashDir, serialHex, heapArg, heldArg] = process.argv.slice(2);
const filesDir = path.join(flashDir, "files");
const journalPath = path.join(flashDir, "journal.jsonl");

let journalEntries = 0;
let cutAfter = Infinity;
const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n");

const mp = await loadMicroPython({
  stdout: (bytes) => emit({ log: Buffer.from(bytes).toString() }),
  linebuffer: false,
  heapsize: Number(heapArg) || 194560,
});

// ------------------------------------------------------------------ flash
function hostPath(unitPath) {
  const resolved = path.resolve(filesDir, "." + unitPath);
  if (!resolved.startsWith(path.resolve(filesDir))) throw new Error(`path escapes flash: ${unitPath}`);
  return resolved;
}

function journal(entry, apply) {
  journalEntries += 1;
  if (journalEntries > cutAfter) return; // power already cut: this write never reached flash
  fs.appendFileSync(journalPath, JSON.stringify(entry) + "\n");
  apply();
}

function loadFlash(dir, unitDir) {
  for (const name of fs.readdirSync(dir)) {
    const hostFile = path.join(dir, name);
    const unitFile = unitDir === "/" ? "/" + name : unitDir + "/" + name;
    if (fs.statSync(hostFile).isDirectory()) {
      try { mp.FS.mkdir(unitFile); } catch { /* exists */ }
      loadFlash(hostFile, unitFile);
    } else {
      mp.FS.writeFile(unitFile, fs.readFileSync(hostFile));
    }
  }
}

loadFlash(filesDir, "/");

const FS = mp.FS;
const writable = new Set();
const original = {
  open: FS.open.bind(FS), close: FS.close.bind(FS), rename: FS.rename.bind(FS),
  unlink: FS.unlink.bind(FS), mkdir: FS.mkdir.bind(FS), rmdir: FS.rmdir.bind(FS),
};
FS.open = (p, flags, ...rest) => {
  const stream = original.open(p, flags, ...rest);
  const writing = typeof flags === "string" ? /[wa+]/.test(flags) : (flags & 3) !== 0;
  if (writing && stream.path && !stream.path.startsWith("/dev")) writable.add(stream);
  return stream;
};
FS.close = (stream) => {
  const result = original.close(stream);
  if (writable.delete(stream)) {
    const data = FS.readFile(stream.path);
    journal({ op: "write", path: stream.path, size: data.length }, () => {
      fs.mkdirSync(path.dirname(hostPath(stream.path)), { recursive: true });
      fs.writeFileSync(hostPath(stream.path), data);
    });
  }
  return result;
};
FS.rename = (from, to) => {
  const result = original.rename(from, to);
  journal({ op: "rename", path: from, to }, () => fs.renameSync(hostPath(from), hostPath(to)));
  return result;
};
FS.unlink = (p) => {
  const result = original.unlink(p);
  journal({ op: "unlink", path: p }, () => fs.rmSync(hostPath(p), { force: true }));
  return result;
};
FS.mkdir = (p, mode) => {
  const result = original.mkdir(p, mode);
  journal({ op: "mkdir", path: p }, () => fs.mkdirSync(hostPath(p), { recursive: true }));
  return result;
};
FS.rmdir = (p) => {
  const result = original.rmdir(p);
  journal({ op: "rmdir", path: p }, () => fs.rmSync(hostPath(p), { recursive: true, force: true }));
  return result;
};

// ------------------------------------------------------------------ firmware
// Set by the firmware's writes (see the setup below), read once it yields: the link's bytes, the LEDs.
let linkDue = false;
let ledsDue = false;
globalThis.offhookLinkWritten = () => {
  if (!linkDue) {
    linkDue = true;
    setImmediate(flushLink);
  }
};
globalThis.offhookLedsChanged = () => {
  if (!ledsDue) {
    ledsDue = true;
    setImmediate(flushLeds);
  }
};
mp.runPython(`
import sys
if '/lib' not in sys.path: sys.path.insert(0, '/lib')
if '/' not in sys.path: sys.path.insert(0, '/')
import binascii, machine
machine.UNIQUE_ID = binascii.unhexlify('${serialHex}')
from boards import sim as _sim_board
import js
_LED_PINS = (10, 11, 12, 13, 14, 15, 16)
def _sim_written(write=_sim_board.LINK.write, wake=js.offhookLinkWritten):
    def written(data):
        write(data)
        wake()
    return written
_sim_board.LINK.write = _sim_written()
machine.handler = js.offhookLedsChanged
def _sim_link_out():
    return binascii.hexlify(_sim_board.LINK.host_read()).decode()
def _sim_link_in(hexdata):
    _sim_board.LINK.host_write(binascii.unhexlify(hexdata))
def _sim_leds():
    out = []
    for p in _LED_PINS:
        try:
            out.append(machine.pwm_duty(p))
        except KeyError:
            out.append(0)
    return ','.join(str(d) for d in out)
`);

for (const pin of (heldArg || "").split(",").filter(Boolean)) py0(`machine.set_input(${Number(pin)}, 0)`);
function py0(code) { mp.runPython(code); }
// Boot as a board does: boot.py (slot selection, safe mode) when the flash has one, then main.
const entry = (fs.existsSync(path.join(filesDir, "boot.py")) ? "import boot\n" : "") + "import vm_main\nawait vm_main.main()";
const running = mp.runPythonAsync(entry);
running.catch((err) => {
  const text = String(err && err.message ? err.message : err);
  // machine.reset() (an update switched slots) or a crash: a board resets; the host side reboots us.
  emit(text.includes("machine.reset()") ? { reset: true } : { crashed: text });
  process.exit(3);
});

const py = (code) => mp.runPython(code);
const globals = mp.globals;
const linkOut = globals.get("_sim_link_out");
const readLeds = globals.get("_sim_leds");
let lastLeds = "";
function flushLink() {
  linkDue = false;
  const out = linkOut();
  if (out) emit({ link: out });
}
function flushLeds() {
  ledsDue = false;
  const leds = readLeds();
  if (leds !== lastLeds) {
    lastLeds = leds;
    emit({ leds: leds.split(",").map(Number) });
  }
}

const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
input.on("line", (line) => {
  if (!line.trim()) return;
  const message = JSON.parse(line);
  if (message.link) globals.get("_sim_link_in")(message.link);
  if (message.pin !== undefined && message.pattern) {
    const steps = message.pattern.map(([level, ms]) => `(${level ? 1 : 0}, ${Number(ms) | 0})`).join(", ");
    py(`machine.press_pattern(${Number(message.pin)}, (${steps},))`);
  } else if (message.pin !== undefined) py(`machine.set_input(${Number(message.pin)}, ${message.level ? 1 : 0})`);
  if (message.cut_after !== undefined) cutAfter = journalEntries + Number(message.cut_after);
  if (message.quit) process.exit(0);
});
input.on("close", () => process.exit(0));
// Also leave if the parent is gone but something else still holds our stdin open.
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 1000).unref();
emit({ ready: true });
