"""One type model for every type source: PDB (TPI), volatility3 ISF JSON and built-in layouts.

Why one model: analysis code asks ``type_layout("ndis!_NET_BUFFER_LIST")`` and must not care whether the
answer came from Microsoft's PDB, from an ISF table or from our built-in WDK-derived layouts. Each source
turns its own records into these frozen dataclasses; ``dt`` renders them, analysis reads offsets from them.

Base type names are the C names a PDB's simple types stand for (``unsigned long``, ``wchar_t`` ...);
``windbg_base_name`` maps them to what WinDbg's ``dt`` prints (``Uint4B``, ``Wchar``).
"""

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

# C base type name -> (size in bytes, WinDbg dt name). Sizes are for x64 Windows (LLP64).
BASE_TYPES: Dict[str, Tuple[int, str]] = {
    "void": (0, "Void"),
    "char": (1, "Char"),
    "signed char": (1, "Char"),
    "unsigned char": (1, "UChar"),
    "bool": (1, "Bool"),
    "short": (2, "Int2B"),
    "unsigned short": (2, "Uint2B"),
    "wchar_t": (2, "Wchar"),
    "char16_t": (2, "Wchar"),
    "int": (4, "Int4B"),
    "unsigned int": (4, "Uint4B"),
    "long": (4, "Int4B"),
    "unsigned long": (4, "Uint4B"),
    "char32_t": (4, "Uint4B"),
    "long long": (8, "Int8B"),
    "unsigned long long": (8, "Uint8B"),
    "__int128": (16, "Int16B"),
    "unsigned __int128": (16, "Uint16B"),
    "float": (4, "Float"),
    "double": (8, "Float"),
    "long double": (8, "Float"),
    "HRESULT": (4, "Int4B"),
}

TYPE_KINDS = ("base", "pointer", "array", "struct", "union", "class", "enum", "function", "bitfield")


@dataclass(frozen=True)
class TypeRef:
    """A reference to a type as a field or pointer sees it.

    ``kind`` is one of ``TYPE_KINDS``. For ``base`` ``name`` is the C base name; for ``struct``/``union``/
    ``class``/``enum`` it is the tag name (resolve it with the source's ``type_layout``); ``pointer`` and
    ``array`` carry ``target`` (pointee / element); ``array`` also ``count``. ``size`` is in bytes (0 when
    unknown, e.g. a pointer to an incomplete struct still has size 8, the struct itself may be 0).
    ``modifiers`` holds ``const``/``volatile``/``unaligned`` in a stable order.
    """
    kind: str
    name: str = ""
    size: int = 0
    target: Optional["TypeRef"] = None
    count: int = 0
    modifiers: Tuple[str, ...] = ()

    def describe(self) -> str:
        """C-like spelling for messages and JSON: ``_LIST_ENTRY *``, ``unsigned char[6]``."""
        if self.kind == "pointer":
            return "%s *" % (self.target.describe() if self.target else "void")
        if self.kind == "array":
            inner = self.target.describe() if self.target else "?"
            return "%s[%d]" % (inner, self.count)
        if self.kind == "function":
            return "function"
        if self.kind in ("struct", "union", "class", "enum"):
            return self.name or "<unnamed-%s>" % self.kind
        return self.name


@dataclass(frozen=True)
class Field:
    """A member at ``offset`` bytes from the start of its struct; bitfields also carry bit position/length."""
    name: str
    offset: int
    type: TypeRef
    bit_position: Optional[int] = None
    bit_length: Optional[int] = None

    @property
    def is_bitfield(self) -> bool:
        return self.bit_length is not None


@dataclass(frozen=True)
class StructLayout:
    """A struct, union or class with its members in declaration order.

    ``source`` says where the layout came from (``pdb:ndis.pdb``, ``isf:ntkrnlmp.pdb``, ``builtin:WDK
    10.0.19041 ndis/nbl.h``); ``builds`` is the Windows build range a built-in layout is known for
    (``"10240-"`` = 10240 and later; ``""`` when the layout comes from the image's own symbols).
    """
    name: str
    kind: str                     # "struct" | "union" | "class"
    size: int
    fields: Tuple[Field, ...]
    source: str = ""
    builds: str = ""

    def field(self, name: str) -> Optional[Field]:
        for member in self.fields:
            if member.name == name:
                return member
        return None

    def offset_of(self, name: str) -> int:
        member = self.field(name)
        if member is None:
            raise KeyError("%s has no field %s" % (self.name, name))
        return member.offset


@dataclass(frozen=True)
class EnumLayout:
    """An enum: underlying base type and its named constants (value -> name is what ``dt`` shows)."""
    name: str
    size: int
    base: str
    values: Tuple[Tuple[str, int], ...] = field(default_factory=tuple)
    source: str = ""

    def name_of(self, value: int) -> Optional[str]:
        for name, constant in self.values:
            if constant == value:
                return name
        return None


TypeLayout = Union[StructLayout, EnumLayout]


def windbg_base_name(name: str) -> str:
    """What WinDbg's ``dt`` prints for a C base type (``unsigned long`` -> ``Uint4B``)."""
    known = BASE_TYPES.get(name)
    return known[1] if known else name


def base_type(name: str) -> TypeRef:
    size = BASE_TYPES.get(name, (0, name))[0]
    return TypeRef(kind="base", name=name, size=size)
