"""The DBI stream (stream 3): where the other streams are, and how segment:offset becomes an RVA.

Why we need it: symbol records give addresses as ``segment:offset`` (1-based section number, offset in
the section). The DBI header names the symbol record, publics and globals streams, and its optional
debug header names the stream that holds a copy of the image's ``IMAGE_SECTION_HEADER`` table, which
turns ``segment:offset`` into an RVA without the image itself. Binaries rearranged after linking (BBT/
OMAP, as many Windows 7-era system DLLs are) also carry the original section headers and an "OMAP from
source" table mapping pre-optimisation RVAs to final ones; we apply it, as the debugger does.

Layout (llvm.org/docs/PDB/DbiStream.html): a 64-byte header, then seven substreams in this order:
module info, section contributions, section map, file info, type server map, EC, optional debug header.
The module info substream is walked only when ``modules()`` is asked for.
"""

import bisect
import struct
import sys
from array import array
from typing import List, NamedTuple, Optional, Sequence, Tuple

from pytriage.errors import SymbolError
from pytriage.symbols.pdb.msf import NIL_STREAM_INDEX, MsfFile, MsfStream

_HEADER = struct.Struct("<iIIHHHHHHiiiiiIiiHHI")
_SECTION = struct.Struct("<8sIIIIIIHHI")
_MODINFO_FIXED = struct.Struct("<I28sHHIIIHHIII")

# Slots of the optional debug header (an array of u16 stream numbers).
DBG_FPO = 0
DBG_EXCEPTION = 1
DBG_FIXUP = 2
DBG_OMAP_TO_SRC = 3
DBG_OMAP_FROM_SRC = 4
DBG_SECTION_HEADERS = 5
DBG_TOKEN_RID_MAP = 6
DBG_XDATA = 7
DBG_PDATA = 8
DBG_NEW_FPO = 9
DBG_ORIGINAL_SECTION_HEADERS = 10

_MAX_SECTIONS = 0xFFFF


class SectionHeader(NamedTuple):
    """An ``IMAGE_SECTION_HEADER`` as copied into the PDB by the linker."""
    name: str
    virtual_size: int
    virtual_address: int
    size_of_raw_data: int
    pointer_to_raw_data: int
    characteristics: int


def section_headers_from_bytes(data: bytes) -> List[SectionHeader]:
    """A table of 40-byte ``IMAGE_SECTION_HEADER``s (a PE's, or the PDB's copy of it); ``data`` must be a
    whole number of them (``struct.error`` otherwise)."""
    return [SectionHeader(name.rstrip(b"\0").decode("latin-1"), vsize, va, raw_size, raw_ptr, flags)
            for (name, vsize, va, raw_size, raw_ptr, _relocs, _lines, _nrelocs, _nlines,
                 flags) in _SECTION.iter_unpack(data)]


class ModuleInfo(NamedTuple):
    """One compiland (object file) of the DBI module list."""
    index: int
    name: str
    object_name: str
    symbol_stream: Optional[int]     # None when private symbols were stripped (0xFFFF)
    symbol_bytes: int


class DbiStream:
    """Header facts of the DBI stream, with section headers, OMAP and modules loaded on first use."""

    def __init__(self, msf: MsfFile, stream: MsfStream) -> None:
        self._msf = msf
        self._stream = stream
        if stream.size < _HEADER.size:
            raise stream.error(0, "DBI stream of %d bytes is shorter than its 64-byte header" % stream.size)
        (signature, self.version, self.age, global_stream, self.build_number, public_stream, self.pdb_dll_version,
         symrec_stream, _rbld, modi_size, contrib_size, secmap_size, fileinfo_size, tsmap_size, _mfc_index,
         dbg_size, ec_size, self.flags, self.machine, _pad) = stream.unpack(_HEADER, 0)
        if signature != -1:
            raise stream.error(0, "DBI version signature %d (expected -1; pre-VC 4.1 DBI is not supported)"
                               % signature)
        sizes = (modi_size, contrib_size, secmap_size, fileinfo_size, tsmap_size, ec_size, dbg_size)
        names = ("module info", "section contribution", "section map", "file info", "type server map", "EC",
                 "optional debug header")
        offset = _HEADER.size
        self._substreams: List[Tuple[int, int]] = []
        for size, name in zip(sizes, names):
            if size < 0 or offset + size > stream.size:
                raise stream.error(offset, "%s substream of %d bytes does not fit in the %d-byte stream"
                                   % (name, size, stream.size))
            self._substreams.append((offset, size))
            offset += size
        self.global_stream = self._stream_number(global_stream)
        self.public_stream = self._stream_number(public_stream)
        self.symbol_record_stream = self._stream_number(symrec_stream)
        dbg_offset, dbg_size = self._substreams[6]
        count = dbg_size // 2
        self._debug_streams: Tuple[int, ...] = struct.unpack("<%dH" % count, stream.read(dbg_offset, 2 * count))
        self._sections: Optional[List[SectionHeader]] = None
        self._original_sections: Optional[List[SectionHeader]] = None
        self._omap: Optional[Tuple[Sequence[int], Sequence[int]]] = None
        self._omap_loaded = False
        self._modules: Optional[List[ModuleInfo]] = None

    @staticmethod
    def _stream_number(value: int) -> Optional[int]:
        return None if value == NIL_STREAM_INDEX else value

    @property
    def stripped(self) -> bool:
        """True for a public (stripped) PDB: no private symbols, no line numbers."""
        return bool(self.flags & 0x2)

    def debug_stream(self, slot: int) -> Optional[int]:
        """Stream number in slot ``slot`` (``DBG_*``) of the optional debug header, or None."""
        if slot >= len(self._debug_streams):
            return None
        number = self._debug_streams[slot]
        if number == NIL_STREAM_INDEX or not self._msf.has_stream(number):
            return None
        return number

    # -- sections --------------------------------------------------------------------------------------------
    def _read_sections(self, slot: int, label: str) -> List[SectionHeader]:
        number = self.debug_stream(slot)
        if number is None:
            return []
        stream = self._msf.stream(number, label)
        if stream.size % _SECTION.size or stream.size // _SECTION.size > _MAX_SECTIONS:
            raise stream.error(0, "%d bytes is not a whole number of 40-byte section headers" % stream.size)
        return section_headers_from_bytes(stream.read_all())

    @property
    def sections(self) -> List[SectionHeader]:
        """The image's section headers (final layout); empty when the PDB has none."""
        if self._sections is None:
            self._sections = self._read_sections(DBG_SECTION_HEADERS, "section header stream")
        return self._sections

    @property
    def original_sections(self) -> List[SectionHeader]:
        """Section headers before post-link optimisation (only in OMAP'd PDBs)."""
        if self._original_sections is None:
            self._original_sections = self._read_sections(DBG_ORIGINAL_SECTION_HEADERS,
                                                          "original section header stream")
        return self._original_sections

    def _omap_from_source(self) -> Optional[Tuple[Sequence[int], Sequence[int]]]:
        if not self._omap_loaded:
            self._omap_loaded = True
            number = self.debug_stream(DBG_OMAP_FROM_SRC)
            if number is not None:
                stream = self._msf.stream(number, "OMAP-from-source stream")
                if stream.size % 8:
                    raise stream.error(0, "%d bytes is not a whole number of 8-byte OMAP entries" % stream.size)
                flat = array("I", stream.read_all())      # 8 bytes per entry, not two Python ints
                if sys.byteorder == "big":
                    flat.byteswap()
                sources, targets = flat[0::2], flat[1::2]
                if any(sources[i] > sources[i + 1] for i in range(len(sources) - 1)):
                    raise stream.error(0, "OMAP entries are not sorted by source address")
                self._omap = (sources, targets)
        return self._omap

    @property
    def has_omap(self) -> bool:
        return self._omap_from_source() is not None

    def map_rva(self, rva: int) -> Optional[int]:
        """An RVA of the pre-optimisation image -> the final image's RVA (None: code removed)."""
        omap = self._omap_from_source()
        if omap is None:
            return rva
        sources, targets = omap
        pos = bisect.bisect_right(sources, rva) - 1
        if pos < 0 or targets[pos] == 0:
            return None
        return targets[pos] + (rva - sources[pos])

    def address_sections(self) -> List[SectionHeader]:
        """The section table that ``segment`` numbers in symbol records index into."""
        if self.has_omap and self.original_sections:
            return self.original_sections
        return self.sections

    def rva(self, segment: int, offset: int) -> Optional[int]:
        """``segment:offset`` of a symbol record -> RVA in the final image (None when not addressable)."""
        sections = self.address_sections()
        if segment < 1 or segment > len(sections):
            return None
        return self.map_rva(sections[segment - 1].virtual_address + offset)

    # -- modules ---------------------------------------------------------------------------------------------
    def modules(self) -> List[ModuleInfo]:
        """The module (compiland) list, parsed on first call."""
        if self._modules is None:
            offset, size = self._substreams[0]
            data = self._stream.read(offset, size)
            modules: List[ModuleInfo] = []
            pos = 0
            while pos < size:
                if pos + _MODINFO_FIXED.size > size:
                    raise self._stream.error(offset + pos, "module info record %d truncated" % len(modules))
                fields = _MODINFO_FIXED.unpack_from(data, pos)
                stream_number, sym_bytes = fields[3], fields[4]
                pos += _MODINFO_FIXED.size
                names = []
                for _ in range(2):
                    end = data.find(b"\0", pos, size)
                    if end < 0:
                        raise self._stream.error(offset + pos, "module info record %d: name without NUL"
                                                 % len(modules))
                    names.append(data[pos:end].decode("utf-8", "replace"))
                    pos = end + 1
                pos = (pos + 3) & ~3
                modules.append(ModuleInfo(len(modules), names[0], names[1],
                                          self._stream_number(stream_number), sym_bytes))
            self._modules = modules
        return self._modules

    def module_stream(self, module_index: int) -> Tuple[MsfStream, int]:
        """``(stream, symbol byte count)`` of the module at 0-based ``module_index``."""
        modules = self.modules()
        if module_index < 0 or module_index >= len(modules):
            raise SymbolError("%s: %s: module %d does not exist (%d modules)"
                              % (self._msf.path, self._stream.label, module_index, len(modules)))
        module = modules[module_index]
        if module.symbol_stream is None:
            raise SymbolError("%s: module %d (%s) has no symbol stream" % (self._msf.path, module_index, module.name))
        return self._msf.stream(module.symbol_stream, "module %d symbol stream" % module_index), module.symbol_bytes
