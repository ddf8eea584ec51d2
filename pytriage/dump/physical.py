"""Physical memory of full (run-based) and bitmap kernel dumps.

Both map a page frame number (PFN) to the file offset of that page's 4 KB copy. Nothing is scanned at
open: runs are at most 43 header entries, and the bitmap's rank index (how many pages are stored before
a given PFN) is built on the first read, one 512-bit block at a time, so opening a 64 GB dump stays
instant (kdmp-parser, by contrast, builds a map of every page when it opens a file).
"""

import bisect
from typing import List, Optional, Tuple

from pytriage.dump.filemap import DumpFile
from pytriage.dump.structs import PAGE_SIZE
from pytriage.errors import DumpFormatError, MemoryReadError

if hasattr(int, "bit_count"):          # Python 3.10+
    _popcount = int.bit_count  # novermin (guarded by the hasattr above)
else:                                  # Python 3.9 (the debugger's)
    def _popcount(value: int) -> int:
        return bin(value).count("1")

_PAGE_SHIFT = 12
_BLOCK_BITS = 512          # bits per rank-index block
_BLOCK_BYTES = _BLOCK_BITS // 8


class PhysicalMemory:
    """PFN -> file offset, plus bounded reads that may span pages."""

    kind = "abstract"

    def __init__(self, dump: DumpFile) -> None:
        self.dump = dump

    def page_offset(self, pfn: int) -> Optional[int]:
        """File offset of the page, or None when the dump does not hold it."""
        raise NotImplementedError

    def page_count(self) -> int:
        """Number of pages stored in the file."""
        raise NotImplementedError

    def _page_file_offset(self, pfn: int) -> int:
        offset = self.page_offset(pfn)
        if offset is None:
            raise MemoryReadError(pfn << _PAGE_SHIFT, "page not present in the dump", physical=True)
        if offset + PAGE_SIZE > self.dump.size:
            raise DumpFormatError("page of PFN 0x%x lies past the end of the file" % pfn, offset)
        return offset

    def read_page(self, pfn: int) -> bytes:
        offset = self._page_file_offset(pfn)
        return self.dump.view[offset:offset + PAGE_SIZE].tobytes()

    def read(self, pa: int, size: int) -> bytes:
        """Read ``size`` bytes at physical address ``pa``; every page touched must be present."""
        if size <= PAGE_SIZE - (pa & (PAGE_SIZE - 1)):
            return self._read_in_page(pa, size)         # the common case: one slice of the mapped file
        out = bytearray()
        while size > 0:
            chunk = min(size, PAGE_SIZE - (pa & (PAGE_SIZE - 1)))
            out += self._read_in_page(pa, chunk)
            pa += chunk
            size -= chunk
        return bytes(out)

    def _read_in_page(self, pa: int, size: int) -> bytes:
        try:
            offset = self._page_file_offset(pa >> _PAGE_SHIFT) + (pa & (PAGE_SIZE - 1))
        except MemoryReadError:
            raise MemoryReadError(pa, "page not present in the dump", physical=True) from None
        return self.dump.view[offset:offset + size].tobytes()

    def read_u64(self, pa: int) -> int:
        """One aligned 8-byte read (page-table entries): the translation hot path."""
        offset = self.page_offset(pa >> _PAGE_SHIFT)
        if offset is None:
            raise MemoryReadError(pa, "page not present in the dump", physical=True)
        offset += pa & (PAGE_SIZE - 1)
        if offset + 8 > self.dump.size:
            raise DumpFormatError("physical address 0x%x lies past the end of the file" % pa, offset)
        return int.from_bytes(self.dump.view[offset:offset + 8], "little")


class RunPhysicalMemory(PhysicalMemory):
    """Full dump (DumpType 1): pages of each PHYSICAL_MEMORY_RUN stored back to back after the header."""

    kind = "runs"

    def __init__(self, dump: DumpFile, runs: List[Tuple[int, int]], first_page_offset: int) -> None:
        super().__init__(dump)
        # File offsets follow the order of the runs in the header; lookups need them sorted by PFN.
        entries = []
        cursor = first_page_offset
        for base, count in runs:
            entries.append((base, count, cursor))
            cursor += count * PAGE_SIZE
        entries.sort()
        for (base, count, _), (next_base, _, _) in zip(entries, entries[1:]):
            if base + count > next_base:
                raise DumpFormatError("physical memory runs overlap at PFN 0x%x" % next_base, 0x88)
        self._entries = entries
        self._bases = [base for base, _, _ in entries]
        self.end_offset = cursor

    def page_offset(self, pfn: int) -> Optional[int]:
        i = bisect.bisect_right(self._bases, pfn) - 1
        if i < 0:
            return None
        base, count, offset = self._entries[i]
        if pfn >= base + count:
            return None
        return offset + (pfn - base) * PAGE_SIZE

    def page_count(self) -> int:
        return sum(count for _, count, _ in self._entries)


class BitmapPhysicalMemory(PhysicalMemory):
    """Bitmap dump (DumpType 5, also 2 and 6): bit N set = PFN N stored; pages in PFN order."""

    kind = "bitmap"

    def __init__(self, dump: DumpFile, bitmap_offset: int, bit_count: int, first_page_offset: int,
                 capacity: int) -> None:
        super().__init__(dump)
        self.bitmap_offset = bitmap_offset
        self.bit_count = bit_count
        self.first_page_offset = first_page_offset
        self.capacity = capacity          # pages the file can hold after FirstPage
        self._bitmap_bytes = (bit_count + 7) // 8
        self._ranks: Optional[List[int]] = None
        self._total: Optional[int] = None

    def _block(self, index: int) -> int:
        start = index * _BLOCK_BYTES
        end = min(start + _BLOCK_BYTES, self._bitmap_bytes)
        return int.from_bytes(self.dump.view[self.bitmap_offset + start:self.bitmap_offset + end], "little")

    def _build_ranks(self) -> List[int]:
        """Prefix page counts per 512-bit block; checks the bitmap against the file once."""
        ranks = []
        total = 0
        blocks = (self._bitmap_bytes + _BLOCK_BYTES - 1) // _BLOCK_BYTES
        for index in range(blocks):
            ranks.append(total)
            total += _popcount(self._block(index))
        if total > self.capacity:
            raise DumpFormatError(
                "bitmap marks %d pages present but the file holds only %d after FirstPage"
                % (total, self.capacity), self.bitmap_offset)
        self._total = total
        self._ranks = ranks
        return ranks

    def page_offset(self, pfn: int) -> Optional[int]:
        if pfn < 0 or pfn >= self.bit_count:
            return None
        ranks = self._ranks if self._ranks is not None else self._build_ranks()
        index, bit = divmod(pfn, _BLOCK_BITS)
        block = self._block(index)
        if not (block >> bit) & 1:
            return None
        rank = ranks[index] + _popcount(block & ((1 << bit) - 1))
        return self.first_page_offset + rank * PAGE_SIZE

    def page_count(self) -> int:
        if self._total is None:
            self._build_ranks()
        return self._total  # type: ignore[return-value]
