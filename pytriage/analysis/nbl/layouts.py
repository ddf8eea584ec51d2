"""The structure layouts ``!nblwalk`` reads: from the dump's own symbols when they have them, else built in.

ndis.sys's PDB knows ``_NET_BUFFER_LIST`` and ``_NET_BUFFER``, nt's knows ``_MDL``, nwifi's knows its
DOT11 structures; any of them may be missing (no symbol server, a private build). The built-in layouts
(``symbols.builtin``: the public WDK declarations, proven with clang in the tests, and the nwifi layout
observed on 1803/1809) fill in, and every decoded structure says which source it used, because an
observed layout on another build is a guess the reader must be able to see.

Only the fields the walk uses are taken; a symbol layout lacking one of them is not used (the
built-in one is, with a note), so a renamed field can never shift a read silently.
"""

import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from pytriage.errors import PytriageError
from pytriage.symbols.builtin import builtin_layouts

# type -> (modules whose symbols may have it, names it may have there, fields the walk reads)
_WANTED: Dict[str, Tuple[Sequence[str], Sequence[str], Sequence[str]]] = {
    "_NET_BUFFER_LIST": (("ndis",), ("_NET_BUFFER_LIST",),
                         ("Next", "FirstNetBuffer", "Context", "ParentNetBufferList", "NdisPoolHandle", "SourceHandle",
                          "NblFlags", "ChildRefCount", "Flags", "Status")),
    "_NET_BUFFER": (("ndis",), ("_NET_BUFFER",),
                    ("Next", "CurrentMdl", "CurrentMdlOffset", "DataLength", "MdlChain", "DataOffset",
                     "NdisPoolHandle")),
    "_MDL": (("nt",), ("_MDL",), ("Next", "Size", "MdlFlags", "Process", "MappedSystemVa", "StartVa", "ByteCount",
                                  "ByteOffset")),
    "_NET_BUFFER_LIST_CONTEXT": (("ndis",), ("_NET_BUFFER_LIST_CONTEXT",), ("Next", "Size", "Offset")),
    "DOT11_PACKET_CONTEXT": (("nwifi",), ("DOT11_PACKET_CONTEXT", "_DOT11_PACKET_CONTEXT"),
                             ("pVElan", "pTOS", "CmplArray")),
    "DOT11_COMPLETION_STACK_ENTRY": (("nwifi",), ("DOT11_COMPLETION_STACK_ENTRY", "_DOT11_COMPLETION_STACK_ENTRY"),
                                     ("pRoutine", "pCtxt", "pCtxt2")),
}
_UNPACK = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


@dataclass(frozen=True)
class FieldSpot:
    offset: int
    size: int
    count: int = 1            # array element count (CmplArray), else 1


@dataclass(frozen=True)
class Layout:
    """The fields of one structure the walk reads, with where the layout came from."""
    name: str
    size: int
    fields: Dict[str, FieldSpot]
    source: str

    @property
    def span(self) -> int:
        """Bytes from the start that cover every field used: what one read fetches."""
        return max(f.offset + f.size * f.count for f in self.fields.values())

    def offset(self, name: str) -> int:
        return self.fields[name].offset

    def value(self, raw: bytes, name: str) -> int:
        spot = self.fields[name]
        return struct.unpack_from(_UNPACK[spot.size], raw, spot.offset)[0]

    def signed(self, raw: bytes, name: str) -> int:
        spot = self.fields[name]
        return struct.unpack_from(_UNPACK[spot.size].upper(), raw, spot.offset)[0]

    def fill(self, record: object, raw: bytes, attributes: Dict[str, str], signed: Sequence[str] = ()) -> None:
        """Set each ``record.<attribute>`` to the field ``attributes[attribute]`` decoded from ``raw``."""
        for attribute, name in attributes.items():
            setattr(record, attribute, self.signed(raw, name) if name in signed else self.value(raw, name))

    def to_json(self) -> dict:
        return {"size": self.size, "source": self.source,
                "fields": {n: {"offset": f.offset, "size": f.size} for n, f in self.fields.items()}}


def _find_field(layout, name: str, nested, depth: int = 0) -> Optional[Tuple[int, object]]:
    """(offset, Field) of ``name`` in ``layout`` or in its nested structs/unions (ndis declares ``Next``
    inside ``NetBufferListHeader.NetBufferListData``), found through ``nested(type name) -> layout``."""
    member = layout.field(name)
    if member is not None:
        return member.offset, member
    if depth >= 3:
        return None
    for candidate in layout.fields:
        ref = candidate.type
        if ref.kind not in ("struct", "union") or not ref.name:
            continue
        inner = nested(ref.name)
        if inner is None:
            continue
        found = _find_field(inner, name, nested, depth + 1)
        if found is not None:
            return candidate.offset + found[0], found[1]
    return None


def _from_type(name: str, layout, wanted: Sequence[str], source: str, nested) -> Optional[Layout]:
    fields: Dict[str, FieldSpot] = {}
    for field_name in wanted:
        found = _find_field(layout, field_name, nested)
        if found is None or found[1].is_bitfield:
            return None
        offset, member = found
        ref = member.type
        if ref.kind == "array" and ref.target is not None and ref.count:
            spot = FieldSpot(offset, ref.target.size, ref.count)
        else:
            spot = FieldSpot(offset, ref.size)
        if spot.count == 1 and spot.size not in _UNPACK:
            return None
        fields[field_name] = spot
    return Layout(name, layout.size, fields, source)


class NblLayouts:
    """Layouts for one command run, resolved on first use."""

    def __init__(self, symbolizer) -> None:
        self.symbolizer = symbolizer
        self._cache: Dict[str, Layout] = {}
        self.notes: List[str] = []

    def __getitem__(self, name: str) -> Layout:
        found = self._cache.get(name)
        if found is None:
            found = self._cache[name] = self._resolve(name)
        return found

    def _resolve(self, name: str) -> Layout:
        modules, aliases, wanted = _WANTED[name]
        for module in modules:
            def nested(type_name: str, module: str = module):
                try:
                    return self.symbolizer.type_layout("%s!%s" % (module, type_name))[0]
                except PytriageError:
                    return None

            for alias in aliases:
                try:
                    layout, source = self.symbolizer.type_layout("%s!%s" % (module, alias))
                except PytriageError:
                    continue
                made = _from_type(name, layout, wanted, source, nested)
                if made is not None:
                    return made
                self.notes.append("%s from %s lacks a field the walk reads; using the built-in layout" % (name, source))
        table = builtin_layouts()
        builtin = table.type_layout(name)
        made = _from_type(name, builtin, wanted, builtin.source, table.type_layout) if builtin is not None else None
        if made is None:                                 # our own table is wrong: a bug, not bad input
            raise AssertionError("built-in layout %s lacks a field the walk reads" % name)
        return made

    def sources(self) -> Dict[str, str]:
        return {name: layout.source for name, layout in sorted(self._cache.items())}

    def to_json(self) -> Dict[str, dict]:
        return {name: layout.to_json() for name, layout in sorted(self._cache.items())}
