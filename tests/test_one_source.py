"""One source for every number the host and the desk unit share (issue 19).

Three modules in host/offhook/ are each the only home of what they hold, and every firmware build
installs them on the unit under /lib (``offhook.firmware.SHARED``): ``linkproto`` (the link
protocol), ``hidframe`` (the link over USB HID reports) and ``usbids`` (offhook's USB IDs).
A firmware module may keep a const() copy of a linkproto number (the hot path inlines const()s),
and hid.py of a hidframe number (it sits in RAM from boot, hidframe only with the HID link):
always under the home's name, and compared here. A copy of the USB IDs, a second HID report
framer, or a number in the firmware modules the issue named that is neither a compared copy nor
declared the firmware's own fails, found by name and by shape.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hidtools.hid import ReportDescriptor

from offhook import hidframe, linkproto, usbids
from offhook.firmware import SHARED, device_files
from tests.conftest import REPO_ROOT

HOST = REPO_ROOT / "host" / "offhook"
FIRMWARE = REPO_ROOT / "firmware"
SKIP_DIRS = {"node_modules", "_firmware", "__pycache__"}
NOT_LITERAL = object()

# Every const() in these firmware modules is a copy compared with its home or one of these,
# numbers the host never sees. A new protocol number takes linkproto's name (then it is
# compared); a new firmware-only number goes here.
FIRMWARE_OWN = {
    "offhook_fw/scenes.py": {
        *("_LAMP_HOOK", "_LAMP_MUTE", "_LAMP_HOLD", "_LAMP_ESCALATE", "_LAMP_STATUS", "NLAMPS"),
        # patterns: tests/firmware/test_scenes.py compares them with leds.py and hw/scenes.md
        *("_OFF", "_SOLID", "_DIM", "_BLINK", "_FAST", "_RING", "_BREATHE", "_WAITING", "_REMIND"),
        *("_WINK", "_PAIR", "_RAMP", "_NOTCONF", "_FLASH"),
        *("_GREEN", "_RED", "_AMBER", "_YELLOW", "_BLUE", "_MAGENTA", "_WHITE"),
    },
    "offhook_fw/gestures.py": {"_IDLE", "_DOWN", "_WAIT", "_DOWN2", "_HELD"},
    "offhook_fw/hid.py": {
        *("_ID_PHONE", "_ID_LEDS", "_ID_CONSUMER", "_HOOK", "_Q"),  # telephony reports (hw/hid.md)
        *("_EP_IN_FLAG", "_STAGE_SETUP", "_STAGE_ACK", "_RECIPIENT_MASK", "_RECIPIENT_INTERFACE"),  # USB
        *("_REQ_STANDARD_IN", "_REQ_CLASS_OUT", "_REQ_CONTROL_GET_DESCRIPTOR", "_REQ_CONTROL_SET_REPORT"),
        *("_REQ_CONTROL_SET_IDLE", "_DESC_REPORT_TYPE"),
    },
    "offhook_fw/hidlink.py": {"_TX", "_RX"},
    "offhook_fw/config.py": set(),
    "usb_setup.py": set(),
}
# hid.py's copies of hidframe numbers (compared below); anywhere else they are a second framer.
HIDFRAME_COPIES = {"offhook_fw/hid.py": {"_REPORT_LINK_OUT", "_REPORT_SIZE"}}
# Some copies the firmware keeps today: the comparison must find them (a check on the scan itself).
KNOWN_COPIES = {
    "offhook_fw/scenes.py": {"CALL_RINGING", "AGENT_BREAK", "STATE_MUTED", "STATE_UPDATING", "HID_LED_HOLD"},
    "offhook_fw/gestures.py": {"GESTURE_SHORT", "GESTURE_LONG", "GESTURE_DOUBLE"},
    "offhook_fw/hid.py": {"GESTURE_SHORT", "STATE_HID_SOFTPHONE"},
}


def _shared(module: object) -> dict[str, object]:
    return {k: v for k, v in vars(module).items() if k.isupper() and not k.startswith("_")}


LINKPROTO = _shared(linkproto)
# The recording bits are private in linkproto (no qstrs on the unit); the firmware copies them too.
LINKPROTO.update({k[1:]: v for k, v in vars(linkproto).items() if k.startswith("_STATE_")})
HIDFRAME = _shared(hidframe)


# ---------------------------------------------------------------- reading the trees


def _sources(*roots: Path) -> Iterator[tuple[str, ast.Module]]:
    """(path from the repository root, syntax tree) of every .py file."""
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if not SKIP_DIRS & set(path.parts):
                yield path.relative_to(REPO_ROOT).as_posix(), ast.parse(path.read_text(), str(path))


def _value(node: ast.expr) -> object:
    """The value of a literal, ``const(literal)`` or constant arithmetic; NOT_LITERAL otherwise."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "const" and node.args:
        node = node.args[0]
    allowed = (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Tuple, ast.List, ast.Set, ast.Load, ast.operator, ast.unaryop)
    if not all(isinstance(n, allowed) for n in ast.walk(node)):
        return NOT_LITERAL
    return eval(compile(ast.Expression(node), "<literal>", "eval"), {"__builtins__": {}})


def _assigned(tree: ast.Module) -> Iterator[tuple[str, ast.expr, int]]:
    """(name, value, line) of every assignment to a plain name, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value, node.lineno
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            yield node.target.id, node.value, node.lineno


def _consts(tree: ast.Module) -> dict[str, object]:
    """Module-level ``NAME = const(...)``."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id == "const":
                out.update({t.id: _value(node.value) for t in node.targets if isinstance(t, ast.Name)})
    return out


def _code_constants(tree: ast.Module) -> Iterator[tuple[object, int]]:
    """Every constant in code (docstrings and other bare strings left out), with its line."""
    bare = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in bare:
            yield node.value, node.lineno


@functools.cache
def _trees() -> tuple[tuple[str, ast.Module], ...]:
    return tuple(_sources(HOST, FIRMWARE))


def _firmware() -> dict[str, ast.Module]:
    """Firmware syntax trees by path under firmware/."""
    return {path.removeprefix("firmware/"): tree for path, tree in _trees() if path.startswith("firmware/")}


# ---------------------------------------------------------------- the scans


def usb_id_copies(path: str, tree: ast.Module) -> list[str]:
    """Where ``tree`` holds offhook's or stock MicroPython's USB IDs, by name or by shape. The
    simulated USBDevice stands in for MicroPython's C code: its built-in descriptor has the stock IDs."""
    ids = usbids.OFFHOOK_USB_IDS | usbids.DEV_USB_IDS
    if not path.startswith("firmware/sim/"):
        ids |= usbids.STOCK_MICROPYTHON_IDS
    vids = {vid for vid, _ in ids}
    pairs_le = [vid.to_bytes(2, "little") + pid.to_bytes(2, "little") for vid, pid in ids]
    pairs_text = [re.compile(rf"(?i)\b(0x)?{vid:04x}\b.{{0,40}}\b(0x)?{pid:04x}\b") for vid, pid in ids]
    found = []
    for name, value, line in _assigned(tree):
        pid = name.endswith("PID") and type(_value(value)) is int  # not a process ID's file
        if pid or re.fullmatch(r"_?(\w+_)?(VID|USB_IDS)", name):
            found.append(f"{path}:{line}: defines {name}")
    for value, line in _code_constants(tree):
        if type(value) is int and value in vids:
            found.append(f"{path}:{line}: USB vendor ID {value:#06x}")
        elif isinstance(value, bytes) and any(pair in value for pair in pairs_le):
            found.append(f"{path}:{line}: a VID/PID pair in bytes")
        elif isinstance(value, str) and any(p.search(value) for p in pairs_text):
            found.append(f"{path}:{line}: a VID:PID pair in text")
    return found


def hid_framers(path: str, tree: ast.Module) -> list[str]:
    """Where ``tree`` frames the link into HID reports itself, by name or by shape."""
    found = []
    distinct = {"REPORT_LINK_IN", "REPORT_LINK_OUT", "VENDOR_USAGE_PAGE", "VENDOR_USAGE", "ID_LINK_IN", "ID_LINK_OUT"}
    compared = HIDFRAME_COPIES.get(path.removeprefix("firmware/"), set())
    for name, value, line in _assigned(tree):
        literal, home = _value(value), name.lstrip("_")
        # hidframe's names: any number under a name only the link reports use; its value under the others
        if type(literal) is int and name not in compared and (home in distinct or HIDFRAME.get(home) == literal):
            found.append(f"{path}:{line}: defines {name} = {literal}")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and re.search(r"(?i)fragment|reassembl", node.name):
            found.append(f"{path}:{node.lineno}: defines {node.name}")
        if isinstance(node, ast.FunctionDef):
            # A report header written: [0], [1] and [2] of one buffer in one function, a seq in [2].
            stored: dict[str, dict[object, ast.AST]] = {}
            for sub in ast.walk(node):
                if isinstance(sub, ast.Assign) and len(sub.targets) == 1:
                    target = sub.targets[0]
                    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                        stored.setdefault(target.value.id, {})[_value(target.slice)] = sub.value
            for buf, items in stored.items():
                if 0 in items and 1 in items and "seq" in ast.dump(items.get(2, ast.Pass())).lower():
                    found.append(f"{path}:{node.lineno}: {node.name}() writes a [id][count][seq] header into {buf}")
        elif isinstance(node, ast.Subscript):
            # Link bytes read after the header: x[3 + k], x[3 : 3 + n].
            part = node.slice
            if isinstance(part, ast.Slice) and part.lower is not None and _value(part.lower) == hidframe.HEADER:
                part = part.upper
            if isinstance(part, ast.BinOp) and _value(part.left) == hidframe.HEADER:
                found.append(f"{path}:{node.lineno}: indexes past a {hidframe.HEADER}-byte header")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("bytes", "bytearray"):
            # bytes((report_id, len(piece), seq)): a header from a piece's length.
            parts = node.args[0].elts if node.args and isinstance(node.args[0], ast.Tuple | ast.List) else []
            if len(parts) >= 3 and isinstance(parts[1], ast.Call) and getattr(parts[1].func, "id", "") == "len":
                found.append(f"{path}:{node.lineno}: builds a report header")
    for value, line in _code_constants(tree):
        if type(value) is int and value in (hidframe.VENDOR_USAGE_PAGE, hidframe.CHUNK):
            found.append(f"{path}:{line}: the number {value:#x} (hidframe's)")
    return found


def _scan(scan: Callable[[str, ast.Module], list[str]], home: Path) -> list[str]:
    """What ``scan`` finds in host/offhook/ and firmware/, outside ``home``."""
    skip = home.relative_to(REPO_ROOT).as_posix()
    return [hit for path, tree in _trees() if path != skip for hit in scan(path, tree)]


# ---------------------------------------------------------------- linkproto numbers


def test_every_firmware_copy_of_a_linkproto_number_equals_it() -> None:
    """Anywhere in the firmware, a name linkproto defines (const() or private copy) has its value."""
    compared: dict[str, set[str]] = {}
    for path, tree in _firmware().items():
        for name, value, line in _assigned(tree):
            home = name.lstrip("_")
            literal = _value(value)
            if home in LINKPROTO and type(literal) is type(LINKPROTO[home]):  # bootsel's STATE is a path
                assert literal == LINKPROTO[home], (
                    f"firmware/{path}:{line}: {name} = {literal!r}, linkproto says {LINKPROTO[home]!r}"
                )
                compared.setdefault(path, set()).add(home)
    for path, names in KNOWN_COPIES.items():
        assert names <= compared.get(path, set()), (
            f"firmware/{path}: copies not found (renamed?): {names - compared.get(path, set())}"
        )
    # hid.py indexes its usage table by linkproto's button numbers
    hid = _firmware()["offhook_fw/hid.py"]
    usages = next(_value(v) for n, v, _ in _assigned(hid) if n == "_USAGES")
    assert isinstance(usages, tuple) and len(usages) == len(linkproto.BUTTON_NAMES)


@pytest.mark.parametrize("path", sorted(FIRMWARE_OWN))
def test_every_number_in_the_firmware_modules_is_a_copy_or_its_own(path: str) -> None:
    own = FIRMWARE_OWN[path] | HIDFRAME_COPIES.get(path, set())
    for name in _consts(_firmware()[path]):
        assert name.lstrip("_") in LINKPROTO or name in own, (
            f"firmware/{path}: {name} is neither named as in linkproto (then compared with it) "
            f"nor listed in FIRMWARE_OWN as the firmware's own"
        )
    assert own <= set(_consts(_firmware()[path])), f"FIRMWARE_OWN lists what firmware/{path} no longer has"


def test_config_takes_the_button_names_from_linkproto() -> None:
    imports = [n for n in ast.walk(_firmware()["offhook_fw/config.py"]) if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "linkproto" and "BUTTON_NAMES" in {a.name for a in n.names} for n in imports)


# ---------------------------------------------------------------- HID framing and USB IDs


def test_hid_copies_of_hidframe_numbers_and_the_descriptor_agree() -> None:
    hid = _firmware()["offhook_fw/hid.py"]
    consts = _consts(hid)
    for name in HIDFRAME_COPIES["offhook_fw/hid.py"]:
        assert consts[name] == HIDFRAME[name.lstrip("_")], name
    descriptor = next(_value(v) for n, v, _ in _assigned(hid) if n == "REPORT_DESCRIPTOR")
    assert isinstance(descriptor, bytes)
    rd = ReportDescriptor.from_bytes(list(descriptor))
    for reports, rid in ((rd.input_reports, hidframe.REPORT_LINK_IN), (rd.output_reports, hidframe.REPORT_LINK_OUT)):
        report = reports[rid]
        assert report.size == hidframe.REPORT_SIZE  # report ID + 63 bytes
        assert {f.usage_page >> 16 for f in report.fields} == {hidframe.VENDOR_USAGE_PAGE}
    assert hidframe.HEADER + hidframe.CHUNK == hidframe.REPORT_SIZE
    vendor = descriptor.index(b"\x06" + hidframe.VENDOR_USAGE_PAGE.to_bytes(2, "little"))
    assert descriptor[vendor + 3 : vendor + 5] == bytes((0x09, hidframe.VENDOR_USAGE))  # Usage, then the collection


def test_hid_report_framing_has_one_home() -> None:
    assert _scan(hid_framers, HOST / "hidframe.py") == [], "a second HID report framer"


def test_usb_ids_have_one_home() -> None:
    assert _scan(usb_id_copies, HOST / "usbids.py") == [], "a copy of the USB IDs"


def test_shared_modules_are_staged_from_their_one_home() -> None:
    files = device_files()
    for name in ("linkproto", "bundle", "hidframe", "usbids"):
        assert files[f"/lib/{name}.py"] == HOST / f"{name}.py" == SHARED[f"/lib/{name}.py"]
        assert not list(FIRMWARE.rglob(f"{name}.py")), f"firmware/ has its own {name}.py"


# ---------------------------------------------------------------- the scans find what they look for


OLD_FRAMERS = {
    "unit ring": """
_ID_LINK_IN = const(0x10)
def fill(self, buf):
    buf[0] = _ID_LINK_IN
    buf[1] = n
    buf[2] = self.txseq
""",
    "host pieces": """
def cut(data, seq):
    return bytes((0x11, len(piece), seq)) + piece
""",
    "host reader": """
def take(report):
    return bytes(report[3 : 3 + report[1]])
""",
    "chunk size": "PIECE = 61\n",
    "by name": "def reassemble(reports): pass\n",
    "usage page": "PAGE = 0xFFA0\n",
}
OLD_USB_IDS = {
    "host set": "OFFHOOK = {(0x1209, 0x0001)}\n",
    "by name": "DEV_USB_IDS = set()\n",
    "firmware": "VID = 4617\n",
    "descriptor bytes": 'DEVICE = b"\\x12\\x01\\x00\\x02\\xef\\x02\\x01\\x40\\x09\\x12\\x01\\x00"\n',
    "udev text": 'RULE = \'ATTRS{idVendor}=="1209", ATTRS{idProduct}=="0001"\'\n',
    "stock board": "RP2040 = (0x2E8A, 5)\n",
}


BAD = [(hid_framers, k, v) for k, v in OLD_FRAMERS.items()] + [(usb_id_copies, k, v) for k, v in OLD_USB_IDS.items()]


@pytest.mark.parametrize(
    ("scan", "source"), [(scan, source) for scan, _, source in BAD], ids=[f"{scan.__name__}: {k}" for scan, k, _ in BAD]
)
def test_the_scans_catch_a_copy(scan: Callable[[str, ast.Module], list[str]], source: str) -> None:
    assert scan("copy.py", ast.parse(source))
