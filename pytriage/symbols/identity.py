"""Which PDB an image wants: the CodeView RSDS record (PDB name, GUID, age) from its debug directory.

Two places to find it. In the dump: the image headers and the debug directory are in memory at the
module base (full and kernel dumps usually; triage dumps usually not). In the symbol store: the image
file fetched by TimeDateStamp/SizeOfImage. pefile parses the headers in both cases; for the in-memory
image we read the debug directory and the record ourselves at base + RVA, because pefile maps RVAs
through file offsets (PointerToRawData), which is wrong for a mapped image.
"""

import struct
from dataclasses import dataclass
from typing import Optional

from pytriage.errors import MemoryReadError
from pytriage.symbols.guid import guid_hex
from pytriage.symbols.pe_headers import data_directory, open_image_file

IMAGE_DEBUG_TYPE_CODEVIEW = 2
_DEBUG_DIRECTORY = struct.Struct("<IIHHIIII")     # Characteristics .. PointerToRawData (28 bytes)
_HEADER_BYTES = 0x1000
_MAX_DEBUG_ENTRIES = 32
_MAX_PDB_NAME = 260


@dataclass(frozen=True)
class CodeViewInfo:
    pdb_name: str          # as the linker recorded it, maybe a full build path ("d:\\os\\...\\amdppm.pdb")
    guid: str              # 32 upper-case hex digits, store byte order
    age: int

    @property
    def pdb_basename(self) -> str:
        return self.pdb_name.replace("/", "\\").rsplit("\\", 1)[-1]

    @property
    def store_key(self) -> str:
        return "%s%X" % (self.guid, self.age)


def parse_rsds(record: bytes) -> Optional[CodeViewInfo]:
    """Decode a CV_INFO_PDB70 record; None when it is not an RSDS record."""
    if len(record) < 24 or record[:4] != b"RSDS":
        return None
    age = struct.unpack_from("<I", record, 20)[0]
    name = record[24:24 + _MAX_PDB_NAME].split(b"\0", 1)[0].decode("utf-8", "replace")
    if not name:
        return None
    return CodeViewInfo(name, guid_hex(record[4:20]), age)


def codeview_from_memory(target, base: int) -> Optional[CodeViewInfo]:
    """The RSDS record of the image mapped at ``base``; None when the dump lacks those pages."""
    try:
        headers = target.read(base, _HEADER_BYTES)
    except MemoryReadError:
        return None
    rva, size = data_directory(headers, "IMAGE_DIRECTORY_ENTRY_DEBUG", "image at %x" % base)
    count = min(size // _DEBUG_DIRECTORY.size, _MAX_DEBUG_ENTRIES)
    if not rva or not count:
        return None
    try:
        table = target.read(base + rva, count * _DEBUG_DIRECTORY.size)
        for index in range(count):
            fields = _DEBUG_DIRECTORY.unpack_from(table, index * _DEBUG_DIRECTORY.size)
            kind, length, data_rva = fields[4], fields[5], fields[6]
            if kind == IMAGE_DEBUG_TYPE_CODEVIEW and 24 <= length <= 24 + _MAX_PDB_NAME + 1 and data_rva:
                info = parse_rsds(target.read(base + data_rva, length))
                if info is not None:
                    return info
    except MemoryReadError:
        return None
    return None


def codeview_from_file(path: str) -> Optional[CodeViewInfo]:
    """The RSDS record of an image file (e.g. fetched from a symbol store)."""
    pe = open_image_file(path, "IMAGE_DIRECTORY_ENTRY_DEBUG")
    try:
        for entry in getattr(pe, "DIRECTORY_ENTRY_DEBUG", []):
            if entry.struct.Type != IMAGE_DEBUG_TYPE_CODEVIEW:
                continue
            start = entry.struct.PointerToRawData
            info = parse_rsds(pe.__data__[start:start + min(entry.struct.SizeOfData, 24 + _MAX_PDB_NAME + 1)])
            if info is not None:
                return info
        return None
    finally:
        pe.close()
