"""The HID report descriptor: hw/ bytes == firmware bytes; hid-tools parses exactly the documented
usages, report IDs and sizes; WebHID accepts it (Chromium's rules)."""

from __future__ import annotations

import re

from hidtools.hid import ReportDescriptor

from tests.hid.usbhost import HID_MD, descriptor_bytes

# Chromium WebHID: the FIDO page is blocklisted; these Generic Desktop usages and the Keyboard
# page are "protected" collections a web page never gets (hid_blocklist / IsProtected).
FIDO_PAGE = 0xF1D0
KEYBOARD_PAGE = 0x07
# hid-tools' names where the HID Usage Tables' (used in hw/hid.md) differ.
HIDTOOLS_NAMES = {"Volume Increment": "Volume Up", "Volume Decrement": "Volume Down"}
PROTECTED_DESKTOP = {0x01, 0x02, 0x06, 0x07} | set(range(0x80, 0x94)) | set(range(0xA0, 0xA9))


def _table(title: str) -> list[list[str]]:
    text = HID_MD.read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def _firmware_descriptor() -> bytes:
    """REPORT_DESCRIPTOR as the firmware source spells it (the VM test checks it at run time too)."""
    from offhook.firmware import firmware_root

    source = (firmware_root() / "offhook_fw" / "hid.py").read_text()
    literal = source.split("REPORT_DESCRIPTOR = (", 1)[1].split("\n)", 1)[0]
    return b"".join(bytes.fromhex(m.replace("\\x", "")) for m in re.findall(r'b"((?:\\x[0-9a-f]{2})+)"', literal))


def test_firmware_uses_exactly_the_hw_bytes() -> None:
    assert _firmware_descriptor() == descriptor_bytes()
    assert len(descriptor_bytes()) == 121


def _parsed() -> ReportDescriptor:
    return ReportDescriptor.from_bytes(list(descriptor_bytes()))


def test_reports_and_sizes_are_the_documented_ones() -> None:
    rd = _parsed()
    found = set()
    for kind, reports in (("input", rd.input_reports), ("output", rd.output_reports), ("feature", rd.feature_reports)):
        for rid, report in reports.items():
            found.add((rid, kind, report.size))
    documented = {(int(r[0]), r[1], int(r[2])) for r in _table("Reports")}
    assert found == documented
    assert all(size <= 64 for _, _, size in found)  # one full-speed packet each


def test_usages_are_exactly_the_documented_ones() -> None:
    rd = _parsed()
    spans: dict[tuple[int, str, int, int], list[int]] = {}
    for kind, reports in (("input", rd.input_reports), ("output", rd.output_reports)):
        for rid, report in reports.items():
            bit = 0
            for f in report.fields:  # hid-tools splits a 63-byte field into 63 one-byte fields
                if not f.is_const:
                    span = spans.setdefault((rid, kind, f.usage_page >> 16, f.usage & 0xFFFF), [bit, bit])
                    span[1] = bit + f.size * f.count - 1
                bit += f.size * f.count
    found = {(*key, str(a) if a == b else f"{a}..{b}") for key, (a, b) in spans.items()}
    documented = {(int(r[0]), r[1], int(r[2], 16), int(r[3], 16), r[5]) for r in _table("Usages")}
    assert found == documented
    # hid-tools names the standard usages as the table does
    names = {
        (rid, f.usage & 0xFFFF): f.usage_name
        for reports in (rd.input_reports, rd.output_reports)
        for rid, report in reports.items()
        for f in report.fields
        if not f.is_const and f.usage_page >> 16 < 0xFF00
    }
    for row in _table("Usages"):
        if int(row[2], 16) < 0xFF00:
            assert names[(int(row[0]), int(row[3], 16))] == HIDTOOLS_NAMES.get(row[4], row[4])


def test_hook_switch_is_absolute_and_toggles_are_relative() -> None:
    phone = _parsed().input_reports[1]
    flags = {f.usage & 0xFFFF: f.type for f in phone.fields if not f.is_const}
    assert flags[0x20] & 0x04 == 0  # Hook Switch: Input(Data,Var,Abs)
    assert all(flags[u] & 0x04 for u in (0x2F, 0x21, 0x24))  # Phone Mute, Flash, Redial: Rel


def _top_level_collections(data: bytes) -> list[tuple[int, int]]:
    """(usage page, usage) of each top-level collection, by walking the short items."""
    found, depth, page, usage, i = [], 0, 0, 0, 0
    while i < len(data):
        prefix = data[i]
        size = (0, 1, 2, 4)[prefix & 3]
        value = int.from_bytes(data[i + 1 : i + 1 + size], "little")
        tag = prefix & 0xFC
        if tag == 0x04:
            page = value
        elif tag == 0x08:
            usage = value
        elif tag == 0xA0:
            if depth == 0:
                found.append((page, usage))
            depth += 1
        elif tag == 0xC0:
            depth -= 1
        i += 1 + size
    return found


def test_webhid_rules() -> None:
    data = descriptor_bytes()
    tops = _top_level_collections(data)
    assert tops == [(0x0B, 0x05), (0x0C, 0x01), (0xFFA0, 0x01)]
    pages = [p for p, _ in tops]
    assert len(pages) == len(set(pages)), "one top-level collection per usage page"
    rd = _parsed()
    every = [r for reports in (rd.input_reports, rd.output_reports, rd.feature_reports) for r in reports.values()]
    assert every and all(r.numbered and r.report_ID >= 1 for r in every), "every report has an ID"
    for page, usage in tops:
        assert page not in (FIDO_PAGE, KEYBOARD_PAGE)
        assert not (page == 0x01 and usage in PROTECTED_DESKTOP)
    for r in every:
        for f in r.fields:
            assert f.usage_page >> 16 not in (FIDO_PAGE, KEYBOARD_PAGE, 0x01)
