"""Big pool: allocations of a page or more, which carry no `_POOL_HEADER`; nt records them in a table.

``nt!PoolBigPageTable`` points at an array of ``nt!PoolBigPageTableSize`` `_POOL_TRACKER_BIG_PAGES`
entries: Va (bit 0 set once the allocation is freed, as volatility3 reads it), Key (the tag),
NumberOfBytes, PoolType; layout and slice-wise reading come from ``tables``.

The table can hold tens of thousands of entries, so it is read only when the cheaper answers (a page
walk, a special-pool page) did not explain the address, and the search stops at the first hit.
"""

import struct
from dataclasses import dataclass
from typing import Optional

from pytriage.analysis.pool.header import PAGE, tag_text
from pytriage.analysis.pool.tables import TableReader, entry_layout
from pytriage.errors import MemoryReadError, PytriageError

MAX_ENTRIES = 1 << 22                  # 4M entries (96 MB): anything larger is a damaged size variable
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


def find_big_allocation(target, symbolizer, address: int) -> BigPoolLookup:
    """The big-pool entry whose pages hold ``address`` (an allocated one wins over a freed one)."""
    try:
        table_var = symbolizer.address_of("nt!PoolBigPageTable")
        size_var = symbolizer.address_of("nt!PoolBigPageTableSize")
    except PytriageError as exc:
        return BigPoolLookup(None, 0, unavailable="the big pool table cannot be found: %s" % exc)
    layout, layout_text = entry_layout(symbolizer, "nt!_POOL_TRACKER_BIG_PAGES", ("Va", "Key", "NumberOfBytes"),
                                       _FALLBACK)
    pool_type_offset = layout.get("PoolType", -1)
    try:
        table = target.read_pointer(table_var)
        count = target.read_u64(size_var)
    except MemoryReadError as exc:
        return BigPoolLookup(None, 0, unavailable="nt!PoolBigPageTable is not in the dump (%s)" % exc)
    if count == 0 or count > MAX_ENTRIES or table == 0:
        return BigPoolLookup(None, 0, table, count, layout_text,
                             "nt!PoolBigPageTableSize is %d and the table is at 0x%x: not a usable table"
                             % (count, table))
    reader = TableReader(target, table, count, layout["size"])
    freed: Optional[BigPoolEntry] = None
    for index, raw, base in reader.entries():
        va_raw = struct.unpack_from("<Q", raw, base + layout["Va"])[0]
        if va_raw == 0:
            continue
        size = struct.unpack_from("<Q", raw, base + layout["NumberOfBytes"])[0]
        va = va_raw & ~1
        if not va <= address < va + max(size, PAGE) or size > (1 << 40):
            continue
        pool_type = 0
        if pool_type_offset >= 0:
            pool_type = (struct.unpack_from("<I", raw, base + pool_type_offset)[0] >> 8) & 0xFFF
        key = struct.unpack_from("<I", raw, base + layout["Key"])[0]
        entry = BigPoolEntry(table + index * reader.entry_size, va, key, size, pool_type, bool(va_raw & 1))
        if not entry.free:
            return BigPoolLookup(entry, reader.entries_read, table, count, layout_text)
        freed = freed or entry
    note = ""
    if reader.missing:
        note = "%d of %d big pool table entries are not in the dump" % (reader.missing, count)
    return BigPoolLookup(freed, reader.entries_read, table, count, layout_text, note)
