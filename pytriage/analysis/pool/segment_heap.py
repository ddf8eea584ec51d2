"""Best-effort: the pool header nearest below an address, for pages that are not classic pool pages.

Why best effort: since Windows 10 19H1 the kernel pool is the segment heap. Each allocation still
starts with a `_POOL_HEADER` (PreviousSize 0, BlockSize, PoolType, PoolTag), but pages are VS or LFH
subsegments whose own chunk headers are encoded with per-boot keys (``RtlpHpHeapGlobals``), so a page
can no longer be walked from its start. What stays true is the pool header right before the data, so
we look backwards from the address for a plausible header whose block covers it, and check its
neighbours: LFH packs equal-size blocks back to back (the next header follows at once), VS puts a
16-byte chunk header between blocks. The result says which of these held; it is always marked best
effort. The same search serves a triage dump, which saves only small blocks of memory.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from pytriage.analysis.pool.header import HEADER_SIZE, PAGE, PoolHeader, decode_header
from pytriage.errors import MemoryReadError, format_address

MAX_BACK = PAGE                        # a pool block is at most 0xff0 bytes


@dataclass
class NearestHeader:
    header: PoolHeader
    evidence: List[str] = field(default_factory=list)
    outer: Optional[PoolHeader] = None    # the allocation's first header when this is a cache-aligned inner one
    scanned_from: int = 0                 # lowest address the search could read

    @property
    def allocation(self) -> PoolHeader:
        return self.outer or self.header


def _read_header(target, va: int) -> Optional[PoolHeader]:
    try:
        return decode_header(target.read(va, HEADER_SIZE), va)
    except MemoryReadError:
        return None


def _neighbour_evidence(target, header: PoolHeader) -> List[str]:
    evidence = []
    lfh = _read_header(target, header.va + header.block_size)
    vs = _read_header(target, header.va + header.block_size + HEADER_SIZE)
    if lfh is not None and lfh.plausible() and lfh.previous_size in (0, header.block_size):
        same = " of the same size" if lfh.block_size == header.block_size else ""
        evidence.append("the next header%s follows directly at %s (tag %s): LFH-style packing"
                        % (same, format_address(lfh.va), lfh.tag_text))
    elif vs is not None and vs.plausible():
        evidence.append("a header follows a 16-byte chunk header at %s (tag %s): VS-style layout"
                        % (format_address(vs.va), vs.tag_text))
    else:
        evidence.append("no plausible header follows the block: the size could not be cross-checked")
    return evidence


def nearest_header(target, address: int) -> Tuple[Optional[NearestHeader], int]:
    """The closest plausible pool header at or below ``address`` whose block covers it, and the lowest
    address the search could read (the dump may end sooner than a page back)."""
    start = address & ~(HEADER_SIZE - 1)
    lowest = max(start - MAX_BACK, 0)
    va = start
    while va >= lowest:
        header = _read_header(target, va)
        if header is None:
            break                                       # the dump has nothing further back
        if header.plausible() and not header.free:
            if header.va + header.block_size <= address:
                return None, va                         # the nearest header's block ends before the address
            found = NearestHeader(header, scanned_from=va)
            if header.previous_size:
                outer = _read_header(target, va - header.previous_size)
                if outer is not None and outer.plausible() and outer.tag == header.tag and \
                        outer.va + outer.block_size >= va + HEADER_SIZE:
                    found.outer = outer
                    found.evidence.append("the header at %s is the inner header of a cache-aligned allocation "
                                          "that starts at %s" % (format_address(va), format_address(outer.va)))
            found.evidence.extend(_neighbour_evidence(target, found.allocation))
            return found, va
        va -= HEADER_SIZE
    return None, va + HEADER_SIZE
