"""Walk a classic pool page header by header, and say precisely where and how its chain breaks.

A classic page (Windows 10 before 19H1, and any page Windows still lays out that way) is a run of
blocks from the page start, each ``[_POOL_HEADER][data]``: header N+1 sits ``BlockSize`` bytes after
header N and its ``PreviousSize`` equals header N's ``BlockSize``; the last block ends at the page end.
A break in that chain is the 0x19 BAD_POOL_HEADER story: the walk names the header, the field, what it
expected and what it found. When the damaged header is filled with the same repeating bytes that end
the block before it, that block overran its end: the walk names it, its tag and the fill pattern.

After a break the walk looks further on for a header from which a consistent chain reaches the page
end, so blocks behind the damage are still listed (marked as found again after the damage).
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from pytriage.analysis.pool.header import HEADER_SIZE, PAGE, PoolHeader, decode_header, fill_pattern, pattern_text
from pytriage.commands.render import format_address


@dataclass
class PoolBlock:
    """One block of a page: its header and the bytes it spans (header included)."""
    header: PoolHeader
    recovered: bool = False          # found by looking past a damaged header
    suspect: bool = False            # its own header is fine but its PreviousSize disagrees

    @property
    def start(self) -> int:
        return self.header.va

    @property
    def size(self) -> int:
        return self.header.block_size

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def data_va(self) -> int:
        return self.start + HEADER_SIZE

    @property
    def free(self) -> bool:
        return self.header.free

    def contains(self, va: int) -> bool:
        return self.start <= va < self.end


@dataclass
class Overrun:
    """The block before a damaged header wrote past its end."""
    block: PoolBlock
    pattern: bytes
    tail_bytes: int                  # how many bytes at the end of the block carry the pattern
    past_end: int                    # how many bytes from the block's end onwards carry it

    def describe(self) -> str:
        return ("block %s (tag %s, 0x%x bytes) overran its end: its last 0x%x bytes and the next 0x%x bytes "
                "are the fill pattern %s" % (format_address(self.block.start), self.block.header.tag_text,
                                             self.block.size,
                                             self.tail_bytes, self.past_end, pattern_text(self.pattern)))


@dataclass
class ChainBreak:
    """Where a page's header chain stops making sense."""
    header_va: int
    field: str                       # "BlockSize", "PreviousSize", "PoolType", "PoolTag"
    expected: Optional[int]
    found: int
    reason: str
    overrun: Optional[Overrun] = None
    fill: Optional[bytes] = None     # the damaged header is this pattern repeated

    def describe(self) -> str:
        text = "header %s: %s" % (format_address(self.header_va), self.reason)
        if self.overrun is not None:
            text += "; %s" % self.overrun.describe()
        elif self.fill is not None:
            text += "; the header is overwritten with the fill pattern %s" % pattern_text(self.fill)
        return text


@dataclass
class PageWalk:
    page_va: int
    blocks: List[PoolBlock] = field(default_factory=list)
    breaks: List[ChainBreak] = field(default_factory=list)
    damaged: List[Tuple[int, int]] = field(default_factory=list)    # [start, end) no header accounts for

    @property
    def intact(self) -> bool:
        return not self.breaks and bool(self.blocks) and self.blocks[-1].end == self.page_va + PAGE

    @property
    def starts_clean(self) -> bool:
        """The page's first header is a plausible one: this is a classic pool page."""
        first = self.blocks[0] if self.blocks else None
        return first is not None and first.start == self.page_va and not first.recovered and not first.suspect

    def containing(self, va: int) -> Optional[PoolBlock]:
        return next((b for b in self.blocks if b.contains(va)), None)

    def damaged_range(self, va: int) -> Optional[Tuple[int, int]]:
        return next((r for r in self.damaged if r[0] <= va < r[1]), None)

    def block_before(self, va: int) -> Optional[PoolBlock]:
        before = [b for b in self.blocks if b.end <= va]
        return before[-1] if before else None


def _header_at(page: bytes, page_va: int, offset: int) -> PoolHeader:
    return decode_header(page[offset:offset + HEADER_SIZE], page_va + offset)


def _problem(header: PoolHeader, offset: int, expected_previous: Optional[int]) -> Optional[Tuple[str, Optional[int],
                                                                                              int, str]]:
    if header.block_size == 0:
        return "BlockSize", None, 0, "BlockSize is 0"
    if offset + header.block_size > PAGE:
        return ("BlockSize", PAGE - offset, header.block_size,
                "BlockSize 0x%x runs 0x%x bytes past the end of the page (at most 0x%x fit)"
                % (header.block_size, offset + header.block_size - PAGE, PAGE - offset))
    if header.pool_type >= 0x40 or (header.pool_type and not header.pool_type & 0x2):
        return "PoolType", None, header.pool_type, "PoolType 0x%x is not a pool type" % header.pool_type
    if not header.free and not header.plausible():
        return "PoolTag", None, header.tag, "PoolTag 0x%08x is not text" % header.tag
    if expected_previous is not None and header.previous_size != expected_previous:
        return ("PreviousSize", expected_previous, header.previous_size,
                "PreviousSize is 0x%x but the block before it is 0x%x bytes"
                % (header.previous_size, expected_previous))
    return None


def _chain_reaches_end(page: bytes, offset: int) -> bool:
    """From ``offset``, does a consistent chain of plausible headers end exactly at the page end?"""
    previous = None
    while offset < PAGE:
        header = _header_at(page, 0, offset)
        if _problem(header, offset, previous) is not None or not (header.free or header.plausible()):
            return False
        previous = header.block_size
        offset += header.block_size
    return offset == PAGE


def _resync(page: bytes, start: int) -> Optional[int]:
    offset = (start + HEADER_SIZE - 1) // HEADER_SIZE * HEADER_SIZE
    while offset < PAGE:
        header = _header_at(page, 0, offset)
        if header.plausible() and _chain_reaches_end(page, offset):
            return offset
        offset += HEADER_SIZE
    return None


def _overrun(page: bytes, offset: int, previous: Optional[PoolBlock]) -> Tuple[Optional[Overrun], Optional[bytes]]:
    """Is the header at ``offset`` a fill pattern, and does the block before it end with the same one?"""
    pattern = fill_pattern(page[offset:offset + HEADER_SIZE])
    if pattern is None or previous is None:
        return None, pattern
    unit = len(pattern)
    tail = 0
    position = offset                                     # walk back over the pattern, phase-aligned
    data_start = offset - (previous.size - HEADER_SIZE)  # the previous block's data, as a page offset
    while position - unit >= data_start and page[position - unit:position] == pattern:
        position -= unit
        tail += unit
    past = 0
    position = offset
    while position + unit <= PAGE and page[position:position + unit] == pattern:
        position += unit
        past += unit
    if tail < 8:
        return None, pattern
    return Overrun(previous, pattern, tail, past), pattern


def walk_page(page: bytes, page_va: int) -> PageWalk:
    """Every header of the 4 KB ``page`` at ``page_va``, and every break in the chain."""
    if len(page) != PAGE:
        raise ValueError("a pool page is 0x1000 bytes, got 0x%x" % len(page))
    walk = PageWalk(page_va)
    offset = 0
    previous: Optional[PoolBlock] = None
    expected: Optional[int] = 0
    recovered = False
    while offset < PAGE:
        header = _header_at(page, page_va, offset)
        problem = _problem(header, offset, expected)
        if problem is None:
            block = PoolBlock(header, recovered=recovered)
        elif problem[0] == "PreviousSize" and header.plausible():
            block = PoolBlock(header, recovered=recovered, suspect=True)   # the header holds; one field lies
            walk.breaks.append(ChainBreak(header.va, *problem))
        else:
            overrun, fill = _overrun(page, offset, previous)
            walk.breaks.append(ChainBreak(header.va, problem[0], problem[1], problem[2], problem[3], overrun, fill))
            resume = _resync(page, offset + HEADER_SIZE)
            walk.damaged.append((page_va + offset, page_va + (resume if resume is not None else PAGE)))
            if resume is None:
                break
            offset, previous, expected, recovered = resume, None, None, True
            continue
        walk.blocks.append(block)
        previous = block
        expected = header.block_size
        offset += header.block_size
    return walk
