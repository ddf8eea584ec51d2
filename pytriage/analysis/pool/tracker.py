"""Pool usage by tag from ``nt!PoolTrackTable`` (what ``!poolused`` reads), where the dump has it.

The table is an array of ``nt!PoolTrackTableSize`` `_POOL_TRACKER_TABLE` entries: Key (the tag), then
allocation/free counts and bytes for nonpaged and paged pool, all 64-bit in 19041 x64 (checked against
the corpus ISF; nt's own symbols win when present). Windows also keeps per-processor tables the global
one does not include, so the totals are a lower bound: the command says so.
"""

import struct
from dataclasses import dataclass
from typing import List, Tuple

from pytriage.analysis.pool.header import tag_text
from pytriage.analysis.pool.tables import TableReader, entry_layout
from pytriage.errors import MemoryReadError, PytriageError

MAX_ENTRIES = 1 << 20
_FIELDS = ("NonPagedAllocs", "NonPagedFrees", "NonPagedBytes", "PagedAllocs", "PagedFrees", "PagedBytes")
_FALLBACK = {"Key": 0, "NonPagedBytes": 8, "NonPagedAllocs": 16, "NonPagedFrees": 24, "PagedBytes": 32,
             "PagedAllocs": 40, "PagedFrees": 48, "size": 56}


@dataclass
class TagUsage:
    tag: int
    nonpaged_allocs: int
    nonpaged_frees: int
    nonpaged_bytes: int
    paged_allocs: int
    paged_frees: int
    paged_bytes: int

    @property
    def tag_text(self) -> str:
        return tag_text(self.tag)

    @property
    def total_bytes(self) -> int:
        return self.nonpaged_bytes + self.paged_bytes

    def to_json(self) -> dict:
        return {"tag": self.tag_text, "nonpaged_allocs": self.nonpaged_allocs, "nonpaged_frees": self.nonpaged_frees,
                "nonpaged_bytes": self.nonpaged_bytes, "paged_allocs": self.paged_allocs,
                "paged_frees": self.paged_frees, "paged_bytes": self.paged_bytes}


def pool_usage(target, symbolizer) -> Tuple[List[TagUsage], str]:
    """Every tag with a nonzero count, sorted by bytes (largest first); ``PytriageError`` when the table
    cannot be read, saying why."""
    try:
        table = target.read_pointer(symbolizer.address_of("nt!PoolTrackTable"))
        count = target.read_u64(symbolizer.address_of("nt!PoolTrackTableSize"))
    except MemoryReadError as exc:
        raise PytriageError("nt!PoolTrackTable is not in this dump (%s)" % exc) from None
    except PytriageError as exc:
        raise PytriageError("pool usage needs nt!PoolTrackTable: %s" % exc) from None
    if not table or not 0 < count <= MAX_ENTRIES:
        raise PytriageError("nt!PoolTrackTableSize is %d and the table is at 0x%x: not a usable table" % (count, table))
    layout, source = entry_layout(symbolizer, "nt!_POOL_TRACKER_TABLE", ("Key",) + _FIELDS, _FALLBACK)
    reader = TableReader(target, table, count, layout["size"])
    usages: List[TagUsage] = []
    for _index, raw, base in reader.entries():
        key = struct.unpack_from("<I", raw, base + layout["Key"])[0]
        if key == 0:
            continue
        values = [struct.unpack_from("<Q", raw, base + layout[name])[0] for name in _FIELDS]
        if any(values):
            usages.append(TagUsage(key, *values))
    usages.sort(key=lambda u: (-u.total_bytes, u.tag_text))
    note = "layout: %s; %d entries" % (source, count)
    if reader.missing:
        note += "; %d entries are not in the dump" % reader.missing
    return usages, note
