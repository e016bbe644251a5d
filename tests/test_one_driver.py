"""One host driver for a unit (offhook.unitlink): fails when a second link driver, HELLO payload,
HELLO parser or "expected offset" parser appears in host/offhook, by name or by shape, or when
anything reads a Link's private ``_pending`` (use ``Link.in_flight``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from offhook import linkproto as L

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "host" / "offhook"
DRIVER = "offhook/unitlink.py"
HELLO_KEYS = {"fw", "board", "serial", "caps", "proto", "slot", "health", "safe_mode", "boot"}


def _modules(base: Path) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(base.rglob("*.py")):
        if "node_modules" in path.parts or "_firmware" in path.parts:
            continue
        yield path.relative_to(base.parent).as_posix(), ast.parse(path.read_text(), str(path))


def _scopes(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of every class and function, and the module itself as ""."""
    yield "", tree

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.AST]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                yield name, child
                yield from walk(child, name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``scope`` outside its nested classes and functions."""
    for child in ast.iter_child_nodes(scope):
        if not isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield child
            yield from _own_nodes(child)


def _is_linkproto(node: ast.AST, name: str) -> bool:
    """``L.<name>`` / ``linkproto.<name>``."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == name
        and isinstance(node.value, ast.Name)
        and node.value.id in ("L", "linkproto")
    )


def _where(check) -> set[str]:  # type: ignore[no-untyped-def]
    """{"file:scope"} of every scope in host/offhook for which ``check(own nodes)`` holds."""
    found = set()
    for module, tree in _modules(HOST):
        if module == "offhook/linkproto.py":
            continue
        for scope, node in _scopes(tree):
            if check(list(_own_nodes(node))):
                found.add(f"{module}:{scope}")
    return found


def test_one_class_owns_a_link() -> None:
    """Whoever builds a linkproto.Link is a link driver: only UnitLink."""

    def builds_link(nodes: list[ast.AST]) -> bool:
        return any(isinstance(n, ast.Call) and _is_linkproto(n.func, "Link") for n in nodes)

    assert _where(builds_link) == {f"{DRIVER}:UnitLink.__init__"}


def test_one_host_hello_and_one_hello_exchange() -> None:
    """The host's HELLO payload is built once (a dict with "proto" and "host"), and only the driver
    sends a HELLO (L.HELLO appears nowhere else)."""

    def builds_hello(nodes: list[ast.AST]) -> bool:
        for n in nodes:
            if isinstance(n, ast.Dict):
                keys = {k.value for k in n.keys if isinstance(k, ast.Constant)}
                if {"proto", "host"} <= keys:
                    return True
        return False

    def names_hello(nodes: list[ast.AST]) -> bool:
        return any(_is_linkproto(n, "HELLO") for n in nodes)

    assert _where(builds_hello) == {f"{DRIVER}:host_hello"}
    assert {where.split(":")[0] for where in _where(names_hello)} == {DRIVER}


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def test_one_hello_parser_and_one_unit_info() -> None:
    """A function that reads a HELLO's keys (``fw`` and another, or two from something called
    hello) parses HELLOs: only UnitInfo.from_hello. And one class is called UnitInfo."""

    def reads_hello(nodes: list[ast.AST]) -> bool:
        keys, from_hello = set(), set()
        for n in nodes:
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args:
                key, source = n.args[0], n.func.value
            elif isinstance(n, ast.Subscript):
                key, source = n.slice, n.value
            else:
                continue
            if isinstance(key, ast.Constant) and key.value in HELLO_KEYS:
                keys.add(key.value)
                if "hello" in _name(source).lower():
                    from_hello.add(key.value)
        return ("fw" in keys and len(keys) >= 2) or len(from_hello) >= 2

    # floor's inventory reads slot and health from the raw HELLO, from before UnitInfo had them:
    # its owner is to use unit.slot and unit.health. Nothing else may join it.
    known = {"offhook/floor/client.py:inventory_of"}
    assert _where(reads_hello) - known == {f"{DRIVER}:UnitInfo.from_hello"}
    classes = {
        f"{module}:{node.name}"
        for module, tree in _modules(HOST)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name.endswith(("UnitInfo", "UnitLink", "Driver"))
    }
    assert classes == {f"{DRIVER}:UnitInfo", f"{DRIVER}:UnitLink"}

    from offhook.daemon import unit
    from offhook.fleet import flasher
    from offhook.unitlink import UnitInfo

    assert unit.UnitInfo is flasher.UnitInfo is UnitInfo


def test_expected_offset_is_parsed_in_one_place() -> None:
    def mentions(nodes: list[ast.AST]) -> bool:
        return any(isinstance(n, ast.Constant) and "expected offset" in str(n.value) for n in nodes)

    assert _where(mentions) == {"offhook/fleet/flasher.py:_expected_offset"}


def test_nobody_reads_a_links_pending_list() -> None:
    """``Link.in_flight(seq)`` answers from outside; ``_pending`` stays linkproto's (host and firmware)."""
    readers = {
        module
        for base in (HOST, ROOT / "firmware")
        for module, tree in _modules(base)
        if module != "offhook/linkproto.py"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr == "_pending"
        and ((isinstance(n.value, ast.Attribute) and n.value.attr == "link") or isinstance(n.value, ast.Name))
        and not (isinstance(n.value, ast.Name) and n.value.id == "self")
    }
    assert readers == set()
    link = L.Link()
    seq = link.send(L.STATE, L.encode_state(0, 0))
    assert link.in_flight(seq) and not link.in_flight(seq + 1)
    link.receive(L.encode_frame(L.ACK, 0, L.encode_ack(seq)))
    assert not link.in_flight(seq)


def test_only_the_driver_writes_to_a_transport() -> None:
    """Writes go through UnitLink's lock: no ``transport.write`` elsewhere (transports themselves aside)."""

    def writes(nodes: list[ast.AST]) -> bool:
        for n in nodes:
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "write":
                target = n.func.value
                if (isinstance(target, ast.Attribute) and target.attr == "transport") or (
                    isinstance(target, ast.Name) and target.id == "transport"
                ):
                    return True
        return False

    assert {where.split(":")[0] for where in _where(writes)} == {DRIVER}
