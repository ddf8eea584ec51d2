"""The TPI stream (stream 2): CodeView type records, looked up lazily by type index and by name.

Why lazy, and how: a kernel PDB holds 100k+ type records and a triage session asks for a few dozen
structures. Nothing is decoded at open. To find record N we use the TPI hash stream's "index offset"
checkpoints (a (type index, byte offset) pair every ~8 KB) and walk record lengths from the nearest one.
To find a structure by name we hash the name the way the linker did (``hashStringV1`` modulo the
bucket count; llvm.org/docs/PDB/TpiStream.html) and decode only the records whose stored hash value is
that bucket. Forward references (``struct _FOO *`` usually points at a size-0 forward declaration) are
resolved by unique name when the record has one, else by name, through the same hash.

If the hash stream is missing, its buffers do not fit, or a spot check shows its values are not the
hash we compute, we fall back to one scan over the record headers (offsets, then names), once.

Records become the shared type model (:mod:`pytriage.symbols.types`): ``TypeRef`` for what a field or
pointer refers to, ``StructLayout``/``EnumLayout`` for a named type. Anonymous structs/unions/enums
(``<unnamed-tag>``, ``<unnamed-type-u>``, ``_S::<unnamed-tag>``) have names that are not unique, so
their ``TypeRef``/layout name gets the type index appended (``_S::<unnamed-tag>#0x100D``), which
``layout_by_name`` accepts back. Reference chains (pointer to pointer to ..., modifiers, arrays) are
followed at most :data:`MAX_DEPTH` deep and field-list continuations (``LF_INDEX``) are followed once
each, so hostile self-referencing records end in a ``SymbolError``, never in a hang or RecursionError.
"""

import bisect
import re
import struct
from array import array
from dataclasses import replace
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from pytriage.errors import SymbolError
from pytriage.symbols.pdb import codeview as cv
from pytriage.symbols.pdb.codeview import CvDecodeError
from pytriage.symbols.pdb.msf import NIL_STREAM_INDEX, MsfFile, MsfStream
from pytriage.symbols.types import EnumLayout, Field, StructLayout, TypeLayout, TypeRef

_HEADER = struct.Struct("<IIIIIHHIIiIiIiI")
TPI_VERSION_V70 = 19990903
TPI_VERSION_V80 = 20040203
FIRST_NONSIMPLE_INDEX = 0x1000
MAX_DEPTH = 64                        # reference chains deeper than this are treated as cycles
_MAX_HASH_BUCKETS = 0x40000
_RECORD_CACHE = 4096                  # decoded record payloads kept (cleared when full)
_HASH_SPOT_CHECKS = 8                 # named definitions whose stored hash we verify before trusting misses
_HASH_SPOT_WINDOW = 4096              # ... among the first this many records
_SUFFIXED = re.compile(r"^(.*)#0x([0-9A-Fa-f]+)$")

_UDT_KIND = {
    cv.LF_STRUCTURE: "struct", cv.LF_CLASS: "class", cv.LF_INTERFACE: "class", cv.LF_UNION: "union",
    cv.LF_ENUM: "enum", cv.LF_STRUCTURE2: "struct", cv.LF_CLASS2: "class", cv.LF_INTERFACE2: "class",
    cv.LF_UNION2: "union",
}
# Kinds whose hash value the linker derives from the name (hashStringV1); the *2 kinds are unverified.
_NAME_HASHED = (cv.LF_STRUCTURE, cv.LF_CLASS, cv.LF_INTERFACE, cv.LF_UNION, cv.LF_ENUM)

# Simple (primitive) type kinds: low byte of a type index below 0x1000 -> (C name, size).
_SIMPLE: Dict[int, Tuple[str, int]] = {
    0x00: ("<no type>", 0), 0x01: ("<absolute>", 0), 0x02: ("<segment>", 0), 0x03: ("void", 0),
    0x08: ("HRESULT", 4), 0x10: ("signed char", 1), 0x20: ("unsigned char", 1), 0x70: ("char", 1),
    0x71: ("wchar_t", 2), 0x7A: ("char16_t", 2), 0x7B: ("char32_t", 4), 0x7C: ("char8_t", 1),
    0x68: ("signed char", 1), 0x69: ("unsigned char", 1), 0x11: ("short", 2), 0x21: ("unsigned short", 2),
    0x72: ("short", 2), 0x73: ("unsigned short", 2), 0x12: ("long", 4), 0x22: ("unsigned long", 4),
    0x74: ("int", 4), 0x75: ("unsigned int", 4), 0x13: ("long long", 8), 0x23: ("unsigned long long", 8),
    0x76: ("long long", 8), 0x77: ("unsigned long long", 8), 0x14: ("__int128", 16),
    0x24: ("unsigned __int128", 16), 0x78: ("__int128", 16), 0x79: ("unsigned __int128", 16),
    0x40: ("float", 4), 0x41: ("double", 8), 0x42: ("long double", 10), 0x43: ("__float128", 16),
    0x44: ("__real48", 6), 0x45: ("float", 4), 0x46: ("_Float16", 2), 0x30: ("bool", 1),
    0x31: ("__bool16", 2), 0x32: ("__bool32", 4), 0x33: ("__bool64", 8), 0x50: ("_Complex float", 8),
    0x51: ("_Complex double", 16), 0x52: ("_Complex long double", 20), 0x53: ("_Complex __float128", 32),
}
_SIGNED = {"signed char", "char", "short", "int", "long", "long long", "__int128"}
# Pointer mode of a simple type index (bits 8-11) -> pointer size.
_SIMPLE_POINTER_SIZE = {1: 2, 2: 4, 3: 4, 4: 4, 5: 6, 6: 8, 7: 16}
# LF_POINTER kind (attribute bits 0-4) -> size, when the size bits are 0.
_POINTER_KIND_SIZE = {0x00: 2, 0x01: 4, 0x02: 4, 0x0A: 4, 0x0B: 6, 0x0C: 8}
_MODIFIER_ORDER = ("const", "volatile", "unaligned")


class UdtHead(NamedTuple):
    """The header of a struct/class/union/enum record: enough to match names and resolve forward refs."""
    leaf: int
    kind: str                 # struct | class | union | enum
    props: int
    field_list: int
    size: int                 # bytes; for enums 0 (the underlying type gives it)
    name: str
    unique_name: str
    underlying: int           # enums: underlying type index

    @property
    def forward_ref(self) -> bool:
        return bool(self.props & cv.PROP_FWDREF)


def is_anonymous(name: str) -> bool:
    """Names the compilers give to unnamed structs/unions/enums: not unique, so never keys."""
    return ("<unnamed-" in name or "<anonymous-" in name or name == "__unnamed"
            or name.endswith("::__unnamed"))


def _linker_anonymous(name: str) -> bool:
    """LLVM's/MSVC's rule for "anonymous" when choosing which hash a UDT record gets."""
    return name in ("<unnamed-tag>", "__unnamed") or name.endswith(("::<unnamed-tag>", "::__unnamed"))


def _merge_modifiers(existing: Tuple[str, ...], added: Tuple[str, ...]) -> Tuple[str, ...]:
    present = set(existing) | set(added)
    return tuple(m for m in _MODIFIER_ORDER if m in present)


def simple_type_ref(index: int) -> TypeRef:
    """A type index below 0x1000: a primitive, or a pointer to one (``0x0603`` = ``void *``)."""
    base_kind, mode = index & 0xFF, (index >> 8) & 0x0F
    if index == 0x0103:            # MSVC encodes std::nullptr_t as a near pointer to void
        return TypeRef("base", "std::nullptr_t", 8)
    name, size = _SIMPLE.get(base_kind, ("<simple type 0x%04x>" % index, 0))
    base = TypeRef("base", name, size)
    if mode == 0:
        return base
    pointer_size = _SIMPLE_POINTER_SIZE.get(mode)
    if pointer_size is None:
        return TypeRef("base", "<simple type 0x%04x>" % index, 0)
    return TypeRef("pointer", size=pointer_size, target=base)


class TypeTable:
    """Lazy view of the TPI stream of one PDB. ``source`` labels layouts (``pdb:ndis.pdb``)."""

    def __init__(self, msf: MsfFile, stream: MsfStream, source: str,
                 typedef_lookup: Optional[Callable[[str], Optional[int]]] = None) -> None:
        self._msf = msf
        self._stream = stream
        self.source = source
        self._typedef_lookup = typedef_lookup
        if stream.size < _HEADER.size:
            raise stream.error(0, "TPI stream of %d bytes is shorter than its 56-byte header" % stream.size)
        (self.version, header_size, self.begin, self.end, record_bytes, hash_stream, _aux_stream, hash_key_size,
         hash_buckets, hv_off, hv_len, io_off, io_len, _adj_off, _adj_len) = stream.unpack(_HEADER, 0)
        if self.version not in (TPI_VERSION_V70, TPI_VERSION_V80):
            raise stream.error(0, "TPI version %d (only V70 %d and V80 %d are read)"
                               % (self.version, TPI_VERSION_V70, TPI_VERSION_V80))
        if header_size < _HEADER.size or header_size + record_bytes > stream.size:
            raise stream.error(4, "header size %d + record bytes %d do not fit in the %d-byte stream"
                               % (header_size, record_bytes, stream.size))
        if self.begin < FIRST_NONSIMPLE_INDEX or self.end < self.begin or self.end - self.begin > record_bytes // 4:
            raise stream.error(8, "type index range 0x%x-0x%x does not fit %d record bytes"
                               % (self.begin, self.end, record_bytes))
        self._header_size = header_size
        self._record_bytes = record_bytes
        self.count = self.end - self.begin
        self._hash_info = (hash_stream, hash_key_size, hash_buckets, hv_off, hv_len, io_off, io_len)
        self._hash_loaded = False
        self._hash_values: Optional[bytes] = None         # one little-endian u32 per record
        self._hash_buckets = 0
        self._hash_trusted: Optional[bool] = None
        self._checkpoints: Optional[List[Tuple[int, int]]] = None
        self._checkpoint_tis: List[int] = []
        self._offsets: Dict[int, int] = {}                 # type index -> record offset, filled as we walk
        self._all_offsets: Optional[array] = None          # after a full scan
        self._name_index: Optional[Dict[str, int]] = None  # fallback: name -> definition
        self._unique_index: Optional[Dict[str, int]] = None
        self._records: Dict[int, Tuple[int, bytes]] = {}
        self._refs: Dict[int, TypeRef] = {}
        self._definitions: Dict[int, Optional[int]] = {}   # forward ref -> definition (None: none)
        self._layouts: Dict[int, Optional[TypeLayout]] = {}

    # -- errors ---------------------------------------------------------------------------------------------
    def _error(self, ti: int, what: str) -> SymbolError:
        offset = self._offsets.get(ti)
        if offset is None and self._all_offsets is not None and self.begin <= ti < self.end:
            offset = self._all_offsets[ti - self.begin]
        where = self._header_size + offset if offset is not None else 0
        return self._stream.error(where, "type 0x%x: %s" % (ti, what))

    # -- hash stream ----------------------------------------------------------------------------------------
    def _load_hash(self) -> None:
        """Read the hash values and index offsets once; anything inconsistent just disables them."""
        if self._hash_loaded:
            return
        self._hash_loaded = True
        stream_number, key_size, buckets, hv_off, hv_len, io_off, io_len = self._hash_info
        if stream_number == NIL_STREAM_INDEX or not self._msf.has_stream(stream_number):
            return
        hash_stream = self._msf.stream(stream_number, "TPI hash stream")

        def fits(offset: int, length: int) -> bool:
            return offset >= 0 and length >= 0 and offset + length <= hash_stream.size

        if key_size == 4 and 0 < buckets <= _MAX_HASH_BUCKETS and hv_len == 4 * self.count and fits(hv_off, hv_len):
            self._hash_values = hash_stream.read(hv_off, hv_len)
            self._hash_buckets = buckets
        if io_len % 8 == 0 and fits(io_off, io_len) and io_len // 8 <= self.count + 1:
            flat = struct.unpack("<%dI" % (io_len // 4), hash_stream.read(io_off, io_len))
            points = list(zip(flat[0::2], flat[1::2]))
            if not points or points[0][0] != self.begin:
                points.insert(0, (self.begin, 0))
            ok = points[0] == (self.begin, 0) and all(
                self.begin <= ti < self.end and off < self._record_bytes for ti, off in points)
            ok = ok and all(a[0] < b[0] and a[1] < b[1] for a, b in zip(points, points[1:]))
            if ok:
                self._checkpoints = points
                self._checkpoint_tis = [ti for ti, _ in points]

    # -- record offsets -------------------------------------------------------------------------------------
    def _check_index(self, ti: int) -> None:
        if ti < self.begin or ti >= self.end:
            raise self._stream.error(0, "type index 0x%x outside the stream's range 0x%x-0x%x"
                                     % (ti, self.begin, self.end))

    def _offset(self, ti: int) -> int:
        known = self._offsets.get(ti)
        if known is not None:
            return known
        if self._all_offsets is not None:
            return self._all_offsets[ti - self.begin]
        self._load_hash()
        if self._checkpoints is not None and self._walk_from_checkpoint(ti):
            return self._offsets[ti]
        self._scan_offsets()
        assert self._all_offsets is not None
        return self._all_offsets[ti - self.begin]

    def _walk_from_checkpoint(self, ti: int) -> bool:
        """Walk record lengths from the checkpoint at or below ``ti`` to the next one; False if they disagree."""
        assert self._checkpoints is not None
        pos = bisect.bisect_right(self._checkpoint_tis, ti) - 1
        start_ti, start = self._checkpoints[pos]
        if pos + 1 < len(self._checkpoints):
            stop_ti, stop = self._checkpoints[pos + 1]
        else:
            stop_ti, stop = self.end, self._record_bytes
        chunk = self._stream.read(self._header_size + start, stop - start)
        offset, current = 0, start_ti
        found: Dict[int, int] = {}
        while current < stop_ti:
            if offset + 4 > len(chunk):
                break
            length = struct.unpack_from("<H", chunk, offset)[0]
            if length < 2:
                break
            found[current] = start + offset
            offset += 2 + length
            current += 1
        if current != stop_ti or offset != len(chunk):
            self._checkpoints = None              # the index offset buffer lies: stop using it
            return False
        self._offsets.update(found)
        return True

    def _scan_offsets(self) -> None:
        """One pass over all record lengths (no hash stream, or one we could not trust)."""
        data = self._stream.read(self._header_size, self._record_bytes)
        offsets = array("I")
        offset = 0
        for current in range(self.count):
            if offset + 4 > len(data):
                raise self._stream.error(self._header_size + offset, "type records end after %d of %d records"
                                         % (current, self.count))
            length = struct.unpack_from("<H", data, offset)[0]
            if length < 2 or offset + 2 + length > len(data):
                raise self._stream.error(self._header_size + offset, "type 0x%x: record length %d runs past "
                                         "the end of the type records" % (self.begin + current, length))
            offsets.append(offset)
            offset += 2 + length
        self._all_offsets = offsets

    # -- records --------------------------------------------------------------------------------------------
    def record(self, ti: int) -> Tuple[int, bytes]:
        """``(leaf kind, payload after the kind)`` of type ``ti``."""
        cached = self._records.get(ti)
        if cached is not None:
            return cached
        self._check_index(ti)
        offset = self._offset(ti)
        head = self._header_size + offset
        if offset + 4 > self._record_bytes:
            raise self._error(ti, "record header past the end of the type records")
        length, kind = struct.unpack("<HH", self._stream.read(head, 4))
        if length < 2 or offset + 2 + length > self._record_bytes:
            raise self._error(ti, "record length %d runs past the end of the type records" % length)
        payload = self._stream.read(head + 4, length - 2)
        if len(self._records) >= _RECORD_CACHE:
            self._records.clear()
        self._records[ti] = (kind, payload)
        return kind, payload

    def udt_head(self, ti: int) -> Optional[UdtHead]:
        """Header of a struct/class/union/enum record, or None if ``ti`` is another kind of record."""
        kind, p = self.record(ti)
        udt_kind = _UDT_KIND.get(kind)
        if udt_kind is None:
            return None
        try:
            underlying = 0
            if kind in (cv.LF_STRUCTURE, cv.LF_CLASS, cv.LF_INTERFACE):
                props, field_list = cv.u16(p, 2), cv.u32(p, 4)
                size, pos = cv.numeric(p, 16)
            elif kind == cv.LF_UNION:
                props, field_list = cv.u16(p, 2), cv.u32(p, 4)
                size, pos = cv.numeric(p, 8)
            elif kind == cv.LF_ENUM:
                props, underlying, field_list = cv.u16(p, 2), cv.u32(p, 4), cv.u32(p, 8)
                size, pos = 0, 12
            elif kind == cv.LF_UNION2:
                props, field_list = cv.u32(p, 0), cv.u32(p, 4)
                _count, pos = cv.numeric(p, 8)
                size, pos = cv.numeric(p, pos)
            else:                                      # LF_CLASS2 / LF_STRUCTURE2 / LF_INTERFACE2
                props, field_list = cv.u32(p, 0), cv.u32(p, 4)
                _count, pos = cv.numeric(p, 16)
                size, pos = cv.numeric(p, pos)
            name, pos = cv.cstring(p, pos)
            unique = cv.cstring(p, pos)[0] if props & cv.PROP_HAS_UNIQUE_NAME and pos < len(p) else ""
        except CvDecodeError as exc:
            raise self._error(ti, "%s: %s" % (cv.leaf_name(kind), exc))
        if size < 0:
            raise self._error(ti, "%s %s has negative size %d" % (cv.leaf_name(kind), name, size))
        return UdtHead(kind, udt_kind, props, field_list, size, name, unique, underlying)

    # -- name lookup ----------------------------------------------------------------------------------------
    def _hash_candidates(self, key: str) -> Iterator[int]:
        """Type indexes whose stored hash equals the bucket of ``key`` (ascending)."""
        values = self._hash_values
        if values is None:
            return
        bucket = cv.hash_string_v1(key.encode("utf-8")) % self._hash_buckets
        pattern = struct.pack("<I", bucket)
        pos = values.find(pattern)
        while pos >= 0:
            if pos % 4 == 0:
                yield self.begin + pos // 4
                pos = values.find(pattern, pos + 4)
            else:
                pos = values.find(pattern, pos + 1)

    def _hash_usable(self) -> bool:
        """Use the hash for lookups only if its values are the hash we compute for a few named types."""
        self._load_hash()
        if self._hash_values is None:
            return False
        if self._hash_trusted is None:
            self._hash_trusted = self._spot_check_hash()
        return self._hash_trusted

    def _spot_check_hash(self) -> bool:
        assert self._hash_values is not None
        checked = 0
        for ti in range(self.begin, min(self.end, self.begin + _HASH_SPOT_WINDOW)):
            head = self.udt_head(ti)
            if (head is None or head.leaf not in _NAME_HASHED or head.forward_ref or head.props & cv.PROP_SCOPED
                    or _linker_anonymous(head.name)):
                continue
            stored = struct.unpack_from("<I", self._hash_values, 4 * (ti - self.begin))[0]
            if stored != cv.hash_string_v1(head.name.encode("utf-8")) % self._hash_buckets:
                return False
            checked += 1
            if checked >= _HASH_SPOT_CHECKS:
                break
        return True

    def _build_name_index(self) -> None:
        """Fallback: one pass over every record header, remembering the first definition of each name."""
        names: Dict[str, int] = {}
        uniques: Dict[str, int] = {}
        for ti in range(self.begin, self.end):
            head = self.udt_head(ti)
            if head is None or head.forward_ref:
                continue
            names.setdefault(head.name, ti)
            if head.unique_name:
                uniques.setdefault(head.unique_name, ti)
        self._name_index, self._unique_index = names, uniques

    def find_definition(self, name: str, unique_name: str = "", family: Optional[str] = None) -> Optional[int]:
        """Type index of the (non-forward) definition named ``name``; unique name wins when given.

        ``family`` restricts the match to ``"enum"`` or to struct-like kinds (``"record"``).
        """
        def fits(head: Optional[UdtHead]) -> bool:
            if head is None or head.forward_ref:
                return False
            return family is None or (head.kind == "enum") == (family == "enum")

        if self._hash_usable():
            by_name: Optional[int] = None
            for key in (name, unique_name) if unique_name and unique_name != name else (name,):
                for ti in self._hash_candidates(key):
                    head = self.udt_head(ti)
                    if not fits(head):
                        continue
                    assert head is not None
                    if unique_name and head.unique_name == unique_name:
                        return ti
                    if by_name is None and head.name == name and (not unique_name or not head.unique_name):
                        by_name = ti
                if by_name is not None:
                    return by_name
            return None
        if self._name_index is None:
            self._build_name_index()
        assert self._name_index is not None and self._unique_index is not None
        if unique_name and unique_name in self._unique_index:
            ti = self._unique_index[unique_name]
        else:
            ti = self._name_index.get(name)
        if ti is not None and fits(self.udt_head(ti)):
            return ti
        return None

    def find_by_unique_name(self, unique_name: str) -> Optional[int]:
        """Type index of the definition whose decorated unique name is ``unique_name`` (``.?AUFoo@@``).

        Function-local ("scoped") types are hashed by unique name, not by name, so this is how to reach
        them; it also tells apart same-named types of different scopes. Other types are hashed by their
        plain name, which a decorated name does not give back reliably (templates): for those a miss in
        the unique-name bucket costs the one-time header scan.
        """
        if self._hash_usable():
            for ti in self._hash_candidates(unique_name):
                head = self.udt_head(ti)
                if head is not None and not head.forward_ref and head.unique_name == unique_name:
                    return ti
        if self._unique_index is None:
            self._build_name_index()
        assert self._unique_index is not None
        return self._unique_index.get(unique_name)

    def definition_of(self, ti: int) -> Optional[int]:
        """``ti`` itself if it is a definition, else the definition its forward reference names (or None)."""
        if ti in self._definitions:
            return self._definitions[ti]
        head = self.udt_head(ti)
        result: Optional[int] = None
        if head is not None:
            if not head.forward_ref:
                result = ti
            else:
                result = self.find_definition(head.name, head.unique_name,
                                              "enum" if head.kind == "enum" else "record")
        self._definitions[ti] = result
        return result

    # -- names ----------------------------------------------------------------------------------------------
    @staticmethod
    def display_name(head: UdtHead, ti: int) -> str:
        return "%s#0x%X" % (head.name, ti) if is_anonymous(head.name) else head.name

    # -- type references ------------------------------------------------------------------------------------
    def type_ref(self, ti: int, depth: int = 0) -> TypeRef:
        """What a field or pointer of type ``ti`` refers to, with forward references resolved."""
        if ti < FIRST_NONSIMPLE_INDEX:
            return simple_type_ref(ti)
        cached = self._refs.get(ti)
        if cached is not None:
            return cached
        if depth > MAX_DEPTH:
            raise self._error(ti, "type references nest deeper than %d (a reference cycle?)" % MAX_DEPTH)
        kind, p = self.record(ti)
        try:
            ref = self._decode_ref(ti, kind, p, depth)
        except CvDecodeError as exc:
            raise self._error(ti, "%s: %s" % (cv.leaf_name(kind), exc))
        self._refs[ti] = ref
        return ref

    def _decode_ref(self, ti: int, kind: int, p: bytes, depth: int) -> TypeRef:
        if kind == cv.LF_POINTER:
            referent, attrs = cv.u32(p, 0), cv.u32(p, 4)
            size = (attrs >> 13) & 0x3F or _POINTER_KIND_SIZE.get(attrs & 0x1F, 8)
            modifiers = tuple(m for m, bit in (("const", 0x400), ("volatile", 0x200), ("unaligned", 0x800))
                              if attrs & bit)
            target = self.type_ref(referent, depth + 1)
            return TypeRef("pointer", size=size, target=target, modifiers=_merge_modifiers((), modifiers))
        if kind == cv.LF_MODIFIER:
            referent, flags = cv.u32(p, 0), cv.u16(p, 4)
            added = tuple(m for m, bit in (("const", 1), ("volatile", 2), ("unaligned", 4)) if flags & bit)
            inner = self.type_ref(referent, depth + 1)
            return replace(inner, modifiers=_merge_modifiers(inner.modifiers, added))
        if kind == cv.LF_ARRAY:
            element, _index_type = cv.u32(p, 0), cv.u32(p, 4)
            size, _pos = cv.numeric(p, 8)
            if size < 0:
                raise CvDecodeError("negative array size %d" % size)
            target = self.type_ref(element, depth + 1)
            count = size // target.size if target.size else 0
            return TypeRef("array", size=size, target=target, count=count)
        if kind == cv.LF_BITFIELD:
            return self.type_ref(cv.u32(p, 0), depth + 1)
        if kind in (cv.LF_PROCEDURE, cv.LF_MFUNCTION):
            return TypeRef("function")
        if kind in _UDT_KIND:
            head = self.udt_head(ti)
            assert head is not None
            definition = self.definition_of(ti)
            if definition is not None and definition != ti:
                head, ti = self.udt_head(definition), definition
                assert head is not None
            if head.kind == "enum":
                return TypeRef("enum", self.display_name(head, ti), self._enum_size(head, ti, depth))
            return TypeRef(head.kind, self.display_name(head, ti), 0 if head.forward_ref else head.size)
        return TypeRef("base", "<%s>" % cv.leaf_name(kind), 0)

    def _enum_size(self, head: UdtHead, ti: int, depth: int) -> int:
        if head.underlying == 0:
            return 4
        if head.underlying == ti:
            raise self._error(ti, "enum %s is its own underlying type" % head.name)
        return self.type_ref(head.underlying, depth + 1).size

    # -- layouts --------------------------------------------------------------------------------------------
    def layout(self, ti: int) -> Optional[TypeLayout]:
        """The struct/union/class/enum at ``ti`` (forward references resolved), or None if not one."""
        definition = self.definition_of(ti)
        if definition is None:
            return None
        if definition in self._layouts:
            return self._layouts[definition]
        head = self.udt_head(definition)
        assert head is not None
        result: TypeLayout
        if head.kind == "enum":
            result = self._enum_layout(definition, head)
        else:
            result = self._struct_layout(definition, head)
        self._layouts[definition] = result
        return result

    def layout_by_name(self, name: str) -> Optional[TypeLayout]:
        """A struct/union/class/enum by tag name (``_LIST_ENTRY``), by ``name#0x1234`` as this reader
        names anonymous types, by decorated unique name (``.?AUFoo@@``, the only key of function-local
        types), or by a typedef name when the caller gave us a typedef lookup."""
        suffixed = _SUFFIXED.match(name)
        if suffixed:
            ti = int(suffixed.group(2), 16)
            if not self.begin <= ti < self.end:
                return None
            head = self.udt_head(ti)
            if head is None or head.name != suffixed.group(1):
                return None
            return self.layout(ti)
        ti = self.find_definition(name)
        if ti is None and name.startswith(".?A"):
            ti = self.find_by_unique_name(name)
        if ti is None and self._typedef_lookup is not None:
            target = self._typedef_lookup(name)
            if target is not None and target >= FIRST_NONSIMPLE_INDEX and self.begin <= target < self.end:
                ti = target
        return self.layout(ti) if ti is not None else None

    def _members(self, owner: int, first: int) -> List[Tuple[str, tuple]]:
        """Decode a field list (and its LF_INDEX continuations) into ``(what, data)`` items.

        ``what`` is ``member`` (name, type, offset), ``base`` (type, offset), ``vfptr`` (type, offset) or
        ``enumerate`` (name, value). Methods, nested types, statics and friends are stepped over.
        """
        items: List[Tuple[str, tuple]] = []
        if first == 0:
            return items
        seen = set()
        pending = [first]
        while pending:
            list_ti = pending.pop()
            if list_ti in seen:
                raise self._error(owner, "field list continuation 0x%x loops back" % list_ti)
            seen.add(list_ti)
            if list_ti < FIRST_NONSIMPLE_INDEX:
                raise self._error(owner, "field list index 0x%x is a simple type" % list_ti)
            kind, p = self.record(list_ti)
            if kind != cv.LF_FIELDLIST:
                raise self._error(owner, "field list 0x%x is a %s record" % (list_ti, cv.leaf_name(kind)))
            try:
                self._decode_field_list(p, items, pending)
            except CvDecodeError as exc:
                raise self._error(list_ti, "LF_FIELDLIST of type 0x%x: %s" % (owner, exc))
        return items

    @staticmethod
    def _decode_field_list(p: bytes, items: List[Tuple[str, tuple]], pending: List[int]) -> None:
        pos = 0
        end = len(p)
        while pos < end:
            if p[pos] >= 0xF0:                       # LF_PADn: skip n bytes of alignment padding
                pos += (p[pos] & 0x0F) or 1
                continue
            leaf = cv.u16(p, pos)
            start = pos
            pos += 2
            if leaf == cv.LF_MEMBER:
                ftype = cv.u32(p, pos + 2)
                offset, pos = cv.numeric(p, pos + 6)
                name, pos = cv.cstring(p, pos)
                items.append(("member", (name, ftype, offset)))
            elif leaf == cv.LF_ENUMERATE:
                value, pos = cv.numeric(p, pos + 2)
                name, pos = cv.cstring(p, pos)
                items.append(("enumerate", (name, value)))
            elif leaf == cv.LF_BCLASS:
                btype = cv.u32(p, pos + 2)
                offset, pos = cv.numeric(p, pos + 6)
                items.append(("base", (btype, offset)))
            elif leaf in (cv.LF_VBCLASS, cv.LF_IVBCLASS):
                cv.u32(p, pos + 6)
                _vbptr_offset, pos = cv.numeric(p, pos + 10)
                _vbtable_index, pos = cv.numeric(p, pos)
            elif leaf == cv.LF_INDEX:
                pending.append(cv.u32(p, pos + 2))
                pos += 6
            elif leaf == cv.LF_VFUNCTAB:
                items.append(("vfptr", (cv.u32(p, pos + 2), 0)))
                pos += 6
            elif leaf == cv.LF_VFUNCOFF:
                vtype, offset = cv.u32(p, pos + 2), cv.u32(p, pos + 6)
                items.append(("vfptr", (vtype, offset)))
                pos += 10
            elif leaf in (cv.LF_STMEMBER, cv.LF_NESTTYPE, cv.LF_NESTTYPEEX, cv.LF_FRIENDFCN):
                cv.u32(p, pos + 2)
                pos = cv.cstring(p, pos + 6)[1]
            elif leaf == cv.LF_ONEMETHOD:
                attrs = cv.u16(p, pos)
                cv.u32(p, pos + 2)
                pos += 6
                if (attrs >> 2) & 7 in (4, 6):     # introducing virtual: a vtable offset follows
                    cv.u32(p, pos)
                    pos += 4
                pos = cv.cstring(p, pos)[1]
            elif leaf == cv.LF_METHOD:
                cv.u32(p, pos + 2)
                pos = cv.cstring(p, pos + 6)[1]
            elif leaf == cv.LF_FRIENDCLS:
                cv.u32(p, pos + 2)
                pos += 6
            else:
                raise CvDecodeError("unknown member leaf 0x%04x at byte %d" % (leaf, start))
            if pos > end:
                raise CvDecodeError("member at byte %d runs past the end of the record" % start)

    def _struct_layout(self, ti: int, head: UdtHead) -> StructLayout:
        fields: List[Field] = []
        for what, data in self._members(ti, head.field_list):
            if what == "member":
                name, ftype, offset = data
                if offset < 0:
                    raise self._error(ti, "member %s has negative offset %d" % (name, offset))
                bit_position = bit_length = None
                if ftype >= FIRST_NONSIMPLE_INDEX:
                    kind, p = self.record(ftype)
                    if kind == cv.LF_BITFIELD:
                        try:
                            base_type, bit_length, bit_position = cv.u32(p, 0), cv.u8(p, 4), cv.u8(p, 5)
                        except CvDecodeError as exc:
                            raise self._error(ftype, "LF_BITFIELD: %s" % exc)
                        ftype = base_type
                fields.append(Field(name, offset, self.type_ref(ftype), bit_position, bit_length))
            elif what == "base":
                btype, offset = data
                ref = self.type_ref(btype)
                fields.append(Field("<base %s>" % ref.describe(), offset, ref))
            elif what == "vfptr":
                vtype, offset = data
                fields.append(Field("__VFN_table", offset, self.type_ref(vtype)))
        return StructLayout(self.display_name(head, ti), head.kind, head.size, tuple(fields), source=self.source)

    def _enum_layout(self, ti: int, head: UdtHead) -> EnumLayout:
        base = self.type_ref(head.underlying) if head.underlying else TypeRef("base", "int", 4)
        bits = 8 * base.size
        signed = base.kind == "base" and base.name in _SIGNED
        values: List[Tuple[str, int]] = []
        for what, data in self._members(ti, head.field_list):
            if what == "enumerate":
                name, value = data
                # Compilers write negative enumerators of signed enums as either LF_LONG (-2) or LF_ULONG
                # (0xFFFFFFFE); both mean -2 for a signed underlying type.
                if signed and bits and (1 << (bits - 1)) <= value < (1 << bits):
                    value -= 1 << bits
                values.append((name, value))
        return EnumLayout(self.display_name(head, ti), base.size, base.describe(), tuple(values), source=self.source)

    # -- enumeration ----------------------------------------------------------------------------------------
    def type_names(self) -> List[str]:
        """Names of every defined struct/union/class/enum (decodes every record header: slow on big PDBs)."""
        names = set()
        for ti in range(self.begin, self.end):
            head = self.udt_head(ti)
            if head is not None and not head.forward_ref:
                names.add(self.display_name(head, ti))
        return sorted(names)
