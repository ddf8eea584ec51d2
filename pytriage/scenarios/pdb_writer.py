"""Write real PDB 7.0 files (MSF 7.00) for the scenario modules: public symbols and types.

Why we write PDBs ourselves: debuggers symbolize a kernel dump from PDBs found by the CodeView record
(PDB name, GUID, age) of each image, and a scenario dump is only a fair test of a debugger -- Microsoft's
dbgeng under wine, and our own PDB reader -- if its modules have PDBs like real ones. No Python library
writes PDB files (the ones on PyPI only read them), and ``llvm-pdbutil yaml2pdb`` would make the demo
and the tests need an LLVM installation. The format is documented well enough to write the parts a
debugger needs: LLVM's "The PDB File Format" pages (https://llvm.org/docs/PDB/index.html) describe
every stream, and ``llvm-pdbutil dump`` / ``pdb2yaml`` is the independent oracle in the tests; dbgeng's
``x``, ``ln`` and ``dt`` on scenario dumps is the second one.

What a written PDB holds (the streams lld-link writes for a module without private symbols; fixed
numbers 0-4, then the order of the ``ST_*`` constants below):

- 0: the old MSF directory (empty); 1: PDB info stream (version VC70, signature, age, GUID equal to
  the image's RSDS record, a named stream map with ``/LinkInfo`` and ``/names``, feature VC140);
- 2: TPI: the types of the ISF table -- LF_STRUCTURE/LF_CLASS/LF_UNION with LF_FIELDLIST of
  LF_MEMBERs, LF_POINTER (64-bit), LF_ARRAY, LF_BITFIELD, LF_ENUM with LF_ENUMERATEs, LF_PROCEDURE
  for function pointers; every struct/union is referenced through a forward reference that carries a
  unique name (``.?AU_LIST_ENTRY@@``), as MSVC and clang-cl emit them, so a reader must resolve forward
  references by name through the TPI hash stream, as it must for real PDBs;
- 3: DBI: one module ("* Linker *", with S_OBJNAME, S_COMPILE3 and one S_SECTION per section), section
  contributions, section map, file info, the EC name table, and the optional debug header whose
  section-header stream holds the image's IMAGE_SECTION_HEADERs byte for byte;
- 4: IPI (valid, no records);
- 5..12: ``/LinkInfo`` (empty), ``/names`` (empty string table), the globals hash (an S_UDT per named
  type), the publics hash (GSI hash + address map), the symbol records (an S_PUB32 per public, function
  flag for code, then the S_UDTs), the TPI hash stream, the section headers, the linker module's stream.

Hash functions and the hash-table layouts follow the documented reference behaviour (``hashStringV1``,
the CRC-32 "hashBufv8", 4096 GSI buckets, 0x3FFFF TPI buckets); a reader such as dbghelp looks names
up through them, so they are not decoration.
"""

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pytriage.symbols.pdb.dbi import SectionHeader, section_headers_from_bytes

BLOCK_SIZE = 4096
MSF_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"

PDB_VERSION_VC70 = 20000404
PDB_FEATURE_VC140 = 20140508
TPI_VERSION_V80 = 20040203
DBI_VERSION_V70 = 19990903
DBI_SECTION_CONTRIB_V60 = 0xEFFE0000 + 19970605
GSI_HASH_SIGNATURE = 0xFFFFFFFF
GSI_HASH_VERSION = 0xEFFE0000 + 19990810
STRING_TABLE_SIGNATURE = 0xEFFEEFFE
TPI_HASH_BUCKETS = 0x3FFFF
GSI_HASH_BUCKETS = 4096
FIRST_TYPE_INDEX = 0x1000
INVALID_STREAM = 0xFFFF
MACHINE_AMD64 = 0x8664
CV_SIGNATURE_C13 = 4
MAX_FIELDLIST_BYTES = 0xFF00 - 0x100          # room for the LF_INDEX continuation record

# Type record kinds (CodeView LF_*).
LF_POINTER = 0x1002
LF_PROCEDURE = 0x1008
LF_ARGLIST = 0x1201
LF_FIELDLIST = 0x1203
LF_BITFIELD = 0x1205
LF_INDEX = 0x1404
LF_ENUMERATE = 0x1502
LF_ARRAY = 0x1503
LF_CLASS = 0x1504
LF_STRUCTURE = 0x1505
LF_UNION = 0x1506
LF_ENUM = 0x1507
LF_MEMBER = 0x150D
# Numeric leaves for values that do not fit the 15-bit immediate form.
LF_CHAR, LF_SHORT, LF_USHORT, LF_LONG, LF_ULONG = 0x8000, 0x8001, 0x8002, 0x8003, 0x8004
LF_QUADWORD, LF_UQUADWORD = 0x8009, 0x800A
# Class options (CV_prop_t).
PROP_FORWARD_REF = 0x0080
PROP_SCOPED = 0x0100
PROP_HAS_UNIQUE_NAME = 0x0200
MEMBER_ACCESS_PUBLIC = 3
POINTER_64 = 0x0C                   # CV_PTR_64, mode "pointer", size 8 in bits 13..18
SIMPLE_POINTER_64 = 0x0600          # simple type index mode bits: 64-bit near pointer
T_VOID, T_UQUAD = 0x0003, 0x0023

# Symbol record kinds (CodeView S_*).
S_OBJNAME = 0x1101
S_UDT = 0x1108
S_PUB32 = 0x110E
S_SECTION = 0x1136
S_COMPILE3 = 0x113C
PUBSYM_FUNCTION = 0x2
CV_CFL_LINK = 7
CV_CFL_AMD64 = 0xD0

IMAGE_SCN_CNT_CODE = 0x00000020
IMAGE_SCN_MEM_EXECUTE = 0x20000000
IMAGE_SCN_MEM_READ = 0x40000000
IMAGE_SCN_MEM_WRITE = 0x80000000
SECTION_HEADER_SIZE = 40

# Simple (built-in) CodeView types for the base type names ISF tables use.
SIMPLE_TYPES = {
    "void": 0x0003, "char": 0x0070, "signed char": 0x0010, "unsigned char": 0x0020,
    "short": 0x0011, "unsigned short": 0x0021, "wchar": 0x0071, "wchar_t": 0x0071,
    "long": 0x0012, "unsigned long": 0x0022, "int": 0x0074, "unsigned int": 0x0075,
    "long long": 0x0013, "unsigned long long": 0x0023, "__int64": 0x0013, "unsigned __int64": 0x0023,
    "bool": 0x0030, "float": 0x0040, "double": 0x0041, "HRESULT": 0x0008,
}
_SIMPLE_SIZES = {0x00: 0, 0x03: 0, 0x08: 4, 0x10: 1, 0x20: 1, 0x70: 1, 0x11: 2, 0x21: 2, 0x71: 2, 0x12: 4,
                 0x22: 4, 0x74: 4, 0x75: 4, 0x13: 8, 0x23: 8, 0x30: 1, 0x40: 4, 0x41: 8}
_INT_BY_SIZE = {(1, True): 0x0010, (1, False): 0x0020, (2, True): 0x0011, (2, False): 0x0021,
                (4, True): 0x0012, (4, False): 0x0022, (8, True): 0x0013, (8, False): 0x0023}


# --- hashes ----------------------------------------------------------------------------------------

def hash_string_v1(data: bytes) -> int:
    """The reference ``hashStringV1`` (names in GSI buckets, the TPI UDT hash, the named stream map)."""
    result = 0
    whole = len(data) // 4 * 4
    for (word,) in struct.iter_unpack("<I", data[:whole]):
        result ^= word
    rest = data[whole:]
    if len(rest) >= 2:
        result ^= struct.unpack_from("<H", rest)[0]
        rest = rest[2:]
    if rest:
        result ^= rest[0]
    result |= 0x20202020
    result ^= result >> 11
    return (result ^ (result >> 16)) & 0xFFFFFFFF


def jam_crc32(data: bytes) -> int:
    """CRC-32 started at 0 without the final inversion (the reference ``hashBufv8`` of type records)."""
    return zlib.crc32(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


_NUMERIC_SIZES = {0x8000: 1, 0x8001: 2, 0x8002: 2, 0x8003: 4, 0x8004: 4, 0x8009: 8, 0x800A: 8}


def _skip_numeric(data: bytes, offset: int) -> int:
    leaf = struct.unpack_from("<H", data, offset)[0]
    if leaf < 0x8000:
        return offset + 2
    if leaf not in _NUMERIC_SIZES:
        raise ValueError("numeric leaf 0x%x is not supported" % leaf)
    return offset + 2 + _NUMERIC_SIZES[leaf]


def _is_anonymous(name: bytes) -> bool:
    return name in (b"<unnamed-tag>", b"__unnamed") or name.endswith((b"::<unnamed-tag>", b"::__unnamed"))


def type_record_hash(record: bytes) -> int:
    """The TPI hash of a whole type record (length prefix included), before the modulo by the bucket count.

    Structs, classes, unions and enums that are definitions are hashed by name (their unique name when
    they are scoped), so that a reader resolves a forward reference by looking the name up; everything
    else, forward references included, by the CRC of its bytes.
    """
    kind = struct.unpack_from("<H", record, 2)[0]
    if kind not in (LF_CLASS, LF_STRUCTURE, LF_UNION, LF_ENUM):
        return jam_crc32(record)
    props = struct.unpack_from("<H", record, 6)[0]
    if kind in (LF_CLASS, LF_STRUCTURE):
        names_at = _skip_numeric(record, 20)
    elif kind == LF_UNION:
        names_at = _skip_numeric(record, 12)
    else:
        names_at = 16
    name, _, rest = record[names_at:].partition(b"\x00")
    unique = rest.partition(b"\x00")[0]
    forward, scoped, has_unique = props & PROP_FORWARD_REF, props & PROP_SCOPED, props & PROP_HAS_UNIQUE_NAME
    anonymous = bool(has_unique) and _is_anonymous(name)
    if not forward and not scoped and not anonymous:
        return hash_string_v1(name)
    if not forward and has_unique and not anonymous:
        return hash_string_v1(unique)
    return jam_crc32(record)


def _cstr(text: str) -> bytes:
    raw = text.encode("utf-8")
    if b"\x00" in raw:
        raise ValueError("name %r contains a NUL byte" % text)
    return raw + b"\x00"


def _align(value: int, alignment: int = 4) -> int:
    return (value + alignment - 1) // alignment * alignment


# --- inputs ----------------------------------------------------------------------------------------

@dataclass
class PdbPublic:
    """A public symbol: ``function`` None means "a function when its RVA lies in a code section"."""

    name: str
    rva: int
    function: Optional[bool] = None


def parse_section_headers(raw: bytes) -> List[SectionHeader]:
    if len(raw) % SECTION_HEADER_SIZE:
        raise ValueError("section headers: %d bytes is not a multiple of 40" % len(raw))
    return section_headers_from_bytes(raw)


def _is_code(section: SectionHeader) -> bool:
    return bool(section.characteristics & (IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE))


def _contains(section: SectionHeader, rva: int) -> bool:
    return section.virtual_address <= rva < section.virtual_address + max(section.virtual_size,
                                                                         section.size_of_raw_data)


def section_headers_from_pe(image: bytes) -> bytes:
    """The raw section table of a PE image (file or mapped: the headers are the same)."""
    if image[:2] != b"MZ" or len(image) < 0x40:
        raise ValueError("not a PE image (no MZ header)")
    e_lfanew = struct.unpack_from("<I", image, 0x3C)[0]
    if image[e_lfanew:e_lfanew + 4] != b"PE\0\0":
        raise ValueError("not a PE image (no PE signature at 0x%x)" % e_lfanew)
    count, optional_size = struct.unpack_from("<H12xH", image, e_lfanew + 6)
    start = e_lfanew + 24 + optional_size
    end = start + count * SECTION_HEADER_SIZE
    if end > len(image):
        raise ValueError("section table runs past the end of the image")
    return bytes(image[start:end])


def rva_to_section_offset(sections: Sequence[SectionHeader], rva: int) -> Tuple[int, int]:
    """(1-based section number, offset in it) of an RVA, as PDB symbols record addresses."""
    for number, section in enumerate(sections, 1):
        if _contains(section, rva):
            return number, rva - section.virtual_address
    raise ValueError("RVA 0x%x lies in no section of the image" % rva)


# --- CodeView encoding -----------------------------------------------------------------------------

def _numeric(value: int) -> bytes:
    """A numeric leaf: values 0..0x7fff inline, anything else behind its LF_* size prefix."""
    if 0 <= value < 0x8000:
        return struct.pack("<H", value)
    if -0x80 <= value < 0:
        return struct.pack("<Hb", LF_CHAR, value)
    if -0x8000 <= value < 0:
        return struct.pack("<Hh", LF_SHORT, value)
    if 0 <= value <= 0xFFFF:
        return struct.pack("<HH", LF_USHORT, value)
    if -0x80000000 <= value < 0:
        return struct.pack("<Hi", LF_LONG, value)
    if 0 <= value <= 0xFFFFFFFF:
        return struct.pack("<HI", LF_ULONG, value)
    if -(1 << 63) <= value < 0:
        return struct.pack("<Hq", LF_QUADWORD, value)
    if 0 <= value < (1 << 64):
        return struct.pack("<HQ", LF_UQUADWORD, value)
    raise ValueError("numeric value %d does not fit in 64 bits" % value)


def _pad_type(body: bytes) -> bytes:
    """Type records and field-list members end on 4 bytes, padded with LF_PAD3/2/1 (0xF3 0xF2 0xF1)."""
    pad = -len(body) % 4
    return body + bytes([0xF0 + n for n in range(pad, 0, -1)])


def _type_record(kind: int, body: bytes) -> bytes:
    """A type record: length, kind, body, padded so that the whole record (with its length) ends on 4."""
    data = struct.pack("<H", kind) + body
    data += bytes([0xF0 + n for n in range(-(len(data) + 2) % 4, 0, -1)])
    if len(data) > 0xFFFF:
        raise ValueError("type record 0x%x is too long (%d bytes)" % (kind, len(data)))
    return struct.pack("<H", len(data)) + data


def _symbol_record(kind: int, body: bytes) -> bytes:
    data = struct.pack("<H", kind) + body
    data += b"\x00" * (-(len(data) + 2) % 4)
    return struct.pack("<H", len(data)) + data


class TypeTable:
    """CodeView type records built from a volatility3 ISF table (``base_types``/``user_types``/``enums``).

    Records are emitted the way compilers emit them: a struct or union is referenced through a forward
    reference (emitted at first use), its definition follows its member types and field list; enums are
    referenced by their definition; pointers to built-in types use the simple "pointer" type indices.
    """

    def __init__(self, isf: Optional[Mapping[str, Any]] = None) -> None:
        isf = isf or {}
        self.base_types: Mapping[str, Any] = isf.get("base_types", {}) or {}
        self.user_types: Mapping[str, Any] = isf.get("user_types", {}) or {}
        self.enums: Mapping[str, Any] = isf.get("enums", {}) or {}
        self.records: List[bytes] = []
        self.hashes: List[int] = []
        self._memo: Dict[str, int] = {}
        self._forward: Dict[Tuple[str, str], int] = {}
        self.definitions: Dict[str, int] = {}          # UDT name -> definition type index
        for name in self.user_types:
            self.define_udt(name)
        for name in self.enums:
            self.define_enum(name)

    # records

    def _add(self, record: bytes) -> int:
        index = FIRST_TYPE_INDEX + len(self.records)
        self.records.append(record)
        self.hashes.append(type_record_hash(record) % TPI_HASH_BUCKETS)
        return index

    @staticmethod
    def unique_name(kind: str, name: str) -> str:
        """The decorated name MSVC gives a tag type: .?AU struct, .?AV class, .?AT union, .?AW4 enum."""
        prefix = {"struct": ".?AU", "class": ".?AV", "union": ".?AT", "enum": ".?AW4"}[kind]
        return "%s%s@@" % (prefix, name)

    def _tag_record(self, kind: str, name: str, count: int, props: int, fieldlist: int, size: int,
                    underlying: int = 0) -> bytes:
        """LF_STRUCTURE/LF_CLASS/LF_UNION (``size`` bytes) or LF_ENUM (of ``underlying``) with both names."""
        names = _cstr(name) + _cstr(self.unique_name(kind, name))
        if kind == "enum":
            return _type_record(LF_ENUM, struct.pack("<HHII", count, props, underlying, fieldlist) + names)
        if kind == "union":
            return _type_record(LF_UNION, struct.pack("<HHI", count, props, fieldlist) + _numeric(size) + names)
        leaf = LF_CLASS if kind == "class" else LF_STRUCTURE
        return _type_record(leaf, struct.pack("<HHIII", count, props, fieldlist, 0, 0) + _numeric(size) + names)

    def _udt_kind(self, name: str, default: str = "struct") -> str:
        kind = str(self.user_types.get(name, {}).get("kind", default))
        if kind not in ("struct", "class", "union"):
            raise ValueError("user type %s: kind %r is not struct, class or union" % (name, kind))
        return kind

    def forward_ref(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._forward:
            record = self._tag_record(kind, name, 0, PROP_FORWARD_REF | PROP_HAS_UNIQUE_NAME, 0, 0)
            self._forward[key] = self._add(record)
        return self._forward[key]

    def _fieldlist(self, members: List[bytes]) -> int:
        """LF_FIELDLIST record(s); long lists are chained with LF_INDEX as compilers do."""
        if len(members) > 0xFFFF:
            raise ValueError("%d members do not fit a 16-bit member count" % len(members))
        chunks: List[List[bytes]] = [[]]
        size = 0
        for member in members:
            if size + len(member) > MAX_FIELDLIST_BYTES and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(member)
            size += len(member)
        index = 0
        for chunk in reversed(chunks):
            body = b"".join(chunk)
            if index:
                body += _pad_type(struct.pack("<HHI", LF_INDEX, 0, index))
            index = self._add(_type_record(LF_FIELDLIST, body))
        return index

    def define_udt(self, name: str) -> int:
        if name in self.definitions:
            return self.definitions[name]
        if name not in self.user_types:
            raise ValueError("user type %s is not defined in the table" % name)
        desc = self.user_types[name]
        kind = self._udt_kind(name)
        self.forward_ref(kind, name)
        fields = desc.get("fields", {}) or {}
        # by offset, bit position, then name: members that share both (a union's Ulong1 over PreviousSize)
        # keep one order whatever order the table's JSON lists them in
        ordered = sorted(fields.items(), key=lambda item: (int(item[1].get("offset", 0)),
                                                           int(item[1].get("type", {}).get("bit_position", 0)),
                                                           item[0]))
        members = []
        for fname, field in ordered:
            tindex = self.type_index(field["type"])
            body = struct.pack("<HHI", LF_MEMBER, MEMBER_ACCESS_PUBLIC, tindex) + _numeric(int(field["offset"]))
            members.append(_pad_type(body + _cstr(fname)))
        fieldlist = self._fieldlist(members)
        size = int(desc.get("size", 0))
        record = self._tag_record(kind, name, len(members), PROP_HAS_UNIQUE_NAME, fieldlist, size)
        index = self._add(record)
        self.definitions[name] = index
        return index

    def define_enum(self, name: str) -> int:
        if name in self.definitions:
            return self.definitions[name]
        if name not in self.enums:
            raise ValueError("enum %s is not defined in the table" % name)
        desc = self.enums[name]
        underlying = self.simple_type(str(desc.get("base", "long")))
        constants = desc.get("constants", {}) or {}
        members = [_pad_type(struct.pack("<HH", LF_ENUMERATE, MEMBER_ACCESS_PUBLIC) + _numeric(int(value))
                             + _cstr(cname))
                   for cname, value in sorted(constants.items(), key=lambda kv: (int(kv[1]), kv[0]))]
        fieldlist = self._fieldlist(members)
        record = self._tag_record("enum", name, len(members), PROP_HAS_UNIQUE_NAME, fieldlist, 0, underlying)
        index = self._add(record)
        self.definitions[name] = index
        return index

    # type references

    def simple_type(self, name: str) -> int:
        if name in SIMPLE_TYPES:
            return SIMPLE_TYPES[name]
        base = self.base_types.get(name)
        if not base:
            raise ValueError("base type %r is neither built in nor in the table's base_types" % name)
        kind, size, signed = base.get("kind"), int(base.get("size", 0)), bool(base.get("signed", False))
        if kind == "void":
            return T_VOID
        if kind == "bool":
            return 0x0030
        if kind == "float":
            return {4: 0x0040, 8: 0x0041}.get(size, 0x0041)
        if kind == "char":
            return 0x0070 if signed else 0x0020
        if kind == "int" and (size, signed) in _INT_BY_SIZE:
            return _INT_BY_SIZE[(size, signed)]
        raise ValueError("base type %r (%s, %d bytes) has no CodeView equivalent" % (name, kind, size))

    def type_index(self, desc: Mapping[str, Any]) -> int:
        key = json.dumps(desc, sort_keys=True)
        if key in self._memo:
            return self._memo[key]
        kind = desc.get("kind")
        if kind == "base":
            index = self.simple_type(str(desc["name"]))
        elif kind in ("struct", "class", "union"):
            name = str(desc["name"])
            index = self.forward_ref(self._udt_kind(name, str(kind)), name)
        elif kind == "enum":
            index = self.define_enum(str(desc["name"]))
        elif kind == "pointer":
            target = self.type_index(desc.get("subtype", {"kind": "base", "name": "void"}))
            if target < FIRST_TYPE_INDEX and not target & 0xFF00:
                index = target | SIMPLE_POINTER_64
            else:
                index = self._add(_type_record(LF_POINTER, struct.pack("<II", target, POINTER_64 | (8 << 13))))
        elif kind == "array":
            element = self.type_index(desc["subtype"])
            size = int(desc.get("count", 0)) * self.size_of(desc["subtype"])
            index = self._add(_type_record(LF_ARRAY, struct.pack("<II", element, T_UQUAD) + _numeric(size)
                                           + b"\x00"))
        elif kind == "bitfield":
            base = self.type_index(desc["type"])
            index = self._add(_type_record(LF_BITFIELD, struct.pack("<IBB", base, int(desc["bit_length"]),
                                                                    int(desc["bit_position"]))))
        elif kind == "function":
            arglist = self._add(_type_record(LF_ARGLIST, struct.pack("<I", 0)))
            index = self._add(_type_record(LF_PROCEDURE, struct.pack("<IBBHI", T_VOID, 0, 0, 0, arglist)))
        else:
            raise ValueError("type kind %r is not supported" % kind)
        self._memo[key] = index
        return index

    def size_of(self, desc: Mapping[str, Any]) -> int:
        kind = desc.get("kind")
        if kind == "base":
            name = str(desc["name"])
            if name in self.base_types:
                return int(self.base_types[name].get("size", 0))
            if name not in SIMPLE_TYPES:
                raise ValueError("base type %r is neither built in nor in the table's base_types" % name)
            return _SIMPLE_SIZES[SIMPLE_TYPES[name] & 0xFF]
        if kind == "pointer":
            return 8
        if kind in ("struct", "class", "union"):
            return int(self.user_types[str(desc["name"])]["size"])
        if kind == "enum":
            return int(self.enums[str(desc["name"])]["size"])
        if kind == "array":
            return int(desc.get("count", 0)) * self.size_of(desc["subtype"])
        if kind == "bitfield":
            return self.size_of(desc["type"])
        raise ValueError("type kind %r has no size" % kind)

    def udt_names(self) -> List[Tuple[str, int]]:
        """(name, definition index) of every named struct, union and enum, for S_UDT records."""
        return sorted(self.definitions.items(), key=lambda item: item[1])


# --- streams ---------------------------------------------------------------------------------------

def _type_stream(records: List[bytes], hashes: List[int], hash_stream: int) -> Tuple[bytes, bytes]:
    """TPI/IPI stream and its hash stream (hash values, then type index offsets every 8 KB)."""
    record_bytes = b"".join(records)
    offsets = []
    position = 0
    for number, record in enumerate(records):
        if not offsets or (position + len(record)) // 8192 > position // 8192:
            offsets.append(struct.pack("<II", FIRST_TYPE_INDEX + number, position))
        position += len(record)
    hash_values = b"".join(struct.pack("<I", h) for h in hashes)
    index_offsets = b"".join(offsets)
    hash_data = hash_values + index_offsets if records else b""
    header = struct.pack("<IIIIIHHIIIIIIII", TPI_VERSION_V80, 56, FIRST_TYPE_INDEX, FIRST_TYPE_INDEX + len(records),
                         len(record_bytes), hash_stream if records else INVALID_STREAM, INVALID_STREAM, 4,
                         TPI_HASH_BUCKETS, 0, len(hash_values), len(hash_values), len(index_offsets),
                         len(hash_values), 0)
    return header + record_bytes, hash_data


def string_table(strings: Sequence[str]) -> Tuple[bytes, Dict[str, int]]:
    """A PDB string table (``/names`` and the DBI EC table): header, buffer, hash buckets, count."""
    buffer = bytearray(b"\x00")
    offsets: Dict[str, int] = {}
    for text in strings:
        if text not in offsets:
            offsets[text] = len(buffer)
            buffer += _cstr(text)
    count = len(offsets)
    buckets_n = 1
    seen = 0
    for _ in range(count):                      # the reference growth rule: buckets*3/4 < strings
        seen += 1
        if buckets_n * 3 // 4 < seen:
            buckets_n = buckets_n * 3 // 2 + 1
    buckets = [0] * buckets_n
    for text, offset in offsets.items():
        slot = hash_string_v1(text.encode("utf-8")) % buckets_n
        while buckets[slot]:
            slot = (slot + 1) % buckets_n
        buckets[slot] = offset
    data = struct.pack("<III", STRING_TABLE_SIGNATURE, 1, len(buffer)) + bytes(buffer)
    data += struct.pack("<I", buckets_n) + b"".join(struct.pack("<I", b) for b in buckets)
    data += struct.pack("<I", count)
    return data, offsets


def _bit_vector(bits: Sequence[int]) -> bytes:
    words = [0] * ((max(bits) // 32 + 1) if bits else 0)
    for bit in bits:
        words[bit // 32] |= 1 << (bit % 32)
    return struct.pack("<I", len(words)) + b"".join(struct.pack("<I", w) for w in words)


def _named_stream_map(names: Mapping[str, int]) -> bytes:
    """The PDB info stream's name -> stream table (a serialized closed hash table, 16-bit string hash)."""
    buffer = bytearray()
    entries = []
    for name, stream in names.items():
        entries.append((name, len(buffer), stream))
        buffer += _cstr(name)
    capacity = 1
    while len(entries) > capacity * 2 // 3 + 1 or capacity < len(entries) + 1:
        capacity *= 2
    slots: List[Optional[Tuple[int, int]]] = [None] * capacity
    for name, offset, stream in entries:
        slot = (hash_string_v1(name.encode("utf-8")) & 0xFFFF) % capacity
        while slots[slot] is not None:
            slot = (slot + 1) % capacity
        slots[slot] = (offset, stream)
    present = [i for i, s in enumerate(slots) if s is not None]
    out = struct.pack("<I", len(buffer)) + bytes(buffer)
    out += struct.pack("<II", len(entries), capacity) + _bit_vector(present) + _bit_vector([])
    for i in present:
        out += struct.pack("<II", *slots[i])       # type: ignore[misc]
    return out + struct.pack("<I", 0)              # niMac


def gsi_hash_table(names_offsets: Sequence[Tuple[str, int]]) -> bytes:
    """GSI hash table: header, hash records in bucket order, bucket bitmap, bucket start offsets."""
    buckets: List[List[Tuple[str, int]]] = [[] for _ in range(GSI_HASH_BUCKETS)]
    for name, offset in names_offsets:
        buckets[hash_string_v1(name.encode("utf-8")) % GSI_HASH_BUCKETS].append((name, offset))

    def order(item: Tuple[str, int]) -> Tuple[int, bytes, int]:
        raw = item[0].encode("utf-8")
        return (len(raw), raw.lower() if raw.isascii() else raw, item[1])

    records = bytearray()
    bitmap = [0] * ((GSI_HASH_BUCKETS + 32) // 32)
    starts = []
    count = 0
    for number, bucket in enumerate(buckets):
        if not bucket:
            continue
        bitmap[number // 32] |= 1 << (number % 32)
        starts.append(count * 12)               # offset as if records had 32-bit pointers (12 bytes)
        for _name, offset in sorted(bucket, key=order):
            records += struct.pack("<II", offset + 1, 1)
            count += 1
    tail = b"".join(struct.pack("<I", w) for w in bitmap) + b"".join(struct.pack("<I", s) for s in starts)
    if not records:
        tail = b""                              # an empty table has no bitmap (readers stop after the header)
    return struct.pack("<IIII", GSI_HASH_SIGNATURE, GSI_HASH_VERSION, len(records), len(tail)) + bytes(records) + tail


def publics_stream(publics: Sequence[Tuple[str, int, int, int]]) -> bytes:
    """Publics stream of (name, segment, offset, record offset) publics: header, GSI hash, address map."""
    table = gsi_hash_table([(name, record) for name, _seg, _off, record in publics])
    address_map = [record for _n, _s, _o, record in sorted(publics, key=lambda p: (p[1], p[2], p[0]))]
    header = struct.pack("<IIIIHHII", len(table), 4 * len(address_map), 0, 0, 0, 0, 0, 0)
    return header + table + b"".join(struct.pack("<I", record) for record in address_map)


def _section_map(sections: Sequence[SectionHeader]) -> bytes:
    entries = []
    for number, section in enumerate(sections, 1):
        flags = 0x0108                              # AddressIs32Bit | IsSelector
        flags |= 0x1 if section.characteristics & IMAGE_SCN_MEM_READ else 0
        flags |= 0x2 if section.characteristics & IMAGE_SCN_MEM_WRITE else 0
        flags |= 0x4 if section.characteristics & IMAGE_SCN_MEM_EXECUTE else 0
        entries.append(struct.pack("<HHHHHHII", flags, 0, 0, number, 0xFFFF, 0xFFFF, 0, section.virtual_size))
    entries.append(struct.pack("<HHHHHHII", 0x0208, 0, 0, len(sections) + 1, 0xFFFF, 0xFFFF, 0, 0xFFFFFFFF))
    return struct.pack("<HH", len(entries), len(entries)) + b"".join(entries)


def _section_contribution(section: int, offset: int, size: int, characteristics: int, module: int) -> bytes:
    return struct.pack("<HHiiIHHII", section, 0, offset, size, characteristics, module, 0, 0, 0)


def _linker_module_symbols(sections: Sequence[SectionHeader]) -> bytes:
    out = _symbol_record(S_OBJNAME, struct.pack("<I", 0) + _cstr("* Linker *"))
    out += _symbol_record(S_COMPILE3, struct.pack("<IH4H4H", CV_CFL_LINK, CV_CFL_AMD64, 0, 0, 0, 0, 14, 10, 25019, 0)
                          + _cstr("pytriage scenario PDB writer"))
    for number, section in enumerate(sections, 1):
        out += _symbol_record(S_SECTION, struct.pack("<HBBIII", number, 12, 0, section.virtual_address,
                                                     section.virtual_size, section.characteristics)
                              + _cstr(section.name))
    return out


# --- MSF container ---------------------------------------------------------------------------------

def _is_fpm_block(block: int) -> bool:
    return block % BLOCK_SIZE in (1, 2)


def msf_file(streams: Sequence[bytes]) -> bytes:
    """Lay streams out in an MSF 7.00 file with 4096-byte blocks (free page maps at every interval)."""
    next_block = 3
    blocks: Dict[int, bytes] = {}

    def allocate(data: bytes) -> List[int]:
        nonlocal next_block
        out = []
        for start in range(0, len(data), BLOCK_SIZE):
            while _is_fpm_block(next_block):
                next_block += 1
            blocks[next_block] = data[start:start + BLOCK_SIZE]
            out.append(next_block)
            next_block += 1
        return out

    stream_blocks = [allocate(data) for data in streams]
    directory = struct.pack("<I", len(streams)) + b"".join(struct.pack("<I", len(s)) for s in streams)
    directory += b"".join(struct.pack("<%dI" % len(b), *b) for b in stream_blocks)
    directory_blocks = allocate(directory)
    if len(directory_blocks) * 4 > BLOCK_SIZE:
        raise ValueError("the stream directory needs more than one block map block")
    block_map = allocate(b"".join(struct.pack("<I", b) for b in directory_blocks))[0]
    num_blocks = next_block
    used = set(blocks) | {0} | {b for b in range(num_blocks) if _is_fpm_block(b)}
    free_bits = bytearray(b"\xff" * (_align(num_blocks, BLOCK_SIZE * 8) // 8))
    for block in used:
        free_bits[block // 8] &= ~(1 << (block % 8)) & 0xFF
    out = bytearray(num_blocks * BLOCK_SIZE)
    out[0:len(MSF_MAGIC)] = MSF_MAGIC
    struct.pack_into("<IIIIII", out, len(MSF_MAGIC), BLOCK_SIZE, 1, num_blocks, len(directory), 0, block_map)
    for block, data in blocks.items():
        out[block * BLOCK_SIZE:block * BLOCK_SIZE + len(data)] = data
    fpm_chunks = [free_bits[i:i + BLOCK_SIZE] for i in range(0, len(free_bits), BLOCK_SIZE)]
    for interval, chunk in enumerate(fpm_chunks):
        for copy in (1, 2):
            block = interval * BLOCK_SIZE + copy
            if block < num_blocks:
                out[block * BLOCK_SIZE:block * BLOCK_SIZE + len(chunk)] = chunk
    return bytes(out)


# --- the PDB ---------------------------------------------------------------------------------------

# Stream numbers (fixed ones first, then the order lld-link uses for the others).
ST_OLD_DIRECTORY, ST_PDB, ST_TPI, ST_DBI, ST_IPI = 0, 1, 2, 3, 4
ST_LINK_INFO, ST_NAMES, ST_GLOBALS, ST_PUBLICS, ST_SYMBOLS = 5, 6, 7, 8, 9
ST_TPI_HASH, ST_SECTION_HEADERS, ST_LINKER_MODULE = 10, 11, 12
STREAM_COUNT = 13


def build_pdb(guid: bytes, age: int, section_headers: bytes, publics: Sequence[PdbPublic],
              types: Optional[Mapping[str, Any]] = None, signature: int = 0, pdb_name: str = "") -> bytes:
    """The bytes of a PDB for an image.

    ``guid`` is the 16-byte GUID exactly as the image's RSDS record stores it, ``age`` its age;
    ``section_headers`` the image's raw IMAGE_SECTION_HEADER table; ``publics`` the public symbols by RVA;
    ``types`` an ISF table (only ``base_types``, ``user_types`` and ``enums`` are read); ``signature`` the
    32-bit time stamp of the PDB info stream (the image's TimeDateStamp keeps builds reproducible).
    Raises ValueError for anything that cannot be written faithfully (an RVA outside every section,
    a type the table does not define, a duplicate public name).
    """
    if len(guid) != 16:
        raise ValueError("guid must be the 16 bytes of the RSDS record")
    if not 0 <= age <= 0xFFFFFFFF or not 0 <= signature <= 0xFFFFFFFF:
        raise ValueError("age and signature are 32-bit values")
    sections = parse_section_headers(section_headers)
    if not sections:
        raise ValueError("an image has at least one section")
    table = TypeTable(types)

    # Symbol records: publics sorted by name (as lld-link), then one S_UDT per named type.
    pubs = []
    seen = set()
    for pub in sorted(publics, key=lambda p: p.name.encode("utf-8")):
        if pub.name in seen:
            raise ValueError("public symbol %s is given twice" % pub.name)
        seen.add(pub.name)
        segment, offset = rva_to_section_offset(sections, pub.rva)
        function = _is_code(sections[segment - 1]) if pub.function is None else pub.function
        pubs.append((pub.name, segment, offset,
                     _symbol_record(S_PUB32, struct.pack("<IIH", PUBSYM_FUNCTION if function else 0, offset, segment)
                                    + _cstr(pub.name))))
    symbols = bytearray()
    public_offsets = []
    for name, segment, offset, record in pubs:
        public_offsets.append((name, segment, offset, len(symbols)))
        symbols += record
    global_offsets = []
    for name, index in table.udt_names():
        global_offsets.append((name, len(symbols)))
        symbols += _symbol_record(S_UDT, struct.pack("<I", index) + _cstr(name))

    publics_data = publics_stream(public_offsets)
    globals_stream = gsi_hash_table(global_offsets)

    tpi, tpi_hash = _type_stream(table.records, table.hashes, ST_TPI_HASH)
    ipi, _ = _type_stream([], [], INVALID_STREAM)
    names, _ = string_table([])

    info = struct.pack("<III", PDB_VERSION_VC70, signature, age) + guid
    info += _named_stream_map({"/LinkInfo": ST_LINK_INFO, "/names": ST_NAMES})
    info += struct.pack("<I", PDB_FEATURE_VC140)

    module_symbols = struct.pack("<I", CV_SIGNATURE_C13) + _linker_module_symbols(sections)
    module_stream = module_symbols + struct.pack("<I", 0)          # no C13 lines; GlobalRefs size 0
    ec_names, ec_offsets = string_table([pdb_name] if pdb_name else [])
    contributions = [_section_contribution(n, 0, s.virtual_size, s.characteristics, 0)
                     for n, s in enumerate(sections, 1)]
    modi = struct.pack("<I", 0) + contributions[0]
    modi += struct.pack("<HHIIIHHIII", 0, ST_LINKER_MODULE, len(module_symbols), 0, 0, 0, 0, 0, 0,
                        ec_offsets.get(pdb_name, 0))
    modi += _cstr("* Linker *") + _cstr("")
    modi += b"\x00" * (-len(modi) % 4)
    section_contribs = struct.pack("<I", DBI_SECTION_CONTRIB_V60) + b"".join(contributions)
    section_map = _section_map(sections)
    file_info = struct.pack("<HHHH", 1, 0, 0, 0)
    debug_header = [INVALID_STREAM] * 11
    debug_header[5] = ST_SECTION_HEADERS
    optional = struct.pack("<11H", *debug_header)
    build_number = 0x8000 | (14 << 8) | 10                         # "new format", toolchain 14.10
    dbi = struct.pack("<iIIHHHHHHiiiiiIiiHHI", -1, DBI_VERSION_V70, age, ST_GLOBALS, build_number, ST_PUBLICS, 0,
                      ST_SYMBOLS, 0, len(modi), len(section_contribs), len(section_map), len(file_info), 0, 0,
                      len(optional), len(ec_names), 0, MACHINE_AMD64, 0)
    dbi += modi + section_contribs + section_map + file_info + ec_names + optional

    streams: List[bytes] = [b""] * STREAM_COUNT
    streams[ST_PDB] = info
    streams[ST_TPI] = tpi
    streams[ST_DBI] = dbi
    streams[ST_IPI] = ipi
    streams[ST_NAMES] = names
    streams[ST_GLOBALS] = globals_stream
    streams[ST_PUBLICS] = publics_data
    streams[ST_SYMBOLS] = bytes(symbols)
    streams[ST_TPI_HASH] = tpi_hash
    streams[ST_SECTION_HEADERS] = bytes(section_headers)      # the image's table, copied unchanged
    streams[ST_LINKER_MODULE] = module_stream
    return msf_file(streams)


def write_pdb(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
