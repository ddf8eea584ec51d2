"""The PDB info stream (stream 1): format version, signature, age, GUID and the named-stream map.

Why it matters: the GUID and age are what the image's CodeView (RSDS) record names, so they decide
whether this PDB describes the module in the dump at all, and they form the symbol store key
(``name.pdb/<GUID><age>/``). The named-stream map finds streams that have no fixed number
(``/names``, the string table that some records point into; ``/LinkInfo``; ``/src/headerblock``).

Layout (llvm.org/docs/PDB/PdbStream.html): ``Version``, ``Signature``, ``Age`` (u32 each), a 16-byte
GUID, then a buffer of NUL-terminated names and a serialized hash table whose present buckets map an
offset in that buffer to a stream number.
"""

import struct
from typing import Dict, NamedTuple, Tuple

from pytriage.symbols.guid import guid_hex
from pytriage.symbols.pdb.msf import MsfStream

# Versions with a GUID (VC 7.0 and later). Older PDBs have only a 32-bit signature.
PDB_VERSION_VC70 = 20000404
_MIN_GUID_VERSION = 19990604            # "VC70Dep": the first version that already carries a GUID
_MAX_NAMED_STREAMS = 1 << 16
_HEADER = struct.Struct("<III16s")


class PdbInfo(NamedTuple):
    version: int
    signature: int
    age: int
    guid: str                       # 32 upper-case hex digits, no dashes, symbol-store byte order
    named_streams: Dict[str, int]   # "/names" -> stream number


def read_info(stream: MsfStream) -> PdbInfo:
    """Parse stream 1; any inconsistency is a ``SymbolError`` naming the offset in the stream."""
    if stream.size < _HEADER.size:
        raise stream.error(0, "info stream of %d bytes is shorter than its 28-byte header" % stream.size)
    data = stream.read_all(limit=1 << 24)
    version, signature, age, guid_raw = _HEADER.unpack_from(data, 0)
    if version < _MIN_GUID_VERSION:
        raise stream.error(0, "PDB version %d predates VC 7.0 (no GUID); not supported" % version)
    named = _read_named_streams(stream, data, _HEADER.size)
    return PdbInfo(version, signature, age, guid_hex(guid_raw), named)


def _read_named_streams(stream: MsfStream, data: bytes, pos: int) -> Dict[str, int]:
    def need(count: int, what: str) -> None:
        if pos + count > len(data):
            raise stream.error(pos, "named stream map truncated in %s" % what)

    def bit_vector(what: str) -> Tuple[int, ...]:
        """A word count then that many 32-bit words (the hash table's present/deleted sets)."""
        nonlocal pos
        need(4, what)
        words = struct.unpack_from("<I", data, pos)[0]
        if words > _MAX_NAMED_STREAMS // 32 + 1:
            raise stream.error(pos, "named stream map: %s of %d words" % (what, words))
        pos += 4
        need(4 * words, what)
        bits = struct.unpack_from("<%dI" % words, data, pos)
        pos += 4 * words
        return bits

    need(4, "string buffer size")
    strings_size = struct.unpack_from("<I", data, pos)[0]
    pos += 4
    need(strings_size, "string buffer")
    strings = data[pos:pos + strings_size]
    pos += strings_size
    need(8, "hash table header")
    count, capacity = struct.unpack_from("<II", data, pos)
    if count > capacity or capacity > _MAX_NAMED_STREAMS:
        raise stream.error(pos, "named stream map has %d entries in %d buckets" % (count, capacity))
    pos += 8
    present = bit_vector("present bit vector")
    bit_vector("deleted bit vector")
    buckets = [i for i in range(32 * len(present)) if present[i >> 5] >> (i & 31) & 1]
    if len(buckets) != count or (buckets and buckets[-1] >= capacity):
        raise stream.error(pos, "named stream map: %d present buckets for %d entries" % (len(buckets), count))
    need(8 * count, "entries")
    result: Dict[str, int] = {}
    for _ in buckets:
        key, value = struct.unpack_from("<II", data, pos)
        if key >= len(strings):
            raise stream.error(pos, "named stream map: name offset %d past the %d-byte string buffer"
                               % (key, len(strings)))
        end = strings.find(b"\0", key)
        name = strings[key:end if end >= 0 else len(strings)].decode("utf-8", "replace")
        result[name] = value
        pos += 8
    return result
