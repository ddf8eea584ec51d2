"""The spec's ``pool`` section: classic pool pages, big pool allocations, special pool, PoolTrackTable.

Pool pages are laid out as Windows lays out a classic page: headers chained by PreviousSize/BlockSize
(PoolType 2 nonpaged / 3 paged when allocated, 0 when free, the encoding the real 19041 corpus dump
shows), the rest of the page a free block. A block's data may be longer than its data area: the
builder writes every header first and the data afterwards, so the extra bytes overwrite the next
header, which is how an overrun looks in a real dump. ``header`` replaces a header's 16 bytes outright
(a 0x19-style damaged chain).

Big pool allocations get an entry in ``nt!PoolBigPageTable``; special-pool allocations get a page of
their own with the fill byte around them and an unmapped guard page after; ``track`` fills
``nt!PoolTrackTable``. Layouts are 19041 x64 (``isf.kernel_types`` carries the same types, checked
against the corpus ISF).
"""

import struct
from dataclasses import dataclass, field
from typing import Any, List, Optional

from pytriage.errors import SpecError
from pytriage.scenarios.spec import parse_data, parse_int
from pytriage.scenarios.spec import require_list as seq
from pytriage.scenarios.spec import require_object as obj

PAGE = 0x1000
BIG_ENTRY = 0x18
TRACK_ENTRY = 0x38
_TYPES = {"nonpaged": 0x2, "paged": 0x3}
_POOL_TYPE_ENUM = {"nonpaged": 0x200, "paged": 0x1}      # NonPagedPoolNx, PagedPool: what drivers pass


def _tag(value: Any, path: str) -> int:
    if not isinstance(value, str) or not 1 <= len(value) <= 4 or any(not 0x20 <= ord(c) < 0x7F for c in value):
        raise SpecError("%s: a tag is one to four printable ASCII characters" % path)
    return struct.unpack("<I", value.ljust(4).encode("ascii"))[0]


def _kind(value: Any, path: str) -> str:
    if value not in _TYPES:
        raise SpecError("%s: 'nonpaged' or 'paged'" % path)
    return value


@dataclass
class BlockSpec:
    tag: int
    size: int
    free: bool
    data: bytes
    header: Optional[bytes]
    path: str


@dataclass
class PoolPageSpec:
    va: int
    kind: str
    blocks: List[BlockSpec]
    path: str


@dataclass
class BigSpec:
    va: int
    size: int
    tag: int
    free: bool
    kind: str
    data: bytes


@dataclass
class SpecialSpec:
    va: int
    size: int
    tag: int
    fill: int
    paged: bool
    data: bytes
    freed: bool


@dataclass
class TrackSpec:
    tag: int
    values: List[int]            # NonPagedAllocs, NonPagedFrees, NonPagedBytes, PagedAllocs, PagedFrees, PagedBytes


@dataclass
class PoolSpec:
    pages: List[PoolPageSpec] = field(default_factory=list)
    big: List[BigSpec] = field(default_factory=list)
    special: List[SpecialSpec] = field(default_factory=list)
    track: List[TrackSpec] = field(default_factory=list)
    big_table_entries: int = 64


def _data(item: dict, path: str) -> bytes:
    """The optional ``data`` object: the allocation's bytes, which may run past its end (an overrun)."""
    if "data" not in item:
        return b""
    return parse_data(obj(item["data"], path + ".data"), path + ".data")


def _page_va(value: Any, path: str) -> int:
    va = parse_int(value, path)
    if va >> 47 != 0x1FFFF or va % PAGE:
        raise SpecError("%s: 0x%x is not a page-aligned kernel address" % (path, va))
    return va


def parse_pool(doc: Any) -> Optional[PoolSpec]:
    if doc is None:
        return None
    doc = obj(doc, "pool")
    spec = PoolSpec()
    for i, page in enumerate(seq(doc.get("pages", []), "pool.pages")):
        path = "pool.pages[%d]" % i
        page = obj(page, path)
        kind = _kind(page.get("type", "nonpaged"), path + ".type")
        blocks = []
        used = 0
        for j, block in enumerate(seq(page.get("blocks", []), path + ".blocks")):
            bpath = "%s.blocks[%d]" % (path, j)
            block = obj(block, bpath)
            size = parse_int(block.get("size"), bpath + ".size")
            if size % 16 or not 0x10 <= size <= 0xFF0:
                raise SpecError("%s.size: a multiple of 16 from 0x10 to 0xff0 (header included), got 0x%x"
                                % (bpath, size))
            state = block.get("state", "allocated")
            if state not in ("allocated", "free"):
                raise SpecError("%s.state: 'allocated' or 'free'" % bpath)
            header = None
            if "header" in block:
                header = parse_data(obj(block["header"], bpath + ".header"), bpath + ".header")
                if len(header) != 16:
                    raise SpecError("%s.header: exactly 16 bytes" % bpath)
            data = _data(block, bpath)
            blocks.append(BlockSpec(_tag(block.get("tag", "Free" if state == "free" else None), bpath + ".tag"),
                                    size, state == "free", data, header, bpath))
            used += size
        if used > PAGE:
            raise SpecError("%s.blocks: 0x%x bytes do not fit in a page" % (path, used))
        spec.pages.append(PoolPageSpec(_page_va(page.get("va"), path + ".va"), kind, blocks, path))
    for i, big in enumerate(seq(doc.get("big", []), "pool.big")):
        path = "pool.big[%d]" % i
        big = obj(big, path)
        size = parse_int(big.get("size"), path + ".size")
        if not PAGE <= size <= 64 * PAGE:
            raise SpecError("%s.size: 0x1000 to 0x40000 bytes" % path)
        data = _data(big, path)
        spec.big.append(BigSpec(_page_va(big.get("va"), path + ".va"), size, _tag(big.get("tag"), path + ".tag"),
                                bool(big.get("free", False)), _kind(big.get("type", "nonpaged"), path + ".type"), data))
    for i, special in enumerate(seq(doc.get("special", []), "pool.special")):
        path = "pool.special[%d]" % i
        special = obj(special, path)
        size = parse_int(special.get("size"), path + ".size")
        if not 1 <= size <= PAGE - 16:
            raise SpecError("%s.size: 1 to 0xff0 bytes" % path)
        fill = parse_int(special.get("fill_byte", "0xa5"), path + ".fill_byte")
        if not 0 <= fill <= 0xFF:
            raise SpecError("%s.fill_byte: one byte" % path)
        data = _data(special, path)
        spec.special.append(SpecialSpec(_page_va(special.get("va"), path + ".va"), size,
                                        _tag(special.get("tag"), path + ".tag"), fill,
                                        _kind(special.get("type", "nonpaged"), path + ".type") == "paged", data,
                                        bool(special.get("freed", False))))
    names = ("nonpaged_allocs", "nonpaged_frees", "nonpaged_bytes", "paged_allocs", "paged_frees", "paged_bytes")
    for i, track in enumerate(seq(doc.get("track", []), "pool.track")):
        path = "pool.track[%d]" % i
        track = obj(track, path)
        spec.track.append(TrackSpec(_tag(track.get("tag"), path + ".tag"),
                                    [parse_int(track.get(n, 0), "%s.%s" % (path, n)) for n in names]))
    spec.big_table_entries = max(len(spec.big) * 2, 64)
    return spec


def _header(previous: int, size: int, pool_type: int, tag: int) -> bytes:
    return struct.pack("<BBBBIQ", previous // 16, 0, size // 16, pool_type, tag, 0)


def write_pool(space, alloc, spec: PoolSpec, set_variable) -> None:
    """Lay the pool out in ``space``; ``alloc(bytes)`` places a kernel structure and returns its address,
    ``set_variable(name, bytes)`` writes an nt variable (PoolBigPageTable...)."""
    for page in spec.pages:
        headers: List[tuple] = []
        offset = 0
        previous = 0
        for block in page.blocks:
            pool_type = 0 if block.free else _TYPES[page.kind]
            headers.append((offset, block.header or _header(previous, block.size, pool_type, block.tag), block))
            previous = block.size
            offset += block.size
        if offset < PAGE:
            headers.append((offset, _header(previous, PAGE - offset, 0, _tag("Free", "")), None))
        image = bytearray(PAGE)
        for at, raw, _ in headers:
            image[at:at + 16] = raw
        for at, _, block in headers:
            if block is not None and block.data:
                end = min(PAGE, at + 16 + len(block.data))
                image[at + 16:end] = block.data[:end - at - 16]
        space.write(page.va, bytes(image))
    for special in spec.special:
        image = bytearray([special.fill]) * PAGE
        start = (PAGE - special.size) & ~0xF
        image[start:start + special.size] = (special.data + bytes(special.size))[:special.size]
        ulong1 = special.size | (0x8000 if special.paged else 0)
        image[0:16] = struct.pack("<IIQ", ulong1, special.tag, 0)
        image[2] = special.fill
        if special.freed:
            struct.pack_into("<IIIIQ", image, 0x10, 0x98764321, 0, special.size, int(special.paged),
                             special.va + start)
        if len(special.data) > special.size:               # an overrun inside the page's slack
            extra = special.data[special.size:special.size + PAGE - start - special.size]
            image[start + special.size:start + special.size + len(extra)] = extra
        space.write(special.va, bytes(image))               # the next page stays unmapped: the guard page
    if spec.big or spec.pages or spec.special:
        table = bytearray(BIG_ENTRY * spec.big_table_entries)
        for i, big in enumerate(spec.big):
            data = (big.data + bytes(big.size))[:big.size]
            space.write(big.va, data)
            struct.pack_into("<QIIQ", table, i * BIG_ENTRY, big.va | int(big.free), big.tag,
                             _POOL_TYPE_ENUM[big.kind] << 8, big.size)
        set_variable("PoolBigPageTable", struct.pack("<Q", alloc(bytes(table))))
        set_variable("PoolBigPageTableSize", struct.pack("<Q", spec.big_table_entries))
    if spec.track:
        table = bytearray(TRACK_ENTRY * (len(spec.track) + 1))
        for i, track in enumerate(spec.track):
            v = track.values
            struct.pack_into("<IIQQQQQQ", table, i * TRACK_ENTRY, track.tag, 0, v[2], v[0], v[1], v[5], v[3], v[4])
        set_variable("PoolTrackTable", struct.pack("<Q", alloc(bytes(table))))
        set_variable("PoolTrackTableSize", struct.pack("<Q", len(spec.track) + 1))

