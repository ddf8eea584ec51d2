"""CodeView primitives shared by the type (TPI) and symbol (GSI) readers: leaf constants, numeric leaves,
names, the PDB name hash.

Why a module of its own: the TPI reader and the symbol reader both meet numeric leaves (a member offset,
an ``S_CONSTANT`` value) and NUL-terminated names, and both look names up through the same string hash.
Everything here works on a ``bytes`` record and raises :class:`CvDecodeError` with a short reason; the
caller, which knows the file, stream and offset, turns that into a one-line ``SymbolError``.
"""

import struct
from typing import Tuple

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I8 = struct.Struct("<b")
_I16 = struct.Struct("<h")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")


class CvDecodeError(Exception):
    """A record is malformed; the message says what, the caller adds where."""


# -- type record kinds (LF_*) ------------------------------------------------------------------------------
LF_MODIFIER = 0x1001
LF_POINTER = 0x1002
LF_PROCEDURE = 0x1008
LF_MFUNCTION = 0x1009
LF_VTSHAPE = 0x000A
LF_ARGLIST = 0x1201
LF_FIELDLIST = 0x1203
LF_BITFIELD = 0x1205
LF_METHODLIST = 0x1206
LF_ARRAY = 0x1503
LF_CLASS = 0x1504
LF_STRUCTURE = 0x1505
LF_UNION = 0x1506
LF_ENUM = 0x1507
LF_INTERFACE = 0x1519
LF_CLASS2 = 0x1608
LF_STRUCTURE2 = 0x1609
LF_UNION2 = 0x160A
LF_INTERFACE2 = 0x160B

# field list members
LF_BCLASS = 0x1400
LF_VBCLASS = 0x1401
LF_IVBCLASS = 0x1402
LF_INDEX = 0x1404
LF_VFUNCTAB = 0x1409
LF_FRIENDCLS = 0x140A
LF_VFUNCOFF = 0x140C
LF_ENUMERATE = 0x1502
LF_FRIENDFCN = 0x150C
LF_MEMBER = 0x150D
LF_STMEMBER = 0x150E
LF_METHOD = 0x150F
LF_NESTTYPE = 0x1510
LF_ONEMETHOD = 0x1511
LF_NESTTYPEEX = 0x1512

# numeric leaves
LF_NUMERIC = 0x8000
LF_CHAR = 0x8000
LF_SHORT = 0x8001
LF_USHORT = 0x8002
LF_LONG = 0x8003
LF_ULONG = 0x8004
LF_REAL32 = 0x8005
LF_REAL64 = 0x8006
LF_REAL80 = 0x8007
LF_REAL128 = 0x8008
LF_QUADWORD = 0x8009
LF_UQUADWORD = 0x800A
LF_REAL48 = 0x800B
LF_COMPLEX32 = 0x800C
LF_COMPLEX64 = 0x800D
LF_COMPLEX80 = 0x800E
LF_COMPLEX128 = 0x800F
LF_VARSTRING = 0x8010
LF_OCTWORD = 0x8017
LF_UOCTWORD = 0x8018
LF_DECIMAL = 0x8019
LF_DATE = 0x801A
LF_UTF8STRING = 0x801B
LF_REAL16 = 0x801C

LEAF_NAMES = {
    LF_MODIFIER: "LF_MODIFIER", LF_POINTER: "LF_POINTER", LF_PROCEDURE: "LF_PROCEDURE",
    LF_MFUNCTION: "LF_MFUNCTION", LF_VTSHAPE: "LF_VTSHAPE", LF_ARGLIST: "LF_ARGLIST",
    LF_FIELDLIST: "LF_FIELDLIST", LF_BITFIELD: "LF_BITFIELD", LF_METHODLIST: "LF_METHODLIST",
    LF_ARRAY: "LF_ARRAY", LF_CLASS: "LF_CLASS", LF_STRUCTURE: "LF_STRUCTURE", LF_UNION: "LF_UNION",
    LF_ENUM: "LF_ENUM", LF_INTERFACE: "LF_INTERFACE", LF_CLASS2: "LF_CLASS2", LF_STRUCTURE2: "LF_STRUCTURE2",
    LF_UNION2: "LF_UNION2", LF_INTERFACE2: "LF_INTERFACE2", 0x1601: "LF_FUNC_ID", 0x1602: "LF_MFUNC_ID",
    0x1603: "LF_BUILDINFO", 0x1604: "LF_SUBSTR_LIST", 0x1605: "LF_STRING_ID", 0x1606: "LF_UDT_SRC_LINE",
    0x1607: "LF_UDT_MOD_SRC_LINE", 0x1509: "LF_PRECOMP", 0x1515: "LF_TYPESERVER2", 0x150A: "LF_ALIAS",
    0x1508: "LF_DIMARRAY", 0x1516: "LF_STRIDED_ARRAY", 0x151B: "LF_VECTOR", 0x151C: "LF_MATRIX",
    0x151D: "LF_VFTABLE", 0x1518: "LF_MODIFIER_EX", 0x000E: "LF_LABEL", 0x1204: "LF_DERIVED",
}

# Struct/union/enum property bits (CV_prop_t).
PROP_PACKED = 0x0001
PROP_FWDREF = 0x0080
PROP_SCOPED = 0x0100
PROP_HAS_UNIQUE_NAME = 0x0200

# -- symbol record kinds (S_*) ------------------------------------------------------------------------------
S_CONSTANT = 0x1107
S_UDT = 0x1108
S_LDATA32 = 0x110C
S_GDATA32 = 0x110D
S_PUB32 = 0x110E
S_LPROC32 = 0x110F
S_GPROC32 = 0x1110
S_LTHREAD32 = 0x1112
S_GTHREAD32 = 0x1113
S_PROCREF = 0x1125
S_LPROCREF = 0x1127
S_LPROC32_ID = 0x1146
S_GPROC32_ID = 0x1147

SYMBOL_NAMES = {
    S_CONSTANT: "S_CONSTANT", S_UDT: "S_UDT", S_LDATA32: "S_LDATA32", S_GDATA32: "S_GDATA32",
    S_PUB32: "S_PUB32", S_LPROC32: "S_LPROC32", S_GPROC32: "S_GPROC32", S_LTHREAD32: "S_LTHREAD32",
    S_GTHREAD32: "S_GTHREAD32", S_PROCREF: "S_PROCREF", S_LPROCREF: "S_LPROCREF",
    S_LPROC32_ID: "S_LPROC32_ID", S_GPROC32_ID: "S_GPROC32_ID",
}

# Fixed byte lengths of the numeric leaves that carry their value after the 2-byte kind.
_NUMERIC_FIXED = {
    LF_CHAR: (1, _I8), LF_SHORT: (2, _I16), LF_USHORT: (2, _U16), LF_LONG: (4, _I32), LF_ULONG: (4, _U32),
    LF_QUADWORD: (8, _I64), LF_UQUADWORD: (8, _U64),
}
# Numeric leaves we step over without a usable integer value (floats, complex, 128-bit, decimal, date).
_NUMERIC_SKIP = {
    LF_REAL32: 4, LF_REAL64: 8, LF_REAL80: 10, LF_REAL128: 16, LF_REAL48: 6, LF_COMPLEX32: 8,
    LF_COMPLEX64: 16, LF_COMPLEX80: 20, LF_COMPLEX128: 32, LF_OCTWORD: 16, LF_UOCTWORD: 16, LF_DECIMAL: 16,
    LF_DATE: 8, LF_REAL16: 2,
}


def leaf_name(kind: int) -> str:
    return LEAF_NAMES.get(kind, "leaf 0x%04x" % kind)


def u16(data: bytes, pos: int) -> int:
    if pos < 0 or pos + 2 > len(data):
        raise CvDecodeError("truncated at byte %d (need 2 of %d)" % (pos, len(data)))
    return _U16.unpack_from(data, pos)[0]


def u32(data: bytes, pos: int) -> int:
    if pos < 0 or pos + 4 > len(data):
        raise CvDecodeError("truncated at byte %d (need 4 of %d)" % (pos, len(data)))
    return _U32.unpack_from(data, pos)[0]


def u8(data: bytes, pos: int) -> int:
    if pos < 0 or pos >= len(data):
        raise CvDecodeError("truncated at byte %d (need 1 of %d)" % (pos, len(data)))
    return data[pos]


def numeric(data: bytes, pos: int) -> Tuple[int, int]:
    """Decode a numeric leaf at ``pos``: ``(value, position after it)``.

    Values below 0x8000 are stored inline in the 2-byte slot; larger ones follow an LF_* tag. Integer
    tags give their (signed or unsigned) value; float/complex/128-bit tags are stepped over and give 0,
    because nothing that asks for a numeric leaf here (sizes, offsets, enumerators) can use them.
    """
    tag = u16(data, pos)
    pos += 2
    if tag < LF_NUMERIC:
        return tag, pos
    fixed = _NUMERIC_FIXED.get(tag)
    if fixed is not None:
        size, fmt = fixed
        if pos + size > len(data):
            raise CvDecodeError("numeric leaf 0x%04x truncated" % tag)
        return fmt.unpack_from(data, pos)[0], pos + size
    skip = _NUMERIC_SKIP.get(tag)
    if skip is not None:
        if pos + skip > len(data):
            raise CvDecodeError("numeric leaf 0x%04x truncated" % tag)
        return 0, pos + skip
    if tag in (LF_VARSTRING, LF_UTF8STRING):
        length = u16(data, pos)
        if pos + 2 + length > len(data):
            raise CvDecodeError("numeric leaf 0x%04x truncated" % tag)
        return 0, pos + 2 + length
    raise CvDecodeError("unknown numeric leaf 0x%04x" % tag)


def cstring(data: bytes, pos: int) -> Tuple[str, int]:
    """A NUL-terminated name at ``pos``: ``(name, position after the NUL)``.

    A name running to the end of the record without its NUL is accepted (the record length bounds it).
    Names are UTF-8 in PDBs of the last twenty years; undecodable bytes become U+FFFD rather than failing.
    """
    if pos > len(data):
        raise CvDecodeError("name starts past the end of the record")
    end = data.find(b"\0", pos)
    if end < 0:
        end = len(data)
    return data[pos:end].decode("utf-8", "replace"), end + 1


def hash_string_v1(name: bytes) -> int:
    """The PDB name hash (Microsoft's ``LHashPbCb``, LLVM's ``hashStringV1``).

    XOR of the little-endian 32-bit words of the name, then of a trailing 16-bit word and byte, folded to
    ignore ASCII case. TPI hash buckets and the publics/globals hash tables are this value modulo their
    bucket count, which is what lets us decode only the records of one bucket for a name lookup.
    """
    length = len(name)
    words = length // 4
    result = 0
    for (word,) in struct.iter_unpack("<I", name[:words * 4]):
        result ^= word
    pos = words * 4
    rest = length - pos
    if rest >= 2:
        result ^= _U16.unpack_from(name, pos)[0]
        pos += 2
        rest -= 2
    if rest == 1:
        result ^= name[pos]
    result |= 0x20202020
    result ^= result >> 11
    return (result ^ (result >> 16)) & 0xFFFFFFFF
