"""Public and global symbols: the symbol record stream and the two hash indexes over it (GSI/PSGSI).

Why: publics (``S_PUB32``: name, flags, ``segment:offset``) are what turn an address into
``module!Function+0x70``; they survive in the stripped PDBs Microsoft's symbol server hands out. The
globals index adds data symbols (``S_GDATA32``/``S_LDATA32``), typedefs (``S_UDT``), constants and
references to functions (``S_PROCREF``/``S_LPROCREF``, which point into a module's symbol stream).

Both indexes are hash tables over offsets in the shared symbol record stream (llvm.org/docs/PDB/
PublicStream.html, GlobalStream.html): a 16-byte header, ``HrSize`` bytes of (offset + 1, refcount)
records, a bitmap of the 4096 + 1 buckets and one start offset per non-empty bucket (in units of the
12-byte in-memory record). A name lookup hashes the name (``hashStringV1`` % 4096) and decodes only that
bucket's records. The publics stream adds an address map: symbol offsets sorted by ``segment:offset``,
which lets :meth:`PublicsStream.nearest` binary-search an RVA decoding ~log2(n) records.
"""

import bisect
import struct
import sys
from array import array
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from pytriage.symbols.pdb import codeview as cv
from pytriage.symbols.pdb.codeview import CvDecodeError
from pytriage.symbols.pdb.dbi import DbiStream
from pytriage.symbols.pdb.msf import MsfStream

_GSI_HEADER = struct.Struct("<IIII")
_PSGSI_HEADER = struct.Struct("<IIIIHHII")
GSI_SIGNATURE = 0xFFFFFFFF
GSI_VERSION = 0xEFFE0000 + 19990810
IPHR_HASH = 4096
_BITMAP_WORDS = (IPHR_HASH + 32) // 32      # 4097 bits -> 129 words
_HR_IN_MEMORY_SIZE = 12                     # bucket offsets count 12-byte records (a 32-bit in-memory struct)
_DECODE_CACHE = 1 << 16


class Symbol(NamedTuple):
    """One decoded symbol record. Fields that a kind does not have are 0."""
    kind: int
    name: str
    segment: int = 0
    offset: int = 0
    type_index: int = 0
    flags: int = 0            # S_PUB32 flags (1 code, 2 function, 4 managed, 8 MSIL)
    value: int = 0            # S_CONSTANT
    module: int = 0           # S_PROCREF/S_LPROCREF: 1-based module index
    record_offset: int = 0    # where the record starts in its stream


class SymbolRecords:
    """The symbol record stream: records decoded one at a time, by offset, with a bounded cache."""

    def __init__(self, stream: MsfStream) -> None:
        self.stream = stream
        self._cache: Dict[int, Symbol] = {}

    def decode(self, offset: int) -> Symbol:
        cached = self._cache.get(offset)
        if cached is not None:
            return cached
        symbol = decode_symbol(self.stream, offset, self.stream.size)
        if len(self._cache) >= _DECODE_CACHE:
            self._cache.clear()
        self._cache[offset] = symbol
        return symbol

    def scan(self) -> Iterator[Symbol]:
        """Every record of the stream in order (only for enumeration; lookups use the hash tables)."""
        offset = 0
        while offset + 4 <= self.stream.size:
            symbol = self.decode(offset)              # validates the length before we step over it
            yield symbol
            offset += 2 + struct.unpack("<H", self.stream.read(offset, 2))[0]


def decode_symbol(stream: MsfStream, offset: int, limit: int) -> Symbol:
    """Decode the record at ``offset`` of ``stream`` (which must end before ``limit``)."""
    if offset < 0 or offset + 4 > limit:
        raise stream.error(offset, "symbol record offset past the end of the %d symbol bytes" % limit)
    length, kind = struct.unpack("<HH", stream.read(offset, 4))
    if length < 2 or offset + 2 + length > limit:
        raise stream.error(offset, "symbol record length %d runs past the end of the %d symbol bytes"
                           % (length, limit))
    p = stream.read(offset + 4, length - 2)
    try:
        if kind == cv.S_PUB32:
            flags, off, seg = cv.u32(p, 0), cv.u32(p, 4), cv.u16(p, 8)
            return Symbol(kind, cv.cstring(p, 10)[0], seg, off, flags=flags, record_offset=offset)
        if kind in (cv.S_GDATA32, cv.S_LDATA32, cv.S_GTHREAD32, cv.S_LTHREAD32):
            ti, off, seg = cv.u32(p, 0), cv.u32(p, 4), cv.u16(p, 8)
            return Symbol(kind, cv.cstring(p, 10)[0], seg, off, type_index=ti, record_offset=offset)
        if kind in (cv.S_PROCREF, cv.S_LPROCREF):
            sym_offset, module = cv.u32(p, 4), cv.u16(p, 8)
            return Symbol(kind, cv.cstring(p, 10)[0], offset=sym_offset, module=module, record_offset=offset)
        if kind == cv.S_CONSTANT:
            ti = cv.u32(p, 0)
            value, pos = cv.numeric(p, 4)
            return Symbol(kind, cv.cstring(p, pos)[0], type_index=ti, value=value, record_offset=offset)
        if kind == cv.S_UDT:
            return Symbol(kind, cv.cstring(p, 4)[0], type_index=cv.u32(p, 0), record_offset=offset)
        if kind in (cv.S_GPROC32, cv.S_LPROC32, cv.S_GPROC32_ID, cv.S_LPROC32_ID):
            ti, off, seg = cv.u32(p, 24), cv.u32(p, 28), cv.u16(p, 32)
            return Symbol(kind, cv.cstring(p, 35)[0], seg, off, type_index=ti, record_offset=offset)
    except CvDecodeError as exc:
        raise stream.error(offset, "%s record: %s" % (cv.SYMBOL_NAMES.get(kind, "0x%04x" % kind), exc))
    return Symbol(kind, "", record_offset=offset)


class GsiHash:
    """The hash table shared by the publics and globals streams, at ``[start, start + size)`` of ``stream``."""

    def __init__(self, stream: MsfStream, start: int, size: int, label: str) -> None:
        self._stream = stream
        self._label = label
        if size < _GSI_HEADER.size:
            raise stream.error(start, "%s hash of %d bytes is shorter than its header" % (label, size))
        signature, version, hr_size, bucket_bytes = stream.unpack(_GSI_HEADER, start)
        if signature != GSI_SIGNATURE or version != GSI_VERSION:
            raise stream.error(start, "%s hash header 0x%08x/0x%08x is not the VC 7.0 GSI format"
                               % (label, signature, version))
        if hr_size % 8 or _GSI_HEADER.size + hr_size + bucket_bytes > size:
            raise stream.error(start, "%s hash: %d record bytes + %d bucket bytes do not fit in %d bytes"
                               % (label, hr_size, bucket_bytes, size))
        self.count = hr_size // 8
        self._records_at = start + _GSI_HEADER.size
        buckets_at = self._records_at + hr_size
        self._starts: List[int] = []            # record index where each bucket starts (by bucket number)
        self._bucket_ids: List[int] = []
        if bucket_bytes:
            if bucket_bytes < 4 * _BITMAP_WORDS:
                raise stream.error(buckets_at, "%s hash: bucket bitmap of %d bytes" % (label, bucket_bytes))
            bitmap = struct.unpack("<%dI" % _BITMAP_WORDS, stream.read(buckets_at, 4 * _BITMAP_WORDS))
            ids = [32 * w + b for w, word in enumerate(bitmap) if word for b in range(32) if word >> b & 1]
            if 4 * (_BITMAP_WORDS + len(ids)) != bucket_bytes or (ids and ids[-1] > IPHR_HASH):
                raise stream.error(buckets_at, "%s hash: %d non-empty buckets do not match %d bucket bytes"
                                   % (label, len(ids), bucket_bytes))
            raw = struct.unpack("<%dI" % len(ids), stream.read(buckets_at + 4 * _BITMAP_WORDS, 4 * len(ids)))
            starts = []
            for value in raw:
                if value % _HR_IN_MEMORY_SIZE or value // _HR_IN_MEMORY_SIZE > self.count:
                    raise stream.error(buckets_at, "%s hash: bucket offset %d is not a record" % (label, value))
                starts.append(value // _HR_IN_MEMORY_SIZE)
            if any(a > b for a, b in zip(starts, starts[1:])):
                raise stream.error(buckets_at, "%s hash: bucket offsets are not ascending" % label)
            self._starts, self._bucket_ids = starts, ids

    def _record_offsets(self, first: int, stop: int) -> List[int]:
        """Symbol record stream offsets of hash records ``[first, stop)``."""
        if stop <= first:
            return []
        flat = struct.unpack("<%dI" % (2 * (stop - first)), self._stream.read(self._records_at + 8 * first,
                                                                                8 * (stop - first)))
        result = []
        for index, value in enumerate(flat[0::2]):
            if value == 0:
                raise self._stream.error(self._records_at + 8 * (first + index),
                                         "%s hash record %d has symbol offset 0" % (self._label, first + index))
            result.append(value - 1)
        return result

    def bucket(self, name: str) -> List[int]:
        """Symbol record offsets in the bucket ``name`` hashes to."""
        bucket = cv.hash_string_v1(name.encode("utf-8")) % IPHR_HASH
        pos = bisect.bisect_left(self._bucket_ids, bucket)
        if pos >= len(self._bucket_ids) or self._bucket_ids[pos] != bucket:
            return []
        stop = self._starts[pos + 1] if pos + 1 < len(self._starts) else self.count
        return self._record_offsets(self._starts[pos], stop)

    def all_offsets(self) -> List[int]:
        return self._record_offsets(0, self.count)


class GlobalsStream:
    """The globals index: data, typedefs, constants and procedure references, by name."""

    def __init__(self, stream: MsfStream, records: SymbolRecords) -> None:
        self._records = records
        self.hash = GsiHash(stream, 0, stream.size, "globals")

    def lookup(self, name: str) -> List[Symbol]:
        found = [self._records.decode(offset) for offset in self.hash.bucket(name)]
        return [symbol for symbol in found if symbol.name == name]

    def all(self) -> Iterator[Symbol]:
        for offset in self.hash.all_offsets():
            yield self._records.decode(offset)


class PublicsStream:
    """The publics index: by name through the hash, by address through the sorted address map."""

    def __init__(self, stream: MsfStream, records: SymbolRecords, dbi: DbiStream) -> None:
        self._stream = stream
        self._records = records
        self._dbi = dbi
        if stream.size < _PSGSI_HEADER.size:
            raise stream.error(0, "publics stream of %d bytes is shorter than its 28-byte header" % stream.size)
        (hash_bytes, addr_map_bytes, self.num_thunks, _thunk_size, _thunk_section, _pad, _thunk_offset,
         _num_sections) = stream.unpack(_PSGSI_HEADER, 0)
        if _PSGSI_HEADER.size + hash_bytes + addr_map_bytes > stream.size or addr_map_bytes % 4:
            raise stream.error(0, "publics stream: hash of %d bytes and address map of %d bytes do not fit in %d"
                               % (hash_bytes, addr_map_bytes, stream.size))
        self.hash = GsiHash(stream, _PSGSI_HEADER.size, hash_bytes, "publics")
        self._addr_map_at = _PSGSI_HEADER.size + hash_bytes
        self._addr_count = addr_map_bytes // 4
        self._addr_map: Optional[Sequence[int]] = None
        self._keys: Dict[int, Tuple[int, int]] = {}                # address map index -> (segment, offset)
        self._sorted: Optional[List[Tuple[int, int, str]]] = None   # (rva, index, name) when keys are not RVA order
        self._starts: Optional[List[int]] = None
        self._starts_known = False

    # -- by name ---------------------------------------------------------------------------------------------
    def lookup(self, name: str) -> List[Symbol]:
        found = [self._records.decode(offset) for offset in self.hash.bucket(name)]
        return [symbol for symbol in found if symbol.kind == cv.S_PUB32 and symbol.name == name]

    # -- by address ------------------------------------------------------------------------------------------
    def address_map(self) -> Sequence[int]:
        if self._addr_map is None:
            offsets = array("I", self._stream.read(self._addr_map_at, 4 * self._addr_count))
            if sys.byteorder == "big":
                offsets.byteswap()
            self._addr_map = offsets
        return self._addr_map

    def entry(self, index: int) -> Symbol:
        symbol = self._records.decode(self.address_map()[index])
        if symbol.kind != cv.S_PUB32:
            raise self._stream.error(self._addr_map_at + 4 * index, "address map entry %d points at a %s record, "
                                     "not S_PUB32" % (index, cv.SYMBOL_NAMES.get(symbol.kind, "0x%04x" % symbol.kind)))
        return symbol

    def _key(self, index: int) -> Tuple[int, int]:
        key = self._keys.get(index)
        if key is None:
            symbol = self.entry(index)
            key = (symbol.segment, symbol.offset)
            self._keys[index] = key
        return key

    def __len__(self) -> int:
        return self._addr_count

    def _section_starts(self) -> Optional[List[int]]:
        """Start RVAs of the sections ``segment`` numbers index, or None when a binary search on
        segment:offset would be wrong (sections out of address order, or OMAP reordering addresses):
        then all publics are sorted by RVA once instead."""
        if not self._starts_known:
            self._starts_known = True
            sections = self._dbi.address_sections()
            starts = [section.virtual_address for section in sections]
            ordered = all(a <= b for a, b in zip(starts, starts[1:]))
            self._starts = None if self._dbi.has_omap or not ordered else starts
        return self._starts

    def _table(self) -> List[Tuple[int, int, str]]:
        if self._sorted is None:
            table = []
            for index in range(self._addr_count):
                symbol = self.entry(index)
                rva = self._dbi.rva(symbol.segment, symbol.offset)
                if rva is not None:
                    table.append((rva, index, symbol.name))
            table.sort()
            self._sorted = table
        return self._sorted

    def nearest(self, rva: int) -> Optional[Tuple[str, int]]:
        """``(name, rva)`` of the public at or closest below ``rva``; ties go to the first in map order."""
        if self._addr_count == 0:
            return None
        starts = self._section_starts()
        if starts is None:
            table = self._table()
            pos = bisect.bisect_right(table, (rva, self._addr_count, "")) - 1
            if pos < 0:
                return None
            found_rva = table[pos][0]
            while pos > 0 and table[pos - 1][0] == found_rva:
                pos -= 1
            return table[pos][2], found_rva
        section = bisect.bisect_right(starts, rva) - 1
        if section < 0:
            return None
        target = (section + 1, rva - starts[section])
        lo, hi = 0, self._addr_count
        while lo < hi:
            mid = (lo + hi) // 2
            if self._key(mid) <= target:
                lo = mid + 1
            else:
                hi = mid
        index = lo - 1
        if index < 0:
            return None
        key = self._key(index)
        if not 1 <= key[0] <= len(starts):
            return None
        while index > 0 and self._key(index - 1) == key:
            index -= 1
        found = self._dbi.rva(*key)
        if found is None:
            return None
        return self.entry(index).name, found

    def all(self) -> Iterator[Symbol]:
        """Every public in address-map order."""
        for index in range(self._addr_count):
            yield self.entry(index)


def resolve_procref(symbol: Symbol, dbi: DbiStream,
                    decode: Callable[[MsfStream, int, int], Symbol] = decode_symbol) -> Optional[Symbol]:
    """The ``S_GPROC32``/``S_LPROC32`` an ``S_PROCREF``/``S_LPROCREF`` points at (None if stripped)."""
    if symbol.module == 0:
        return None
    modules = dbi.modules()
    if symbol.module > len(modules) or modules[symbol.module - 1].symbol_stream is None:
        return None
    stream, symbol_bytes = dbi.module_stream(symbol.module - 1)
    target = decode(stream, symbol.offset, min(symbol_bytes, stream.size))
    if target.kind not in (cv.S_GPROC32, cv.S_LPROC32, cv.S_GPROC32_ID, cv.S_LPROC32_ID):
        return None
    return target
