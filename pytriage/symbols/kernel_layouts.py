"""Offsets the dump layer needs, taken from symbols instead of the built-in Windows 10 tables.

The dump layer (``pytriage.dump.modules``) works with plain ``{field: offset}`` dicts so that it does
not depend on the symbols layer; this module turns a ``StructLayout`` from a PDB or ISF table into
such a dict, and refuses a layout that lacks a field the walker needs (a clear error, not a default).
"""

from typing import Dict

from pytriage.errors import SymbolError
from pytriage.symbols.types import StructLayout

KLDR_FIELDS = ("InLoadOrderLinks", "DllBase", "SizeOfImage", "FullDllName", "BaseDllName", "CheckSum",
               "TimeDateStamp")


def kldr_offsets(layout: StructLayout) -> Dict[str, int]:
    """``_KLDR_DATA_TABLE_ENTRY`` -> the dict ``walk_loaded_modules`` takes (fields + ``size``)."""
    offsets: Dict[str, int] = {}
    for name in KLDR_FIELDS:
        member = layout.field(name)
        if member is None:
            raise SymbolError("%s (%s) has no %s field" % (layout.name, layout.source, name))
        offsets[name] = member.offset
    offsets["size"] = layout.size
    return offsets


def field_offsets(layout: StructLayout, names) -> Dict[str, int]:
    """``{name: offset}`` for the named fields; SymbolError naming the first missing one."""
    out = {}
    for name in names:
        member = layout.field(name)
        if member is None:
            raise SymbolError("%s (%s) has no %s field" % (layout.name, layout.source, name))
        out[name] = member.offset
    return out
