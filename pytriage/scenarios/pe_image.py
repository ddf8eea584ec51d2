"""Minimal but valid PE32+ driver images for synthetic kernel dumps.

Why this module exists: a scenario dump maps driver images (``.sys``) at their ``DllBase``, and every consumer
of those pages reads them as real PE files -- pefile, our own x64 unwinder (``.pdata`` / ``UNWIND_INFO``),
Microsoft's dbgeng under wine, and the symbol store (images keyed by TimeDateStamp and SizeOfImage, PDBs by the
CodeView GUID and age). No maintained pure-Python library writes PE files from scratch: pefile only parses and
patches existing ones (LIEF can build PEs, but is a large native C++ dependency we do not take). So we write the
few structures a driver needs by hand, each declared once as a table of fields (``Layout``), and keep pefile as
the independent oracle in the tests.

Layout of every image is "flat": FileAlignment == SectionAlignment == 0x1000, every section's PointerToRawData
equals its VirtualAddress and its SizeOfRawData is its VirtualSize rounded up to a page. The file bytes therefore
*are* the in-memory image: the dump writer copies ``PeImage.data`` to ``DllBase`` unchanged, and the same bytes
can be served from a symbol store as ``name.sys/<key>/name.sys``.

What the builder lays out (all page aligned, in this order)::

    0x0000          headers: MZ stub, "PE\\0\\0", COFF header, PE32+ optional header, section table
    code_rva        .text   the caller's code bytes
    (caller's)      extra sections (.data, PAGE, INIT ...) at the RVAs the caller chose
    after those     .rdata  debug directory, RSDS CodeView record, UNWIND_INFO blobs, export directory
    after .rdata    .pdata  RUNTIME_FUNCTION entries sorted by BeginAddress (only when there are functions)

A ``size_of_image`` larger than the end of the last section extends the *last section's* VirtualSize (and, the
layout being flat, its SizeOfRawData) with zero bytes. Why not leave the pages outside every section: linkers
never produce that, the Windows loader expects the sections to reach SizeOfImage, and with the extension every
byte of the file still belongs to a section (no overlay), which pefile parses without a warning.
"""

import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pytriage.dump.layout import Layout
from pytriage.errors import SymbolError
from pytriage.symbols import guid as symbol_guid

PAGE_SIZE = 0x1000
SIZE_OF_HEADERS = 0x1000
E_LFANEW = 0x80

IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_LARGE_ADDRESS_AWARE = 0x0020
PE32PLUS_MAGIC = 0x20B
IMAGE_SUBSYSTEM_NATIVE = 1
# HIGH_ENTROPY_VA | DYNAMIC_BASE | NX_COMPAT, what current WDK drivers carry.
DLL_CHARACTERISTICS = 0x0160

IMAGE_SCN_CNT_CODE = 0x00000020
IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040
IMAGE_SCN_CNT_UNINITIALIZED_DATA = 0x00000080
SCN_CODE = 0x60000020       # code | execute | read
SCN_DATA_RW = 0xC0000040    # initialized data | read | write
SCN_DATA_RO = 0x40000040    # initialized data | read

IMAGE_DIRECTORY_ENTRY_EXPORT = 0
IMAGE_DIRECTORY_ENTRY_EXCEPTION = 3
IMAGE_DIRECTORY_ENTRY_DEBUG = 6
IMAGE_NUMBEROF_DIRECTORY_ENTRIES = 16
IMAGE_DEBUG_TYPE_CODEVIEW = 2

# Names the builder gives its own sections; a caller's extra section may not reuse them (two ".rdata"
# sections would leave a reader guessing which one holds the directories).
BUILDER_SECTION_NAMES = (".text", ".rdata", ".pdata")

# The classic DOS stub every MSVC linker emits: "print the message and exit" in 16-bit code.
DOS_STUB = (
    bytes.fromhex("0e1fba0e00b409cd21b8014ccd21")
    + b"This program cannot be run in DOS mode.\r\r\n$"
)

# A minimal UNWIND_INFO: version 1, no flags, empty prolog, no unwind codes, no frame register. It says
# "RSP is unchanged in this function", which is exactly right for the leaf-like code scenarios use.
DEFAULT_UNWIND_INFO = b"\x01\x00\x00\x00"

IMAGE_DOS_HEADER = Layout("IMAGE_DOS_HEADER", 0x40, [
    ("e_magic", 0x00, "2s"),
    ("e_cblp", 0x02, "H"),
    ("e_cp", 0x04, "H"),
    ("e_cparhdr", 0x08, "H"),
    ("e_maxalloc", 0x0C, "H"),
    ("e_sp", 0x10, "H"),
    ("e_lfarlc", 0x18, "H"),
    ("e_lfanew", 0x3C, "I"),
])

IMAGE_FILE_HEADER = Layout("IMAGE_FILE_HEADER", 0x14, [
    ("Machine", 0x00, "H"),
    ("NumberOfSections", 0x02, "H"),
    ("TimeDateStamp", 0x04, "I"),
    ("PointerToSymbolTable", 0x08, "I"),
    ("NumberOfSymbols", 0x0C, "I"),
    ("SizeOfOptionalHeader", 0x10, "H"),
    ("Characteristics", 0x12, "H"),
])

# IMAGE_OPTIONAL_HEADER64 without its DataDirectory array (which follows at 0x70, 16 x IMAGE_DATA_DIRECTORY).
IMAGE_OPTIONAL_HEADER64 = Layout("IMAGE_OPTIONAL_HEADER64", 0x70, [
    ("Magic", 0x00, "H"),
    ("MajorLinkerVersion", 0x02, "B"),
    ("MinorLinkerVersion", 0x03, "B"),
    ("SizeOfCode", 0x04, "I"),
    ("SizeOfInitializedData", 0x08, "I"),
    ("SizeOfUninitializedData", 0x0C, "I"),
    ("AddressOfEntryPoint", 0x10, "I"),
    ("BaseOfCode", 0x14, "I"),
    ("ImageBase", 0x18, "Q"),
    ("SectionAlignment", 0x20, "I"),
    ("FileAlignment", 0x24, "I"),
    ("MajorOperatingSystemVersion", 0x28, "H"),
    ("MinorOperatingSystemVersion", 0x2A, "H"),
    ("MajorImageVersion", 0x2C, "H"),
    ("MinorImageVersion", 0x2E, "H"),
    ("MajorSubsystemVersion", 0x30, "H"),
    ("MinorSubsystemVersion", 0x32, "H"),
    ("Win32VersionValue", 0x34, "I"),
    ("SizeOfImage", 0x38, "I"),
    ("SizeOfHeaders", 0x3C, "I"),
    ("CheckSum", 0x40, "I"),
    ("Subsystem", 0x44, "H"),
    ("DllCharacteristics", 0x46, "H"),
    ("SizeOfStackReserve", 0x48, "Q"),
    ("SizeOfStackCommit", 0x50, "Q"),
    ("SizeOfHeapReserve", 0x58, "Q"),
    ("SizeOfHeapCommit", 0x60, "Q"),
    ("LoaderFlags", 0x68, "I"),
    ("NumberOfRvaAndSizes", 0x6C, "I"),
])
OPTIONAL_HEADER_SIZE = IMAGE_OPTIONAL_HEADER64.size + 8 * IMAGE_NUMBEROF_DIRECTORY_ENTRIES   # 0xF0

IMAGE_DATA_DIRECTORY = Layout("IMAGE_DATA_DIRECTORY", 0x08, [
    ("VirtualAddress", 0x00, "I"),
    ("Size", 0x04, "I"),
])

IMAGE_SECTION_HEADER = Layout("IMAGE_SECTION_HEADER", 0x28, [
    ("Name", 0x00, "8s"),
    ("VirtualSize", 0x08, "I"),
    ("VirtualAddress", 0x0C, "I"),
    ("SizeOfRawData", 0x10, "I"),
    ("PointerToRawData", 0x14, "I"),
    ("PointerToRelocations", 0x18, "I"),
    ("PointerToLinenumbers", 0x1C, "I"),
    ("NumberOfRelocations", 0x20, "H"),
    ("NumberOfLinenumbers", 0x22, "H"),
    ("Characteristics", 0x24, "I"),
])

IMAGE_EXPORT_DIRECTORY = Layout("IMAGE_EXPORT_DIRECTORY", 0x28, [
    ("Characteristics", 0x00, "I"),
    ("TimeDateStamp", 0x04, "I"),
    ("MajorVersion", 0x08, "H"),
    ("MinorVersion", 0x0A, "H"),
    ("Name", 0x0C, "I"),
    ("Base", 0x10, "I"),
    ("NumberOfFunctions", 0x14, "I"),
    ("NumberOfNames", 0x18, "I"),
    ("AddressOfFunctions", 0x1C, "I"),
    ("AddressOfNames", 0x20, "I"),
    ("AddressOfNameOrdinals", 0x24, "I"),
])

IMAGE_DEBUG_DIRECTORY = Layout("IMAGE_DEBUG_DIRECTORY", 0x1C, [
    ("Characteristics", 0x00, "I"),
    ("TimeDateStamp", 0x04, "I"),
    ("MajorVersion", 0x08, "H"),
    ("MinorVersion", 0x0A, "H"),
    ("Type", 0x0C, "I"),
    ("SizeOfData", 0x10, "I"),
    ("AddressOfRawData", 0x14, "I"),
    ("PointerToRawData", 0x18, "I"),
])

# CV_INFO_PDB70 header; the NUL-terminated PDB name follows. The GUID is stored as Windows lays out a GUID
# in memory: Data1 (u32 LE), Data2 (u16 LE), Data3 (u16 LE), Data4 (8 bytes as they are).
CV_INFO_PDB70 = Layout("CV_INFO_PDB70", 0x18, [
    ("CvSignature", 0x00, "4s"),
    ("Guid", 0x04, "16s"),
    ("Age", 0x14, "I"),
])

RUNTIME_FUNCTION = Layout("RUNTIME_FUNCTION", 0x0C, [
    ("BeginAddress", 0x00, "I"),
    ("EndAddress", 0x04, "I"),
    ("UnwindInfoAddress", 0x08, "I"),
])

# Fixed header bytes before the section table; what is left of the header page bounds the section count.
_SECTION_TABLE_OFFSET = E_LFANEW + 4 + IMAGE_FILE_HEADER.size + OPTIONAL_HEADER_SIZE
MAX_SECTIONS = (SIZE_OF_HEADERS - _SECTION_TABLE_OFFSET) // IMAGE_SECTION_HEADER.size
CHECKSUM_OFFSET = E_LFANEW + 4 + IMAGE_FILE_HEADER.size + IMAGE_OPTIONAL_HEADER64.offsets["CheckSum"]


@dataclass
class PeFunction:
    """One function of the image: an export (when ``export``) and always a ``.pdata`` entry.

    Every function gets a RUNTIME_FUNCTION so that the unwinder and dbgeng can walk through it; ``unwind`` lets a
    scenario describe a real prolog (pushes, stack allocation) when a stack must unwind through this frame.
    ``chain`` names the primary function this one continues: its UNWIND_INFO gets UNW_FLAG_CHAININFO and the
    primary's RUNTIME_FUNCTION after its codes (x64 chained unwind info).
    """

    name: str
    rva: int
    size: int
    unwind: Optional[bytes] = None
    export: bool = True
    chain: Optional[str] = None


@dataclass
class PeSection:
    """A section as the caller describes it; ``virtual_size`` and ``characteristics`` of 0 mean "derive"."""

    name: str
    rva: int
    data: bytes
    virtual_size: int = 0
    characteristics: int = 0


@dataclass
class PeImage:
    """A built image and the facts the dump writer and the symbol store need without re-parsing it."""

    data: bytes
    size_of_image: int
    timestamp: int
    checksum: int
    sections: List[PeSection]
    export_dir_rva: int
    pdata_rva: int
    debug_dir_rva: int
    codeview_rva: int
    pdb_name: str
    pdb_guid: str
    pdb_age: int
    symbol_store_key: str
    pdb_store_key: str


@dataclass
class _Blob:
    """A byte buffer under construction with 4-byte aligned appends; offsets become RVAs once placed."""

    base_rva: int
    buf: bytearray = field(default_factory=bytearray)

    def append(self, data: bytes, alignment: int = 4) -> int:
        """Append ``data`` at the next ``alignment`` boundary and return its RVA."""
        self.buf.extend(b"\x00" * (-len(self.buf) % alignment))
        rva = self.base_rva + len(self.buf)
        self.buf.extend(data)
        return rva


def _align(value: int, alignment: int = PAGE_SIZE) -> int:
    return (value + alignment - 1) // alignment * alignment


def _ascii(text: str, what: str) -> bytes:
    """Encode a name that ends up in a PE string table; NUL or non-ASCII would silently corrupt lookups."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} is not ASCII")
    if not raw or b"\x00" in raw:
        raise ValueError(f"{what} {text!r} must be non-empty and contain no NUL")
    return raw


def default_characteristics(name: str) -> int:
    """Section flags the way the WDK linker sets them for the usual driver section names."""
    if name in (".text", "PAGE", "INIT"):
        return SCN_CODE
    if name == ".data":
        return SCN_DATA_RW
    return SCN_DATA_RO


def normalize_guid(guid: str) -> str:
    """Accept ``{xxxxxxxx-xxxx-...}`` or 32 hex digits in any case; return the symbol-store form (32 upper hex)."""
    try:
        return symbol_guid.normalize_guid(guid)
    except SymbolError:
        raise ValueError(f"pdb_guid {guid!r} is not a GUID (32 hex digits, dashes optional)") from None


def guid_bytes(guid: str) -> bytes:
    """The 16 bytes of a GUID in Windows memory layout, from its symbol-store string."""
    return symbol_guid.guid_raw(normalize_guid(guid))


def pe_checksum(data: bytes, checksum_offset: int = CHECKSUM_OFFSET) -> int:
    """The optional-header CheckSum of ``data``, as Windows' CheckSumMappedFile and pefile compute it.

    Why it matters: drivers must carry a correct checksum (the kernel loader checks it for boot drivers), and a
    symbol-store image is compared with the one in memory. Little-endian dwords are summed with end-around carry
    (skipping the CheckSum field itself), folded to 16 bits, and the file length is added. Summing everything at
    once and folding afterwards gives the same value as pefile's running fold: both keep the sum modulo 2**32-1
    in the range 1..2**32-1 (0 only for an all-zero input).
    """
    padded = bytes(data) + b"\x00" * (-len(data) % 4)
    words = struct.unpack(f"<{len(padded) // 4}I", padded)
    total = sum(words)
    if checksum_offset % 4 == 0 and checksum_offset + 4 <= len(padded):
        total -= words[checksum_offset // 4]
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total + (total >> 16)) & 0xFFFF
    return total + len(data)


def _check_u32(value: int, what: str) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} 0x{value:x} does not fit in 32 bits")


def _resolve_section(section: PeSection) -> PeSection:
    """Validate a caller's section and fill in its derived size and flags."""
    raw_name = _ascii(section.name, "section name")
    if len(raw_name) > 8:
        raise ValueError(f"section name {section.name!r} is longer than 8 bytes")
    if section.rva % PAGE_SIZE or section.rva < SIZE_OF_HEADERS:
        raise ValueError(
            f"section {section.name} RVA 0x{section.rva:x} must be page aligned and at or after "
            f"the headers (0x{SIZE_OF_HEADERS:x})"
        )
    virtual_size = section.virtual_size or len(section.data)
    if virtual_size <= 0:
        raise ValueError(f"section {section.name} is empty (no data and no virtual_size)")
    if virtual_size < len(section.data):
        raise ValueError(
            f"section {section.name} virtual_size 0x{virtual_size:x} is smaller than its "
            f"0x{len(section.data):x} data bytes"
        )
    _check_u32(section.rva + _align(virtual_size), f"end of section {section.name}")
    return PeSection(
        name=section.name,
        rva=section.rva,
        data=bytes(section.data),
        virtual_size=virtual_size,
        characteristics=section.characteristics or default_characteristics(section.name),
    )


def _write_unwind_infos(rdata: "_Blob", by_rva: List[PeFunction]) -> List[int]:
    """Append every function's UNWIND_INFO to ``rdata`` (primaries first: a chained one needs its primary's
    RUNTIME_FUNCTION, UnwindInfoAddress included); their RVAs in ``by_rva`` order."""
    by_name = {f.name: f for f in by_rva}
    rvas: dict = {}
    pending = list(by_rva)
    while pending:
        progressed = False
        for func in list(pending):
            raw = func.unwind if func.unwind is not None else DEFAULT_UNWIND_INFO
            if func.chain is None:
                rvas[func.name] = rdata.append(raw)
            else:
                parent = by_name.get(func.chain)
                if parent is None:
                    raise ValueError(f"function {func.name} is chained to {func.chain}, which is not in the image")
                if parent.name not in rvas:
                    continue
                if raw[0] >> 3 & 7:
                    raise ValueError(f"function {func.name}: a chained UNWIND_INFO carries no handler flags")
                count = raw[2]
                body = bytearray(raw[:4 + 2 * count])
                body[0] |= 4 << 3                                   # UNW_FLAG_CHAININFO
                body += bytes(2 * (count & 1))                      # codes padded to an even count
                body += RUNTIME_FUNCTION.pack({"BeginAddress": parent.rva, "EndAddress": parent.rva + parent.size,
                                               "UnwindInfoAddress": rvas[parent.name]})
                rvas[func.name] = rdata.append(bytes(body))
            pending.remove(func)
            progressed = True
        if not progressed:
            raise ValueError("chained functions %s loop" % ", ".join(f.name for f in pending))
    return [rvas[f.name] for f in by_rva]


def _check_functions(functions: List[PeFunction], text: PeSection) -> None:
    """Functions must lie in .text and not overlap: RUNTIME_FUNCTIONs are binary-searched by the unwinder."""
    text_end = text.rva + text.virtual_size
    names = set()
    for func in functions:
        _ascii(func.name, "function name")
        if func.size <= 0:
            raise ValueError(f"function {func.name} has size {func.size}; it must be > 0")
        if not (text.rva <= func.rva and func.rva + func.size <= text_end):
            raise ValueError(
                f"function {func.name} [0x{func.rva:x}, 0x{func.rva + func.size:x}) does not lie inside "
                f".text [0x{text.rva:x}, 0x{text_end:x})"
            )
        if func.unwind is not None and len(func.unwind) < 4:
            raise ValueError(f"function {func.name}: UNWIND_INFO needs at least its 4-byte header")
        if func.unwind is not None and len(func.unwind) < 4 + 2 * func.unwind[2]:
            raise ValueError(f"function {func.name}: UNWIND_INFO says {func.unwind[2]} codes but has "
                             f"{len(func.unwind)} bytes")
        if func.export:
            if func.name in names:
                raise ValueError(f"function name {func.name} is exported twice")
            names.add(func.name)
    ordered = sorted(functions, key=lambda f: f.rva)
    for prev, cur in zip(ordered, ordered[1:]):
        if cur.rva < prev.rva + prev.size:
            raise ValueError(
                f"functions {prev.name} (0x{prev.rva:x}+0x{prev.size:x}) and {cur.name} (0x{cur.rva:x}) overlap"
            )


def _export_directory(blob: _Blob, module_name: bytes, timestamp: int, exports: List[PeFunction]) -> Tuple[int, int]:
    """Write IMAGE_EXPORT_DIRECTORY and its tables into ``blob``; return (rva, size) of the whole directory.

    Names are sorted byte-wise (the loader and GetProcAddress binary-search them with strcmp); ordinals follow the
    same order, as MSVC assigns them, so ordinal i+1 is the i-th name and the ordinal table is 0..n-1.
    """
    ordered = sorted(exports, key=lambda f: f.name.encode("ascii"))
    count = len(ordered)
    dir_rva = blob.append(bytes(IMAGE_EXPORT_DIRECTORY.size))
    functions_rva = blob.append(struct.pack(f"<{count}I", *(f.rva for f in ordered)))
    names_rva = blob.append(bytes(4 * count))
    ordinals_rva = blob.append(struct.pack(f"<{count}H", *range(count)), alignment=2)
    module_name_rva = blob.append(module_name + b"\x00", alignment=1)
    name_rvas = [blob.append(f.name.encode("ascii") + b"\x00", alignment=1) for f in ordered]
    end_rva = blob.base_rva + len(blob.buf)

    header = IMAGE_EXPORT_DIRECTORY.pack({
        "TimeDateStamp": timestamp,
        "Name": module_name_rva,
        "Base": 1,
        "NumberOfFunctions": count,
        "NumberOfNames": count,
        "AddressOfFunctions": functions_rva,
        "AddressOfNames": names_rva,
        "AddressOfNameOrdinals": ordinals_rva,
    })
    start = dir_rva - blob.base_rva
    blob.buf[start:start + len(header)] = header
    start = names_rva - blob.base_rva
    blob.buf[start:start + 4 * count] = struct.pack(f"<{count}I", *name_rvas)
    return dir_rva, end_rva - dir_rva


def _headers(
    machine: int,
    timestamp: int,
    image_base: int,
    size_of_image: int,
    entry_point: int,
    code_rva: int,
    sections: List[PeSection],
    directories: Dict[int, Tuple[int, int]],
) -> bytes:
    """The header page: MZ stub, PE signature, COFF header, PE32+ optional header and section table.

    CheckSum is left zero; it is computed over the finished image and patched in last.
    """
    out = bytearray(SIZE_OF_HEADERS)
    out[0:IMAGE_DOS_HEADER.size] = IMAGE_DOS_HEADER.pack({
        "e_magic": b"MZ", "e_cblp": 0x90, "e_cp": 3, "e_cparhdr": 4, "e_maxalloc": 0xFFFF, "e_sp": 0xB8,
        "e_lfarlc": 0x40, "e_lfanew": E_LFANEW,
    })
    out[0x40:0x40 + len(DOS_STUB)] = DOS_STUB
    offset = E_LFANEW
    out[offset:offset + 4] = b"PE\x00\x00"
    offset += 4
    out[offset:offset + IMAGE_FILE_HEADER.size] = IMAGE_FILE_HEADER.pack({
        "Machine": machine,
        "NumberOfSections": len(sections),
        "TimeDateStamp": timestamp,
        "SizeOfOptionalHeader": OPTIONAL_HEADER_SIZE,
        "Characteristics": IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE,
    })
    offset += IMAGE_FILE_HEADER.size

    def raw_size(flag: int) -> int:
        return sum(_align(s.virtual_size) for s in sections if s.characteristics & flag)

    out[offset:offset + IMAGE_OPTIONAL_HEADER64.size] = IMAGE_OPTIONAL_HEADER64.pack({
        "Magic": PE32PLUS_MAGIC,
        "MajorLinkerVersion": 14,
        "SizeOfCode": raw_size(IMAGE_SCN_CNT_CODE),
        "SizeOfInitializedData": raw_size(IMAGE_SCN_CNT_INITIALIZED_DATA),
        "SizeOfUninitializedData": raw_size(IMAGE_SCN_CNT_UNINITIALIZED_DATA),
        "AddressOfEntryPoint": entry_point,
        "BaseOfCode": code_rva,
        "ImageBase": image_base,
        "SectionAlignment": PAGE_SIZE,
        "FileAlignment": PAGE_SIZE,
        "MajorOperatingSystemVersion": 10,
        "MajorImageVersion": 10,
        "MajorSubsystemVersion": 10,
        "SizeOfImage": size_of_image,
        "SizeOfHeaders": SIZE_OF_HEADERS,
        "Subsystem": IMAGE_SUBSYSTEM_NATIVE,
        "DllCharacteristics": DLL_CHARACTERISTICS,
        "SizeOfStackReserve": 0x40000,
        "SizeOfStackCommit": 0x1000,
        "SizeOfHeapReserve": 0x100000,
        "SizeOfHeapCommit": 0x1000,
        "NumberOfRvaAndSizes": IMAGE_NUMBEROF_DIRECTORY_ENTRIES,
    })
    offset += IMAGE_OPTIONAL_HEADER64.size
    for index in range(IMAGE_NUMBEROF_DIRECTORY_ENTRIES):
        rva, size = directories.get(index, (0, 0))
        out[offset:offset + IMAGE_DATA_DIRECTORY.size] = IMAGE_DATA_DIRECTORY.pack(
            {"VirtualAddress": rva, "Size": size}
        )
        offset += IMAGE_DATA_DIRECTORY.size
    assert offset == _SECTION_TABLE_OFFSET
    for section in sections:
        raw = _align(section.virtual_size)
        out[offset:offset + IMAGE_SECTION_HEADER.size] = IMAGE_SECTION_HEADER.pack({
            "Name": section.name.encode("ascii"),
            "VirtualSize": section.virtual_size,
            "VirtualAddress": section.rva,
            "SizeOfRawData": raw,
            "PointerToRawData": section.rva,     # flat layout: file offset == RVA
            "Characteristics": section.characteristics,
        })
        offset += IMAGE_SECTION_HEADER.size
    return bytes(out)


def build_pe_image(
    module_name: str,
    image_base: int,
    timestamp: int,
    code: bytes,
    functions: List[PeFunction],
    pdb_guid: str,
    pdb_age: int = 1,
    pdb_name: Optional[str] = None,
    code_rva: int = 0x1000,
    extra_sections: Optional[List[PeSection]] = None,
    size_of_image: Optional[int] = None,
    machine: int = IMAGE_FILE_MACHINE_AMD64,
) -> PeImage:
    """Build a flat PE32+ driver image; same inputs always give the same bytes.

    ``functions`` RVAs are absolute image RVAs inside ``.text`` (``code`` at ``code_rva``). ``pdb_guid`` is the
    symbol-store spelling (dashes and braces are accepted and dropped). ``image_base`` is written to the optional
    header as is: pass the DllBase the dump maps the image at, as the kernel loader leaves it there after
    relocating. RUNTIME_FUNCTION entries have the x64 layout; for another ``machine`` (ARM64 uses a different
    ``.pdata`` format) no exception directory is written and functions may not carry ``unwind`` bytes.
    Raises ValueError for anything that would make an invalid or ambiguous image.
    """
    module_raw = _ascii(module_name, "module_name")
    guid = normalize_guid(pdb_guid)
    if pdb_name is None:
        stem = module_name.rsplit(".", 1)[0] if "." in module_name else module_name
        pdb_name = stem + ".pdb"
    if not pdb_name or "\x00" in pdb_name:
        raise ValueError(f"pdb_name {pdb_name!r} must be non-empty and contain no NUL")
    _check_u32(timestamp, "timestamp")
    _check_u32(pdb_age, "pdb_age")
    if not 0 <= machine <= 0xFFFF:
        raise ValueError(f"machine 0x{machine:x} does not fit in 16 bits")
    if image_base % PAGE_SIZE or not 0 <= image_base <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"image_base 0x{image_base:x} must be a page-aligned 64-bit address")
    if not code:
        raise ValueError("code is empty: .text needs at least one byte")
    write_pdata = machine == IMAGE_FILE_MACHINE_AMD64
    if not write_pdata and any(f.unwind is not None for f in functions):
        raise ValueError(f"unwind bytes are x64 UNWIND_INFO; machine 0x{machine:x} gets no .pdata")

    text = _resolve_section(PeSection(".text", code_rva, bytes(code)))
    user_sections = [text]
    for extra in extra_sections or []:
        if extra.name in BUILDER_SECTION_NAMES:
            raise ValueError(f"section name {extra.name} is reserved for the builder")
        user_sections.append(_resolve_section(extra))
    user_sections.sort(key=lambda s: s.rva)
    seen = set()
    for prev, cur in zip(user_sections, user_sections[1:]):
        if cur.rva < prev.rva + _align(prev.virtual_size):
            raise ValueError(
                f"sections {prev.name} (0x{prev.rva:x}+0x{prev.virtual_size:x}) and {cur.name} (0x{cur.rva:x}) overlap"
            )
    for section in user_sections:
        if section.name in seen:
            raise ValueError(f"section name {section.name} appears twice")
        seen.add(section.name)
    _check_functions(functions, text)

    # .rdata: debug directory, CodeView record, UNWIND_INFO blobs, export directory.
    rdata_rva = _align(user_sections[-1].rva + user_sections[-1].virtual_size)
    rdata = _Blob(rdata_rva)
    debug_dir_rva = rdata.append(bytes(IMAGE_DEBUG_DIRECTORY.size))
    codeview = CV_INFO_PDB70.pack({"CvSignature": b"RSDS", "Guid": guid_bytes(guid), "Age": pdb_age})
    codeview += pdb_name.encode("utf-8") + b"\x00"
    codeview_rva = rdata.append(codeview)
    start = debug_dir_rva - rdata_rva
    rdata.buf[start:start + IMAGE_DEBUG_DIRECTORY.size] = IMAGE_DEBUG_DIRECTORY.pack({
        "TimeDateStamp": timestamp,
        "Type": IMAGE_DEBUG_TYPE_CODEVIEW,
        "SizeOfData": len(codeview),
        "AddressOfRawData": codeview_rva,
        "PointerToRawData": codeview_rva,    # flat layout: file offset == RVA
    })

    by_rva = sorted(functions, key=lambda f: f.rva)
    unwind_rvas = []
    if write_pdata:
        unwind_rvas = _write_unwind_infos(rdata, by_rva)
    exports = [f for f in functions if f.export]
    directories = {IMAGE_DIRECTORY_ENTRY_DEBUG: (debug_dir_rva, IMAGE_DEBUG_DIRECTORY.size)}
    export_dir_rva = 0
    if exports:
        export_dir_rva, export_size = _export_directory(rdata, module_raw, timestamp, exports)
        directories[IMAGE_DIRECTORY_ENTRY_EXPORT] = (export_dir_rva, export_size)
    sections = user_sections + [PeSection(".rdata", rdata_rva, bytes(rdata.buf), len(rdata.buf), SCN_DATA_RO)]

    pdata_rva = 0
    if write_pdata and by_rva:
        pdata_rva = _align(rdata_rva + len(rdata.buf))
        pdata = b"".join(
            RUNTIME_FUNCTION.pack({"BeginAddress": f.rva, "EndAddress": f.rva + f.size, "UnwindInfoAddress": u})
            for f, u in zip(by_rva, unwind_rvas)
        )
        sections.append(PeSection(".pdata", pdata_rva, pdata, len(pdata), SCN_DATA_RO))
        directories[IMAGE_DIRECTORY_ENTRY_EXCEPTION] = (pdata_rva, len(pdata))
    if len(sections) > MAX_SECTIONS:
        raise ValueError(f"{len(sections)} sections do not fit in the header page (at most {MAX_SECTIONS})")

    last = sections[-1]
    end = last.rva + _align(last.virtual_size)
    if size_of_image is None:
        size_of_image = end
    elif size_of_image % PAGE_SIZE or size_of_image < end:
        raise ValueError(
            f"size_of_image 0x{size_of_image:x} must be page aligned and at least 0x{end:x} (end of the last section)"
        )
    elif size_of_image > end:
        # Documented choice (module docstring): the padding pages extend the last section.
        last.virtual_size = size_of_image - last.rva
    _check_u32(size_of_image, "size_of_image")

    entry_point = functions[0].rva if functions else code_rva
    image = bytearray(size_of_image)
    image[0:SIZE_OF_HEADERS] = _headers(
        machine, timestamp, image_base, size_of_image, entry_point, code_rva, sections, directories
    )
    for section in sections:
        image[section.rva:section.rva + len(section.data)] = section.data
    checksum = pe_checksum(bytes(image))
    struct.pack_into("<I", image, CHECKSUM_OFFSET, checksum)

    return PeImage(
        data=bytes(image),
        size_of_image=size_of_image,
        timestamp=timestamp,
        checksum=checksum,
        sections=sections,
        export_dir_rva=export_dir_rva,
        pdata_rva=pdata_rva,
        debug_dir_rva=debug_dir_rva,
        codeview_rva=codeview_rva,
        pdb_name=pdb_name,
        pdb_guid=guid,
        pdb_age=pdb_age,
        symbol_store_key=f"{timestamp:08X}{size_of_image:x}",
        pdb_store_key=f"{guid}{pdb_age:x}",
    )
