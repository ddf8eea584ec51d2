"""Physical memory, page allocation and x64 page tables for a synthetic kernel.

``PhysicalImage`` is the dump's physical memory as a sparse map of written pages plus a set of pages
that are present but all zero (so a zero-filled 2 GB region costs no RAM; a patterned fill does).
``AddressSpace`` builds real 4-level page tables in that memory, with 4 KB, 2 MB and 1 GB mappings,
exactly as the reader (and kdmp-parser, and dbgeng) walk them.
"""

from typing import Dict, Iterator, List, Optional, Set, Tuple

from pytriage.errors import SpecError

PAGE = 0x1000
PTE_PRESENT = 0x1
PTE_WRITE = 0x2
PTE_ACCESSED = 0x20
PTE_DIRTY = 0x40
PTE_LARGE = 0x80
PTE_GLOBAL = 0x100
PTE_NX = 1 << 63
TABLE_FLAGS = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY
PFN_MASK = 0x000FFFFFFFFFF000


class PhysicalImage:
    """Physical pages of the scenario machine: runs, written pages, allocation."""

    def __init__(self, runs: List[Tuple[int, int]]) -> None:
        self.runs = list(runs)                       # (base_pfn, page_count) in header order
        self.pages: Dict[int, bytearray] = {}         # pfn -> content (non-zero pages)
        self.zero_present: Set[int] = set()           # present in the dump, content all zero
        self.absent: Set[int] = set()                 # allocated but deliberately left out of the dump
        self.used: Set[int] = set()
        self.reserved: List[Tuple[int, int]] = []     # [first_pfn, end_pfn) ranges owned by large pages
        ordered = sorted(self.runs)
        self._low_cursor = (0, ordered[0][0])          # (run index, next pfn) growing upward
        self._high_cursor = (len(ordered) - 1, ordered[-1][0] + ordered[-1][1])   # growing downward
        self._ordered = ordered

    # -- allocation ---------------------------------------------------------------------------------------
    def reserve(self, first_pfn: int, count: int) -> None:
        self.reserved.append((first_pfn, first_pfn + count))

    def _free(self, pfn: int) -> bool:
        if pfn == 0 or pfn in self.used:
            return False
        return not any(a <= pfn < b for a, b in self.reserved)

    def in_runs(self, pfn: int) -> bool:
        return any(base <= pfn < base + count for base, count in self._ordered)

    def alloc(self, high: bool = False) -> int:
        """A free PFN inside the runs: from the bottom (page tables, images) or the top (data)."""
        if high:
            index, nxt = self._high_cursor
            while index >= 0:
                base, count = self._ordered[index]
                pfn = nxt - 1
                while pfn >= base:
                    if self._free(pfn):
                        self._high_cursor = (index, pfn)
                        self.used.add(pfn)
                        return pfn
                    pfn -= 1
                index -= 1
                if index >= 0:
                    nxt = self._ordered[index][0] + self._ordered[index][1]
        else:
            index, pfn = self._low_cursor
            while index < len(self._ordered):
                base, count = self._ordered[index]
                pfn = max(pfn, base)
                while pfn < base + count:
                    if self._free(pfn):
                        self._low_cursor = (index, pfn + 1)
                        self.used.add(pfn)
                        return pfn
                    pfn += 1
                index += 1
        raise SpecError("physical_memory.runs: out of physical pages for the scenario")

    def claim(self, pfn: int) -> None:
        """Take a specific PFN (a region placed with "pa")."""
        if pfn in self.used:
            raise SpecError("physical page 0x%x is used twice" % (pfn * PAGE))
        self.used.add(pfn)

    # -- content ------------------------------------------------------------------------------------------
    def page(self, pfn: int) -> bytearray:
        page = self.pages.get(pfn)
        if page is None:
            page = self.pages[pfn] = bytearray(PAGE)
            self.zero_present.discard(pfn)
        return page

    def write(self, pa: int, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            pfn, in_page = divmod(pa + offset, PAGE)
            chunk = min(len(data) - offset, PAGE - in_page)
            piece = data[offset:offset + chunk]
            if any(piece) or pfn in self.pages:
                self.page(pfn)[in_page:in_page + chunk] = piece
            else:
                self.zero_present.add(pfn)
            offset += chunk

    def read(self, pa: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            pfn, in_page = divmod(pa, PAGE)
            chunk = min(size, PAGE - in_page)
            page = self.pages.get(pfn)
            out += page[in_page:in_page + chunk] if page is not None else bytes(chunk)
            pa += chunk
            size -= chunk
        return bytes(out)

    def mark_absent(self, pfn: int) -> None:
        self.absent.add(pfn)

    def present_pfns(self) -> Iterator[int]:
        """Sorted PFNs a bitmap dump stores: written or zero-present pages inside the runs, minus absent."""
        wanted = (set(self.pages) | self.zero_present) - self.absent
        for pfn in sorted(wanted):
            if self.in_runs(pfn):
                yield pfn

    def page_bytes(self, pfn: int) -> Optional[bytes]:
        """Content of a stored page; None means all zero (written as a sparse hole)."""
        if pfn in self.absent:
            return None
        page = self.pages.get(pfn)
        return bytes(page) if page is not None and any(page) else None


class AddressSpace:
    """x64 4-level page tables rooted at a PML4 allocated in ``phys``."""

    def __init__(self, phys: PhysicalImage) -> None:
        self.phys = phys
        self.pml4 = phys.alloc() * PAGE
        phys.page(self.pml4 // PAGE)
        self.mapped: Dict[int, int] = {}                  # va page -> pa page (4 KB mappings)
        self.large: List[Tuple[int, int, int]] = []       # (va, pa, size)

    def _entry(self, table_pa: int, index: int) -> int:
        return int.from_bytes(self.phys.read(table_pa + index * 8, 8), "little")

    def _set(self, table_pa: int, index: int, value: int) -> None:
        self.phys.page(table_pa // PAGE)[(table_pa % PAGE) + index * 8:(table_pa % PAGE) + index * 8 + 8] = \
            value.to_bytes(8, "little")

    def _table(self, table_pa: int, index: int, va: int) -> int:
        entry = self._entry(table_pa, index)
        if entry & PTE_PRESENT:
            if entry & PTE_LARGE:
                raise SpecError("virtual address 0x%x is already covered by a large page" % va)
            return entry & PFN_MASK
        new = self.phys.alloc() * PAGE
        self.phys.page(new // PAGE)
        self._set(table_pa, index, new | TABLE_FLAGS)
        return new

    def map_page(self, va: int, pa: int, writable: bool = True, executable: bool = True) -> None:
        va &= ~(PAGE - 1)
        if va in self.mapped:
            raise SpecError("virtual page 0x%x is mapped twice" % va)
        pdpt = self._table(self.pml4, (va >> 39) & 0x1FF, va)
        pd = self._table(pdpt, (va >> 30) & 0x1FF, va)
        pt = self._table(pd, (va >> 21) & 0x1FF, va)
        flags = PTE_PRESENT | PTE_ACCESSED | PTE_DIRTY | PTE_GLOBAL | (PTE_WRITE if writable else 0)
        if not executable:
            flags |= PTE_NX
        self._set(pt, (va >> 12) & 0x1FF, (pa & PFN_MASK) | flags)
        self.mapped[va] = pa

    def map_large(self, va: int, pa: int, size: int) -> None:
        """A 2 MB (PDE) or 1 GB (PDPTE) mapping; the physical range is reserved from allocation."""
        pdpt = self._table(self.pml4, (va >> 39) & 0x1FF, va)
        flags = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY | PTE_GLOBAL | PTE_LARGE | PTE_NX
        if size == 1 << 30:
            if self._entry(pdpt, (va >> 30) & 0x1FF) & PTE_PRESENT:
                raise SpecError("large page at 0x%x overlaps an existing mapping" % va)
            self._set(pdpt, (va >> 30) & 0x1FF, pa | flags)
        else:
            pd = self._table(pdpt, (va >> 30) & 0x1FF, va)
            if self._entry(pd, (va >> 21) & 0x1FF) & PTE_PRESENT:
                raise SpecError("large page at 0x%x overlaps an existing mapping" % va)
            self._set(pd, (va >> 21) & 0x1FF, pa | flags)
        self.phys.reserve(pa // PAGE, size // PAGE)
        self.large.append((va, pa, size))

    def translate(self, va: int) -> Optional[int]:
        """The builder's own view of its mappings (used to place data; the reader walks real tables)."""
        for lva, lpa, size in self.large:
            if lva <= va < lva + size:
                return lpa + (va - lva)
        pa = self.mapped.get(va & ~(PAGE - 1))
        return None if pa is None else pa + (va & (PAGE - 1))

    def ensure(self, va: int, size: int, high: bool = True, writable: bool = True, executable: bool = False) -> None:
        """Map (allocating physical pages) every page of [va, va+size) that is not mapped yet."""
        page = va & ~(PAGE - 1)
        while page < va + size:
            if self.translate(page) is None:
                self.map_page(page, self.phys.alloc(high) * PAGE, writable, executable)
            page += PAGE

    def write(self, va: int, data: bytes, high: bool = True) -> None:
        """Write bytes at a virtual address, mapping fresh pages where needed."""
        self.ensure(va, len(data), high)
        offset = 0
        while offset < len(data):
            cur = va + offset
            chunk = min(len(data) - offset, PAGE - (cur & (PAGE - 1)))
            pa = self.translate(cur)
            assert pa is not None
            self.phys.write(pa, data[offset:offset + chunk])
            offset += chunk
