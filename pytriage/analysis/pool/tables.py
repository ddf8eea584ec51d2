"""nt's pool tables (``PoolBigPageTable``, ``PoolTrackTable``): the entry layout, and the entries.

Both are arrays nt sizes by a variable beside them. The layout comes from nt's symbols when they have
the type with the fields we read, else from the 19041 x64 offsets each caller gives (checked against
the corpus ISF in the tests). The entries are read in 16 KB slices, so a live target sees a few large
reads instead of one per entry, and a search can stop at its hit without reading the rest; slices the
dump does not have are counted, not fatal.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, Tuple

from pytriage.errors import MemoryReadError, PytriageError

SLICE_BYTES = 0x4000
BUILT_IN = "built-in 19041 x64 layout"


def entry_layout(symbolizer, type_name: str, required: Iterable[str],
                 fallback: Dict[str, int]) -> Tuple[Dict[str, int], str]:
    """``(field -> offset plus "size", where it came from)`` for ``type_name`` (``nt!_TYPE``)."""
    try:
        layout, _ = symbolizer.type_layout(type_name)
        fields = {f.name: f.offset for f in layout.fields}
        if set(required) <= set(fields) and layout.size:
            fields["size"] = layout.size
            return fields, "nt's symbols"
    except PytriageError:
        pass
    return dict(fallback), BUILT_IN


@dataclass
class TableReader:
    """Entries ``0 .. count-1`` of ``entry_size`` bytes at ``table``, slice by slice."""
    target: object
    table: int
    count: int
    entry_size: int
    entries_read: int = 0
    missing: int = 0                 # entries in slices the dump does not have

    def entries(self) -> Iterator[Tuple[int, bytes, int]]:
        """``(index, slice bytes, offset of the entry in them)`` for every entry that could be read."""
        per_slice = max(1, SLICE_BYTES // self.entry_size)
        for first in range(0, self.count, per_slice):
            n = min(per_slice, self.count - first)
            try:
                raw = self.target.read(self.table + first * self.entry_size, n * self.entry_size)
            except MemoryReadError:
                self.missing += n
                continue
            self.entries_read += n
            for i in range(n):
                yield first + i, raw, i * self.entry_size
