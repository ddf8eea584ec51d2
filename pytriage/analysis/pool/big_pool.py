"""Big pool: allocations of a page or more, which carry no `_POOL_HEADER`; nt records them in a table.

``nt!PoolBigPageTable`` points at an array of ``nt!PoolBigPageTableSize`` `_POOL_TRACKER_BIG_PAGES`
entries: Va (bit 0 set once the allocation is freed, as volatility3 reads it), Key (the tag),
NumberOfBytes, PoolType. The layout comes from nt's symbols when they have it, else the 19041 x64
offsets (checked against the corpus ISF in the tests).

The table can hold tens of thousands of entries, so it is read only when the cheaper answers (a page
walk, a special-pool page) did not explain the address, in 16 KB slices that stop at the first hit.
"""

import struct
from dataclasses import dataclass
from typing import Dict, Optional

from pytriage.analysis.pool.header import PAGE, tag_text
from pytriage.errors import MemoryReadError, PytriageError

MAX_ENTRIES = 1 << 22                  # 4M entries (96 MB): anything larger is a damaged size variable
SLICE_BYTES = 0x4000
_FALLBACK = {"Va": 0x0, "Key": 0x8, "PoolType": 0xC, "NumberOfBytes": 0x10, "size": 0x18}


@dataclass
class BigPoolEntry:
    entry_va: int
    va: int
    tag: int
    size: int
    pool_type: int
    free: bool

    @property
    def tag_text(self) -> str:
        return tag_text(self.tag)

    def contains(self, address: int) -> bool:
        return self.va <= address < self.va + max(self.size, PAGE)


@dataclass
class BigPoolLookup:
    entry: Optional[BigPoolEntry]
    entries_read: int
    table: int = 0
    table_size: int = 0
    layout: str = ""
    unavailable: str = ""            # why the table could not be searched (or only partly)


def big_pool_layout(symbolizer) -> Dict[str, int]:
    """Field offsets of `_POOL_TRACKER_BIG_PAGES` from nt's symbols, else the 19041 ones."""
    try:
        layout, _ = symbolizer.type_layout("nt!_POOL_TRACKER_BIG_PAGES")
        fields = {f.name: f.offset for f in layout.fields}
        if {"Va", "Key", "NumberOfBytes"} <= set(fields) and layout.size:
            found = {"Va": fields["Va"], "Key": fields["Key"], "NumberOfBytes": fields["NumberOfBytes"],
                     "PoolType": fields.get("PoolType", -1), "size": layout.size}
            found["source"] = 1
            return found
    except PytriageError:
        pass
    return dict(_FALLBACK)


def find_big_allocation(target, symbolizer, address: int) -> BigPoolLookup:
    """The big-pool entry whose pages hold ``address`` (an allocated one wins over a freed one)."""
    try:
        table_var = symbolizer.address_of("nt!PoolBigPageTable")
        size_var = symbolizer.address_of("nt!PoolBigPageTableSize")
    except PytriageError as exc:
        return BigPoolLookup(None, 0, unavailable="the big pool table cannot be found: %s" % exc)
    layout = big_pool_layout(symbolizer)
    layout_text = "nt's symbols" if layout.pop("source", 0) else "built-in 19041 x64 layout"
    try:
        table = target.read_pointer(table_var)
        count = target.read_u64(size_var)
    except MemoryReadError as exc:
        return BigPoolLookup(None, 0, unavailable="nt!PoolBigPageTable is not in the dump (%s)" % exc)
    if count == 0 or count > MAX_ENTRIES or table == 0:
        return BigPoolLookup(None, 0, table, count, layout_text,
                             "nt!PoolBigPageTableSize is %d and the table is at 0x%x: not a usable table"
                             % (count, table))
    entry_size = layout["size"]
    per_slice = max(1, SLICE_BYTES // entry_size)
    freed: Optional[BigPoolEntry] = None
    read = 0
    unreadable = 0
    for first in range(0, count, per_slice):
        n = min(per_slice, count - first)
        try:
            raw = target.read(table + first * entry_size, n * entry_size)
        except MemoryReadError:
            unreadable += n
            continue
        read += n
        for i in range(n):
            base = i * entry_size
            va_raw = struct.unpack_from("<Q", raw, base + layout["Va"])[0]
            if va_raw == 0:
                continue
            size = struct.unpack_from("<Q", raw, base + layout["NumberOfBytes"])[0]
            va = va_raw & ~1
            if not va <= address < va + max(size, PAGE) or size > (1 << 40):
                continue
            pool_type = 0
            if layout["PoolType"] >= 0:
                pool_type = (struct.unpack_from("<I", raw, base + layout["PoolType"])[0] >> 8) & 0xFFF
            entry = BigPoolEntry(table + (first + i) * entry_size, va,
                                 struct.unpack_from("<I", raw, base + layout["Key"])[0], size, pool_type,
                                 bool(va_raw & 1))
            if not entry.free:
                return BigPoolLookup(entry, read, table, count, layout_text)
            freed = freed or entry
    note = ""
    if unreadable:
        note = "%d of %d big pool table entries are not in the dump" % (unreadable, count)
    return BigPoolLookup(freed, read, table, count, layout_text, note)
