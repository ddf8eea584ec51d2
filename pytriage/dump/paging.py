"""x64 4-level virtual-to-physical translation (PML4 -> PDPT -> PD -> PT), with 1 GB and 2 MB pages.

Translation is always exactly four bounded steps, so a corrupt or self-referencing page table (Windows
itself keeps a PML4 self-map entry) cannot loop. A non-present entry is reported with the level and the
kind of PTE it is (transition, prototype, paged out, zero), which is what an engineer asks next.
"""

import itertools
from typing import Dict, Tuple

from pytriage.dump.physical import PhysicalMemory
from pytriage.errors import MemoryReadError, format_address

PFN_MASK = 0x000FFFFFFFFFF000
_PRESENT = 1
_LARGE = 1 << 7
_PROTOTYPE = 1 << 10
_TRANSITION = 1 << 11
_LEVELS = ("PML4E", "PDPTE", "PDE", "PTE")


def is_canonical(va: int) -> bool:
    top = va >> 47
    return top == 0 or top == 0x1FFFF


def describe_invalid_pte(value: int) -> str:
    """Name the software state of a non-present x64 PTE the way `!pte` would."""
    if value == 0:
        return "zero (never mapped)"
    if value & _PROTOTYPE:
        return "prototype PTE"
    if value & _TRANSITION:
        return "transition PTE (page on a standby/modified list, not in the dump's page tables)"
    if value >> 32:
        return "paged out to the page file"
    return "invalid (demand zero or no access)"


class PageTranslator:
    """Translate virtual addresses with one DirectoryTableBase; translations are cached per page."""

    def __init__(self, physical: PhysicalMemory, directory_table_base: int, cache_limit: int = 65536) -> None:
        self.physical = physical
        self.dtb = directory_table_base & PFN_MASK
        self._cache: Dict[int, Tuple[int, int]] = {}
        self._cache_limit = cache_limit

    def translate(self, va: int) -> int:
        """Physical address of ``va``; raises ``MemoryReadError`` naming the failing level."""
        page = va & ~0xFFF
        hit = self._cache.get(page)
        if hit is not None:
            base, mask = hit
            return base | (va & mask)
        base, mask = self._walk(va)
        if len(self._cache) >= self._cache_limit:
            # drop the oldest quarter (dicts keep insertion order): random access keeps most of its hits
            for old in list(itertools.islice(self._cache, self._cache_limit // 4)):
                del self._cache[old]
        self._cache[page] = (base, mask)
        return base | (va & mask)

    def _walk(self, va: int) -> Tuple[int, int]:
        if not is_canonical(va):
            raise MemoryReadError(va, "non-canonical address")
        table = self.dtb
        shifts = (39, 30, 21, 12)
        for level, shift in enumerate(shifts):
            entry_pa = table + ((va >> shift) & 0x1FF) * 8
            try:
                entry = self.physical.read_u64(entry_pa)
            except MemoryReadError:
                raise MemoryReadError(
                    va, "%s at physical 0x%x is not in the dump" % (_LEVELS[level], entry_pa)) from None
            if not entry & _PRESENT:
                raise MemoryReadError(
                    va, "%s %s is not present: %s" % (_LEVELS[level], format_address(entry),
                                                      describe_invalid_pte(entry)))
            if level in (1, 2) and entry & _LARGE:
                mask = (1 << shift) - 1
                return (entry & PFN_MASK) & ~mask, mask
            table = entry & PFN_MASK
        return table, 0xFFF
