"""Driver Verifier special pool pages: one allocation per page, pushed against an inaccessible guard page.

Layout (the public special-pool description, and ReactOS's implementation of the same scheme; verify
against a real Verifier dump when one is at hand): with "verify end" (the default, catches overruns) the
page starts with a 16-byte header whose first ULONG holds the requested size in its low 15 bits (0x8000
marks paged special pool) and whose third byte is the page's fill byte; PoolTag at +4. The allocation
is the highest 16-byte-aligned address where the requested size fits, every other byte of the page is
the fill byte, and the next page is not mapped. A write past the allocation's end lands on the fill
bytes (caught at free, 0xC1) or on the guard page (a fault at once, 0xD6/0x50).

A freed special-pool page carries the signature 0x98764321 at +0x10 when it is still readable.
"""

import struct
from dataclasses import dataclass
from typing import Callable, Optional

from pytriage.analysis.pool.header import HEADER_SIZE, PAGE, tag_is_plausible, tag_text

PAGED_FLAG = 0x8000
SIZE_MASK = 0x7FFF
FREED_SIGNATURE = 0x98764321
MAX_SIZE = PAGE - HEADER_SIZE


@dataclass
class SpecialPoolPage:
    page_va: int
    header: bytes
    requested: int                   # bytes the driver asked for
    paged: bool
    fill: int                        # the page's fill byte
    tag: int
    allocation: int                  # address handed to the driver
    fill_damage: Optional[int]       # first byte of the page outside the allocation that lost the fill
    freed: bool = False

    @property
    def tag_text(self) -> str:
        return tag_text(self.tag)

    @property
    def end(self) -> int:
        return self.allocation + self.requested

    @property
    def damage_kind(self) -> Optional[str]:
        if self.fill_damage is None:
            return None
        return "underrun" if self.fill_damage < self.allocation else "overrun"


def special_pool_page(page: bytes, page_va: int, guard_page_missing: Callable[[], bool]) -> Optional[SpecialPoolPage]:
    """The special-pool allocation on ``page``, or None when the page does not have that shape.

    The fill bytes are the main evidence. Only when there are too few of them to judge (an allocation
    that fills the page) is ``guard_page_missing()`` asked whether the page after it is unreadable, so
    the common case costs no read of that page.
    """
    if len(page) != PAGE:
        return None
    ulong1, tag = struct.unpack_from("<II", page, 0)
    if struct.unpack_from("<I", page, 0x10)[0] == FREED_SIGNATURE and tag_is_plausible(tag):
        requested = struct.unpack_from("<I", page, 0x18)[0]
        allocation = struct.unpack_from("<Q", page, 0x20)[0]
        return SpecialPoolPage(page_va, page[:HEADER_SIZE], requested if requested <= MAX_SIZE else 0,
                               bool(ulong1 & PAGED_FLAG), page[2], tag, allocation, None, freed=True)
    requested = ulong1 & SIZE_MASK
    if not 1 <= requested <= MAX_SIZE or not tag_is_plausible(tag):
        return None
    fill = page[2]
    allocation_offset = (PAGE - requested) & ~(HEADER_SIZE - 1)
    if allocation_offset < HEADER_SIZE:
        return None
    before = page[HEADER_SIZE:allocation_offset]
    after = page[allocation_offset + requested:]
    outside = before + after
    matching = sum(1 for b in outside if b == fill)
    if len(outside) >= 16:
        if matching * 10 < len(outside) * 9:          # the fill must hold on at least 90% of its bytes
            return None
    elif not guard_page_missing():
        return None
    damage = None
    for index, value in enumerate(before):
        if value != fill:
            damage = page_va + HEADER_SIZE + index
            break
    else:
        for index, value in enumerate(after):
            if value != fill:
                damage = page_va + allocation_offset + requested + index
                break
    return SpecialPoolPage(page_va, page[:HEADER_SIZE], requested, bool(ulong1 & PAGED_FLAG), fill, tag,
                           page_va + allocation_offset, damage)
