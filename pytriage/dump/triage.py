"""Kernel triage dumps (DumpType 4): TRIAGE_DUMP64 after the header, no page tables.

A triage dump holds only what the kernel chose to save: the faulting thread's stack, small data blocks
(each with its virtual address), copies of the KPRCB/EPROCESS/ETHREAD, the driver list and a copy of
KDDEBUGGER_DATA64. Virtual memory is therefore the union of those address ranges; everything else is
reported as "not saved in this triage dump" so analysis can say which evidence was unavailable.
"""

import bisect
from typing import List, NamedTuple, Optional

from pytriage.dump import structs as S
from pytriage.dump.filemap import DumpFile
from pytriage.dump.secondary import SecondaryBlob, find_secondary_data
from pytriage.errors import DumpFormatError, MemoryReadError

MAX_DATA_BLOCKS = 1 << 20
MAX_DRIVERS = 1 << 16
MAX_NAME_CHARS = 1024
TRIAGE_VALID_MARKER = b"TRGD"        # TRIAGE_DUMP_VALID, the dword at ValidOffset, written last
# Offsets into the primary triage data that must lie inside SizeOfDump when they are set.
_SECTION_OFFSETS = ("ContextOffset", "ExceptionOffset", "MmOffset", "UnloadedDriversOffset", "PrcbOffset",
                    "ProcessOffset", "ThreadOffset", "CallStackOffset", "DriverListOffset",
                    "StringPoolOffset", "BrokenDriverOffset", "DebuggerDataOffset", "DataBlocksOffset")


class Region(NamedTuple):
    """A saved virtual range: [start, start+size) stored at ``file_offset``."""
    start: int
    size: int
    file_offset: int
    what: str


class TriageDriver(NamedTuple):
    name: str          # full path as saved (\SystemRoot\system32\ntoskrnl.exe)
    base: int
    size: int
    checksum: int
    timestamp: int
    entry_offset: int


class TriageDump:
    """Parsed TRIAGE_DUMP64 and the saved virtual ranges."""

    def __init__(self, dump: DumpFile) -> None:
        self.dump = dump
        self.header = S.TRIAGE_DUMP64.parse(dump.view, S.TRIAGE_HEADER_OFFSET)
        h = self.header
        self.top_of_stack = int(h["TopOfStack"])  # type: ignore[arg-type]
        self.size_of_dump = int(h["SizeOfDump"])  # type: ignore[arg-type]
        self._check_complete()
        self._check_range("CallStackOffset", "SizeOfCallStack", 1)
        self._check_range("DriverListOffset", "DriverCount", S.DUMP_DRIVER_ENTRY64.size, MAX_DRIVERS)
        self._check_range("DataBlocksOffset", "DataBlocksCount", S.TRIAGE_DATA_BLOCK_SIZE, MAX_DATA_BLOCKS)
        self._check_range("DebuggerDataOffset", "DebuggerDataSize", 1)
        self.secondary_data: List[SecondaryBlob] = find_secondary_data(dump, self.size_of_dump)
        self._regions: Optional[List[Region]] = None
        self._starts: List[int] = []
        self._max_size = 0

    def _field_offset(self, name: str) -> int:
        return S.TRIAGE_HEADER_OFFSET + S.TRIAGE_DUMP64.offsets[name]

    def _check_complete(self) -> None:
        """The kernel writes the TRGD marker at ValidOffset last: without it the dump is truncated or
        was never finished, and no offset in the triage header can be trusted."""
        if self.size_of_dump > self.dump.size:
            raise DumpFormatError("triage dump truncated: TRIAGE_DUMP64.SizeOfDump is 0x%x but the file has 0x%x"
                                  % (self.size_of_dump, self.dump.size), self.dump.size)
        valid = int(self.header["ValidOffset"])  # type: ignore[arg-type]
        if valid + 4 > self.size_of_dump or valid < S.TRIAGE_HEADER_OFFSET + S.TRIAGE_DUMP64.size:
            raise DumpFormatError("TRIAGE_DUMP64.ValidOffset 0x%x is outside the dump (SizeOfDump 0x%x)"
                                  % (valid, self.size_of_dump), self._field_offset("ValidOffset"))
        marker = self.dump.read(valid, 4, "triage valid marker")
        if marker != TRIAGE_VALID_MARKER:
            raise DumpFormatError("triage dump incomplete: valid marker is %r, expected %r"
                                  % (marker, TRIAGE_VALID_MARKER), valid)
        for name in _SECTION_OFFSETS:
            offset = int(self.header[name])  # type: ignore[arg-type]
            if offset and offset >= self.size_of_dump:
                raise DumpFormatError("TRIAGE_DUMP64.%s 0x%x lies outside the dump (SizeOfDump 0x%x)"
                                      % (name, offset, self.size_of_dump), self._field_offset(name))

    def _check_range(self, offset_field: str, count_field: str, unit: int, limit: int = 1 << 31) -> None:
        offset = int(self.header[offset_field])  # type: ignore[arg-type]
        count = int(self.header[count_field])  # type: ignore[arg-type]
        if count > limit:
            raise DumpFormatError("TRIAGE_DUMP64.%s is absurd (%d)" % (count_field, count),
                                  self._field_offset(count_field))
        if count and offset:
            self.check_inside(offset, count * unit, "TRIAGE_DUMP64 %s" % offset_field.replace("Offset", ""))

    def check_inside(self, offset: int, size: int, what: str) -> None:
        """Raise unless ``[offset, offset+size)`` lies inside the primary triage data (SizeOfDump)."""
        if offset + size > self.size_of_dump:
            raise DumpFormatError("%s (0x%x bytes) runs past the end of the triage data (SizeOfDump 0x%x)"
                                  % (what, size, self.size_of_dump), offset)

    # -- saved memory -------------------------------------------------------------------------------
    def regions(self) -> List[Region]:
        """Every saved virtual range, sorted by address (built on first use)."""
        if self._regions is not None:
            return self._regions
        h = self.header
        regions = []
        stack_size = int(h["SizeOfCallStack"])  # type: ignore[arg-type]
        if stack_size and self.top_of_stack:
            regions.append(Region(self.top_of_stack, stack_size, int(h["CallStackOffset"]), "call stack"))  # type: ignore[arg-type]
        page_size = int(h["DataPageSize"])  # type: ignore[arg-type]
        if page_size and h["DataPageAddress"]:
            offset = int(h["DataPageOffset"])  # type: ignore[arg-type]
            self.check_inside(offset, page_size, "TRIAGE_DUMP64 data page")
            regions.append(Region(int(h["DataPageAddress"]), page_size, offset, "data page"))  # type: ignore[arg-type]
        blocks_offset = int(h["DataBlocksOffset"])  # type: ignore[arg-type]
        for i in range(int(h["DataBlocksCount"]) if blocks_offset else 0):  # type: ignore[arg-type]
            entry = blocks_offset + i * S.TRIAGE_DATA_BLOCK_SIZE
            va = self.dump.u64(entry)
            offset = self.dump.u32(entry + 8)
            size = self.dump.u32(entry + 12)
            if size:
                self.check_inside(offset, size, "triage data block %d" % i)
                regions.append(Region(va, size, offset, "data block %d" % i))
        regions.sort()
        self._regions = regions
        self._starts = [r.start for r in regions]
        self._max_size = max((r.size for r in regions), default=0)
        return regions

    def _region_at(self, va: int) -> Optional[Region]:
        regions = self.regions()
        i = bisect.bisect_right(self._starts, va) - 1
        # Blocks may overlap: look back while a block could still reach ``va``.
        while i >= 0 and regions[i].start + self._max_size > va:
            region = regions[i]
            if va < region.start + region.size:
                return region
            i -= 1
        return None

    def read(self, va: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            region = self._region_at(va)
            if region is None:
                raise MemoryReadError(va, "not saved in this triage dump")
            start = va - region.start
            chunk = min(size, region.size - start)
            out += self.dump.view[region.file_offset + start:region.file_offset + start + chunk]
            va += chunk
            size -= chunk
        return bytes(out)

    def is_saved(self, va: int) -> bool:
        return self._region_at(va) is not None

    # -- driver list --------------------------------------------------------------------------------
    def drivers(self) -> List[TriageDriver]:
        h = self.header
        offset = int(h["DriverListOffset"])  # type: ignore[arg-type]
        out = []
        for i in range(int(h["DriverCount"]) if offset else 0):  # type: ignore[arg-type]
            entry_offset = offset + i * S.DUMP_DRIVER_ENTRY64.size
            entry = S.DUMP_DRIVER_ENTRY64.parse(self.dump.view, entry_offset)
            name = self._dump_string(int(entry["DriverNameOffset"]), entry_offset)  # type: ignore[arg-type]
            out.append(TriageDriver(name, int(entry["DllBase"]), int(entry["SizeOfImage"]),  # type: ignore[arg-type]
                                    int(entry["CheckSum"]), int(entry["TimeDateStamp"]), entry_offset))  # type: ignore[arg-type]
        return out

    def _dump_string(self, offset: int, entry_offset: int) -> str:
        """DUMP_STRING: ULONG length in characters, then UTF-16LE text."""
        if not offset:
            return ""
        length = self.dump.u32(offset, "driver name length (entry at 0x%x)" % entry_offset)
        if length > MAX_NAME_CHARS:
            raise DumpFormatError("driver name length %d is absurd" % length, offset)
        raw = self.dump.read(offset + 4, length * 2, "driver name")
        return raw.decode("utf-16-le", "replace")

    def debugger_data(self) -> bytes:
        """The saved copy of KDDEBUGGER_DATA64 (empty when absent)."""
        offset = int(self.header["DebuggerDataOffset"])  # type: ignore[arg-type]
        size = int(self.header["DebuggerDataSize"])  # type: ignore[arg-type]
        return self.dump.read(offset, size, "KDDEBUGGER_DATA64 copy") if offset and size else b""
