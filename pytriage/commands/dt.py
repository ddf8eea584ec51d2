"""`pytriage dt DUMP TYPE [ADDR]`: a type's layout, or a structure in the dump, the way WinDbg's `dt` shows it.

The shapes are Microsoft's debugger engine's own, checked line by line against it in the dbgeng tier
(tests/oracle_dbgeng): ``   +0x008 Blink            : Ptr64 _LIST_ENTRY`` for layouts (a ``module!_TYPE``
title only when the type was named without its module); with an address, unsigned values 0-9 in
decimal and larger ones as ``0x`` hex whatever their size, ``0n`` decimal for signed, ``0y`` binary for
bitfields, ``_LIST_ENTRY [ Flink - Blink ]``, ``_UNICODE_STRING "text"``, pointers as the backtick-split
address followed by the pointee type (``Void``, ``_EPROCESS``), by the string for ``Ptr64 Wchar``/``Char``,
by ``_LIST_ENTRY [ Flink - Blink ]`` of the entry pointed to, and ``(null)`` for NULL; a struct array
as ``[N] _TYPE``, a scalar array as ``[N] first-element``. ``dt _LIST_ENTRY ADDR`` and
``dt _UNICODE_STRING ADDR`` start with the ``[ Flink - Blink ]`` / ``"text"`` summary line, as the
engine does. Unreadable memory shows ``??`` for that member only.
"""

import struct
from typing import Dict, List, Optional

from pytriage.commands.render import format_address, hex64
from pytriage.errors import MemoryReadError, PytriageError
from pytriage.symbols.types import EnumLayout, Field, StructLayout, TypeLayout, TypeRef, windbg_base_name

_NAME_WIDTH = 16        # the engine pads names to 16 and lets longer ones push the colon right
_SIGNED = {"char", "signed char", "short", "int", "long", "long long", "__int128", "wchar_t"}
_MAX_STRING = 512
_STRING_POINTEES = ("wchar_t", "char16_t", "char", "signed char", "unsigned char")


def type_spelling(ref: TypeRef) -> str:
    """WinDbg's type column: ``Uint4B``, ``Ptr64 _LIST_ENTRY``, ``[16] DOT11_COMPLETION_STACK_ENTRY``."""
    if ref.kind == "base":
        return windbg_base_name(ref.name)
    if ref.kind == "pointer":
        return "Ptr64 %s" % (type_spelling(ref.target) if ref.target is not None else "Void")
    if ref.kind == "array":
        return "[%d] %s" % (ref.count, type_spelling(ref.target) if ref.target is not None else "?")
    if ref.kind == "function":
        return "void"
    return ref.name or "<unnamed-tag>"


def _field_type_text(member: Field) -> str:
    if member.is_bitfield:
        return "Pos %d, %d Bit%s" % (member.bit_position, member.bit_length, "" if member.bit_length == 1 else "s")
    return type_spelling(member.type)


def layout_lines(title: Optional[str], layout: TypeLayout) -> List[str]:
    lines = [title] if title else []
    if isinstance(layout, EnumLayout):
        for name, value in layout.values:
            lines.append("   %s = 0n%d" % (name, value))
        return lines
    width = _NAME_WIDTH
    for member in layout.fields:
        lines.append("   +0x%03x %-*s : %s" % (member.offset, width, member.name, _field_type_text(member)))
    return lines


def unsigned_text(value: int) -> str:
    """The engine's unsigned spelling: 0-9 in decimal, anything larger as 0x hex (no padding)."""
    return "%d" % value if 0 <= value < 10 else "0x%x" % value


def pointer_text(value: int) -> str:
    return "0x" + format_address(value)


class _ValueReader:
    def __init__(self, target, symbolizer) -> None:
        self.target = target
        self.symbolizer = symbolizer

    def integer(self, va: int, size: int, signed: bool) -> int:
        return int.from_bytes(self.target.read(va, size), "little", signed=signed)

    def base_value(self, va: int, ref: TypeRef) -> str:
        size = ref.size or 1
        if ref.name in ("float", "double", "long double"):
            fmt = "<f" if size == 4 else "<d"
            return "%g" % struct.unpack(fmt, self.target.read(va, size))[0]
        signed = ref.name in _SIGNED
        value = self.integer(va, size, signed)
        if ref.name in ("char", "signed char", "unsigned char", "bool"):
            char = chr(value & 0xFF) if 0x20 <= (value & 0xFF) < 0x7F else ""
            return "%s '%s'" % (("0n%d" % value) if signed and value < 0 else "0x%x" % (value & 0xFF), char)
        if signed:
            return "0n%d" % value
        return unsigned_text(value)

    def c_string(self, va: int, wide: bool) -> str:
        """A NUL-terminated string at ``va`` (at most _MAX_STRING characters), quoted."""
        unit = 2 if wide else 1
        raw = b""
        while len(raw) < _MAX_STRING * unit:
            chunk_size = min(64 * unit, 0x1000 - ((va + len(raw)) & 0xFFF))
            try:
                chunk = self.target.read(va + len(raw), chunk_size)
            except MemoryReadError:
                break
            raw += chunk
            ends = [i for i in range(0, len(raw) - unit + 1, unit) if raw[i:i + unit] == b"\0" * unit]
            if ends:
                raw = raw[:ends[0]]
                break
        text = raw.decode("utf-16-le" if wide else "latin-1", "replace")
        return '"%s"' % "".join(c if c.isprintable() else "." for c in text)

    def unicode_string(self, va: int) -> str:
        length = self.integer(va, 2, False)
        buffer = self.integer(va + 8, 8, False)
        if not buffer or not length:
            return '""'
        try:
            raw = self.target.read(buffer, min(length, _MAX_STRING * 2) & ~1)
        except MemoryReadError:
            return '"??"'
        text = raw.decode("utf-16-le", "replace")
        return '"%s"' % "".join(c if c.isprintable() else "." for c in text)

    def list_entry(self, va: int) -> str:
        return "_LIST_ENTRY %s" % self.list_summary(va)

    def list_summary(self, va: int) -> str:
        return "[ %s - %s ]" % (pointer_text(self.integer(va, 8, False)), pointer_text(self.integer(va + 8, 8, False)))

    def member_value(self, va: int, member: Field) -> str:
        ref = member.type
        if member.is_bitfield:
            raw = self.integer(va, ref.size or 4, False)
            value = (raw >> member.bit_position) & ((1 << member.bit_length) - 1)
            return "0y" + format(value, "0%db" % member.bit_length)
        return self.value(va, ref)

    def value(self, va: int, ref: TypeRef) -> str:
        if ref.kind == "base":
            return self.base_value(va, ref)
        if ref.kind == "pointer":
            pointer = self.integer(va, 8, False)
            if pointer == 0:
                return "(null)"
            pointee = ref.target
            if pointee is not None and pointee.kind == "base" and pointee.name in _STRING_POINTEES:
                return "%s  %s" % (pointer_text(pointer), self.c_string(pointer, pointee.size == 2))
            if pointee is not None and pointee.name == "_LIST_ENTRY":
                try:
                    return "%s %s" % (pointer_text(pointer), self.list_entry(pointer))
                except MemoryReadError:
                    pass
            return "%s %s" % (pointer_text(pointer), type_spelling(pointee) if pointee is not None else "Void")
        if ref.kind == "array":
            element = ref.target
            if element is None or ref.count == 0 or element.kind in ("struct", "union", "class"):
                return "[%d] %s" % (ref.count, type_spelling(element) if element else "?")
            return "[%d] %s" % (ref.count, self.value(va, element))
        if ref.kind == "enum":
            value = self.integer(va, ref.size or 4, True)
            name = None
            if self.symbolizer is not None:
                try:
                    layout = self.symbolizer.type_layout(ref.name)[0]
                    name = layout.name_of(value) if isinstance(layout, EnumLayout) else None
                except PytriageError:     # an enum we cannot name is still shown by value
                    name = None
            return "0n%d%s" % (value, " ( %s )" % name if name else "")
        if ref.name == "_LIST_ENTRY":
            return self.list_entry(va)
        if ref.name == "_UNICODE_STRING":
            return "_UNICODE_STRING %s" % self.unicode_string(va)
        return ref.name or "<unnamed-tag>"


def value_lines(title: Optional[str], layout: StructLayout, target, address: int, symbolizer=None) -> List[str]:
    reader = _ValueReader(target, symbolizer)
    lines = [title] if title else []
    try:
        if layout.name == "_LIST_ENTRY":
            lines.append(" " + reader.list_summary(address))
        elif layout.name == "_UNICODE_STRING":
            lines.append(" " + reader.unicode_string(address))
    except MemoryReadError:
        pass
    width = _NAME_WIDTH
    for member in layout.fields:
        try:
            text = reader.member_value(address + member.offset, member)
        except MemoryReadError:
            text = "??"
        lines.append("   +0x%03x %-*s : %s" % (member.offset, width, member.name, text))
    return lines


def layout_to_json(layout: TypeLayout, where: str) -> Dict[str, object]:
    if isinstance(layout, EnumLayout):
        return {"name": layout.name, "kind": "enum", "size": layout.size, "source": where,
                "values": [{"name": n, "value": v} for n, v in layout.values]}
    return {
        "name": layout.name, "kind": layout.kind, "size": layout.size, "source": where,
        "builds": layout.builds or None,
        "fields": [{"name": f.name, "offset": f.offset, "type": f.type.describe(),
                    "windbg_type": _field_type_text(f), "bit_position": f.bit_position,
                    "bit_length": f.bit_length} for f in layout.fields],
    }


def values_to_json(layout: StructLayout, target, address: int, symbolizer=None) -> List[Dict[str, object]]:
    reader = _ValueReader(target, symbolizer)
    out: List[Dict[str, object]] = []
    for member in layout.fields:
        entry: Dict[str, object] = {"name": member.name, "address": hex64(address + member.offset)}
        try:
            entry["text"] = reader.member_value(address + member.offset, member)
            raw: Optional[int] = None
            if member.is_bitfield:
                whole = reader.integer(address + member.offset, member.type.size or 4, False)
                raw = (whole >> member.bit_position) & ((1 << member.bit_length) - 1)
            elif member.type.kind in ("base", "pointer", "enum") and 0 < member.type.size <= 8:
                raw = reader.integer(address + member.offset, member.type.size, False)
            entry["value"] = None if raw is None else "0x%x" % raw
        except MemoryReadError as exc:
            entry["text"], entry["value"], entry["error"] = "??", None, str(exc)
        out.append(entry)
    return out
