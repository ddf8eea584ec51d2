"""Built-in x64 layouts for the structures the network-stack analysis reads when no PDB says otherwise.

Why built in: ndis.sys and nwifi.sys PDBs are not always at hand (air-gapped sites, private builds), yet
``!nblwalk`` must still walk NET_BUFFER_LISTs. Two kinds of layout live here, and each says which:

* ``documented``: transcribed from the public WDK declarations (wdm.h, ndis/nbl.h). Their offsets are
  verified in the tests by compiling the same public declarations with clang for
  ``x86_64-pc-windows-msvc`` and reading clang's record layout, and (for _MDL, _LIST_ENTRY and
  _POOL_HEADER) against the real ntkrnlmp 19041 symbols in the corpus ISF.
* ``observed``: undocumented nwifi structures known only from real crash dumps (DESIGN 8, seed 004:
  Windows 10 1803/1809 x64). Only the fields that were seen are declared; gaps are unknown bytes.

A PDB for the image always wins over these (the symbolizer asks the image's own symbols first).
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

from pytriage.symbols.source import SymbolSource
from pytriage.symbols.types import BASE_TYPES, Field, StructLayout, TypeLayout, TypeRef

_WDK = "builtin:documented (public WDK %s)"
_OBSERVED = "builtin:observed (nwifi, Windows 10 1803/1809 x64 crash dumps, DESIGN 8)"

# (name, kind, size, source, builds, fields); a field is (name, offset, type spelling[, bit pos, bit len]).
# Type spellings: a C base name, "*T" pointer to T, "[N]T" array of N T, anything else a struct/union tag.
_DECLS: Sequence[Tuple[str, str, int, str, str, Sequence[tuple]]] = (
    ("_LIST_ENTRY", "struct", 0x10, _WDK % "wdm.h", "2600-", (
        ("Flink", 0x0, "*_LIST_ENTRY"),
        ("Blink", 0x8, "*_LIST_ENTRY"))),
    ("_SINGLE_LIST_ENTRY", "struct", 0x8, _WDK % "wdm.h", "2600-", (
        ("Next", 0x0, "*_SINGLE_LIST_ENTRY"),)),
    ("_MDL", "struct", 0x30, _WDK % "wdm.h", "10240-", (
        ("Next", 0x0, "*_MDL"),
        ("Size", 0x8, "short"),
        ("MdlFlags", 0xA, "short"),
        ("AllocationProcessorNumber", 0xC, "unsigned short"),
        ("Reserved", 0xE, "unsigned short"),
        ("Process", 0x10, "*_EPROCESS"),
        ("MappedSystemVa", 0x18, "*void"),
        ("StartVa", 0x20, "*void"),
        ("ByteCount", 0x28, "unsigned long"),
        ("ByteOffset", 0x2C, "unsigned long"))),
    # The classic 16-byte pool header (DESIGN 7): four 8-bit fields packed in the first 4 bytes.
    ("_POOL_HEADER", "struct", 0x10, _WDK % "ntddk.h-era declaration, as ntkrnlmp 19041 symbols show it",
     "10240-", (
        ("PreviousSize", 0x0, "unsigned short", 0, 8),
        ("PoolIndex", 0x0, "unsigned short", 8, 8),
        ("BlockSize", 0x2, "unsigned short", 0, 8),
        ("PoolType", 0x2, "unsigned short", 8, 8),
        ("Ulong1", 0x0, "unsigned long"),
        ("PoolTag", 0x4, "unsigned long"),
        ("ProcessBilled", 0x8, "*_EPROCESS"),
        ("AllocatorBackTraceIndex", 0x8, "unsigned short"),
        ("PoolTagHash", 0xA, "unsigned short"))),
    ("_NET_BUFFER", "struct", 0xB0, _WDK % "ndis/nbl.h", "6000-", (
        ("Next", 0x0, "*_NET_BUFFER"),
        ("CurrentMdl", 0x8, "*_MDL"),
        ("CurrentMdlOffset", 0x10, "unsigned long"),
        ("DataLength", 0x18, "unsigned long"),
        ("stDataLength", 0x18, "unsigned long long"),
        ("MdlChain", 0x20, "*_MDL"),
        ("DataOffset", 0x28, "unsigned long"),
        ("ChecksumBias", 0x30, "unsigned short"),
        ("Reserved", 0x32, "unsigned short"),
        ("NdisPoolHandle", 0x38, "*void"),
        ("NdisReserved", 0x40, "[2]*void"),
        ("ProtocolReserved", 0x50, "[6]*void"),
        ("MiniportReserved", 0x80, "[4]*void"),
        ("DataPhysicalAddress", 0xA0, "long long"),
        ("SharedMemoryInfo", 0xA8, "*void"),
        ("ScatterGatherList", 0xA8, "*void"))),
    # NetBufferListInfo's length is MaxNetBufferListInfo, which grows with the WDK (27 slots for x64
    # miniports in recent kits; ndis.sys reserves more behind them). Only its start offset is relied on.
    # sizeof is 0x170, not 0x90 + 27 * 8: the 16-byte-aligned members pad the struct to 16.
    ("_NET_BUFFER_LIST", "struct", 0x170, _WDK % "ndis/nbl.h, ndis/nblinfo.h", "6000-", (
        ("Next", 0x0, "*_NET_BUFFER_LIST"),
        ("FirstNetBuffer", 0x8, "*_NET_BUFFER"),
        ("Context", 0x10, "*_NET_BUFFER_LIST_CONTEXT"),
        ("ParentNetBufferList", 0x18, "*_NET_BUFFER_LIST"),
        ("NdisPoolHandle", 0x20, "*void"),
        ("NdisReserved", 0x30, "[2]*void"),
        ("ProtocolReserved", 0x40, "[4]*void"),
        ("MiniportReserved", 0x60, "[2]*void"),
        ("Scratch", 0x70, "*void"),
        ("SourceHandle", 0x78, "*void"),
        ("NblFlags", 0x80, "unsigned long"),
        ("ChildRefCount", 0x84, "long"),
        ("Flags", 0x88, "unsigned long"),
        ("Status", 0x8C, "long"),
        ("NdisReserved2", 0x8C, "unsigned long"),
        ("NetBufferListInfo", 0x90, "[27]*void"))),
    ("_NET_BUFFER_LIST_CONTEXT", "struct", 0x10, _WDK % "ndis/nbl.h", "6000-", (
        ("Next", 0x0, "*_NET_BUFFER_LIST_CONTEXT"),
        ("Size", 0x8, "unsigned short"),
        ("Offset", 0xA, "unsigned short"),
        ("ContextData", 0x10, "[0]unsigned char"))),
    ("DOT11_COMPLETION_STACK_ENTRY", "struct", 0x18, _OBSERVED, "17134-17763", (
        ("pRoutine", 0x0, "*void"),
        ("pCtxt", 0x8, "*void"),
        ("pCtxt2", 0x10, "*void"))),
    ("DOT11_PACKET_CONTEXT", "struct", 0x1B8, _OBSERVED, "17134-17763", (
        ("pVElan", 0x0, "*void"),
        ("pvEthernetMediaSpecificInfo", 0x18, "*void"),
        ("bExcludeWEP", 0x20, "unsigned char"),
        ("bDefaultKeyAllowed", 0x24, "unsigned char"),
        ("pTOS", 0x28, "*DOT11_COMPLETION_STACK_ENTRY"),
        ("CmplArray", 0x30, "[16]DOT11_COMPLETION_STACK_ENTRY"),
        ("pExtension", 0x1B0, "*void"))),
)

_ARRAY = re.compile(r"^\[(\d+)\](.+)$")


class BuiltinLayouts(SymbolSource):
    """The built-in table as a ``SymbolSource`` (types only, no symbols)."""

    kind = "builtin"
    origin = "built-in layouts"

    def __init__(self) -> None:
        self._sizes = {name: (kind, size) for name, kind, size, _, _, _ in _DECLS}
        self._layouts: Dict[str, StructLayout] = {}
        for name, kind, size, source, builds, fields in _DECLS:
            members: List[Field] = []
            for decl in fields:
                bit_position: Optional[int] = decl[3] if len(decl) > 3 else None
                bit_length: Optional[int] = decl[4] if len(decl) > 4 else None
                members.append(Field(decl[0], decl[1], self._ref(decl[2]), bit_position, bit_length))
            self._layouts[name] = StructLayout(name, kind, size, tuple(members), source, builds)

    def _ref(self, spelling: str) -> TypeRef:
        match = _ARRAY.match(spelling)
        if match:
            element = self._ref(match.group(2))
            count = int(match.group(1))
            return TypeRef("array", size=count * element.size, target=element, count=count)
        if spelling.startswith("*"):
            return TypeRef("pointer", size=8, target=self._ref(spelling[1:]))
        if spelling in BASE_TYPES:
            return TypeRef("base", spelling, BASE_TYPES[spelling][0])
        kind, size = self._sizes.get(spelling, ("struct", 0))
        return TypeRef(kind, spelling, size)

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        return self._layouts.get(name)

    def type_names(self) -> List[str]:
        return sorted(self._layouts)


_TABLE: Optional[BuiltinLayouts] = None


def builtin_layouts() -> BuiltinLayouts:
    global _TABLE
    if _TABLE is None:
        _TABLE = BuiltinLayouts()
    return _TABLE
