"""`!pooltag ADDR`: which allocation holds an address, what state it is in, and what is wrong around it.

The answers are tried cheapest first, so a healthy classic page costs one page read (the budget is
16 KB per address on a live target):

1. the page walk (``page_walk``), when the page starts with a plausible header: every block, the
   one holding the address, every break in the chain and the block that overran;
2. a special-pool page (``special_pool``): the page's single allocation, its fill bytes, and the guard
   page after it when the address is there;
3. the big pool table (``big_pool``), read only now, for page-sized and larger allocations;
4. the nearest plausible header below the address (``segment_heap``), marked best effort: how
   segment-heap pages (19H1 and later) and triage dumps' small saved blocks are read.

What could not be checked is said in ``notes``, never silently skipped.
"""

import bisect
from dataclasses import dataclass, field
from typing import List, Optional

from pytriage.analysis.pool.big_pool import BigPoolLookup, find_big_allocation
from pytriage.analysis.pool.header import HEADER_SIZE, PAGE, PoolHeader, pool_type_text, tag_text
from pytriage.analysis.pool.page_walk import PageWalk, walk_page
from pytriage.analysis.pool.segment_heap import NearestHeader, nearest_header
from pytriage.analysis.pool.special_pool import SpecialPoolPage, special_pool_page
from pytriage.commands.render import format_address, hex64
from pytriage.errors import MemoryReadError, PytriageError

SEGMENT_HEAP_BUILD = 18362            # Windows 10 19H1: the kernel pool becomes the segment heap


@dataclass
class Allocation:
    start: int                        # the header's address (big pool: the allocation's)
    size: int                         # bytes spanned, header included (big pool: NumberOfBytes)
    data_va: int
    tag: int
    state: str                        # "allocated" or "free"
    pool_type: str
    how: str
    best_effort: bool = False
    header: Optional[PoolHeader] = None

    @property
    def tag_text(self) -> str:
        return tag_text(self.tag)

    def to_json(self) -> dict:
        return {"start": hex64(self.start), "size": self.size, "data": hex64(self.data_va), "tag": self.tag_text,
                "tag_value": "0x%08x" % self.tag, "state": self.state, "pool_type": self.pool_type, "how": self.how,
                "best_effort": self.best_effort, "header": self.header.to_json() if self.header else None}


@dataclass
class Finding:
    kind: str                         # chain-break, overrun, free-block, guard-page, fill-damage, damaged-bytes
    text: str
    address: Optional[int] = None
    culprit_tag: Optional[int] = None     # the tag of the block that did it, when known

    def to_json(self) -> dict:
        return {"kind": self.kind, "text": self.text, "address": None if self.address is None else hex64(self.address),
                "culprit_tag": None if self.culprit_tag is None else tag_text(self.culprit_tag)}


@dataclass
class PoolReport:
    address: int
    page_va: int
    kind: str = "unknown"             # classic, special, big, nearest-header, unknown
    allocation: Optional[Allocation] = None
    walk: Optional[PageWalk] = None
    special: Optional[SpecialPoolPage] = None
    big: Optional[BigPoolLookup] = None
    nearest: Optional[NearestHeader] = None
    findings: List[Finding] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    header_layout: str = ""


def _is_kernel(address: int) -> bool:
    return address >> 47 == 0x1FFFF


def header_layout_note(symbolizer) -> str:
    """Check nt's `_POOL_HEADER` (when its symbols have one) against the x64 layout decoded here."""
    try:
        layout, where = symbolizer.type_layout("nt!_POOL_HEADER")
    except PytriageError:
        return "built-in x64 _POOL_HEADER (nt's symbols have none)"
    fields = {f.name: f for f in layout.fields}
    expected = {"PoolTag": (4, None), "BlockSize": (2, 0), "PreviousSize": (0, 0), "PoolType": (2, 8)}
    for name, (offset, bit) in expected.items():
        member = fields.get(name)
        if member is None or member.offset != offset or (bit is not None and member.is_bitfield and
                                                         member.bit_position != bit):
            raise PytriageError("nt's _POOL_HEADER (%s) does not have the x64 layout this command decodes "
                                "(field %s)" % (where, name))
    return "_POOL_HEADER checked against %s" % where


def _read_page(target, page_va: int) -> Optional[bytes]:
    try:
        return target.read(page_va, PAGE)
    except MemoryReadError:
        return None


def _saved_note(target, address: int) -> Optional[str]:
    """For a triage dump: why the address cannot be decoded, naming the nearest saved bytes."""
    ranges = target.saved_ranges()
    if ranges is None:
        return None
    starts = [start for start, _ in ranges]
    index = bisect.bisect_right(starts, address) - 1
    nearest = []
    for i in (index, index + 1):
        if 0 <= i < len(ranges):
            nearest.append("%s-%s" % (format_address(ranges[i][0]), format_address(ranges[i][0] + ranges[i][1] - 1)))
    return ("%s is not in this triage dump: a triage dump saves only %d small blocks of memory (the crash's stack "
            "and a few bytes around addresses it referenced), so the pool around it is gone. Nearest saved bytes: %s"
            % (format_address(address), len(ranges), ", ".join(nearest) or "none"))


def _from_block(report: PoolReport, walk: PageWalk) -> None:
    report.kind = "classic"
    report.walk = walk
    for brk in walk.breaks:
        culprit = brk.overrun.block.header.tag if brk.overrun else None
        report.findings.append(Finding("overrun" if brk.overrun else "chain-break", brk.describe(), brk.header_va,
                                       culprit))
    block = walk.containing(report.address)
    if block is not None:
        h = block.header
        report.allocation = Allocation(block.start, block.size, block.data_va, h.tag, h.state, h.type_text,
                                       "pool page walk" + (" (found again after the damage)"
                                                           if block.recovered else ""),
                                       header=h)
        if block.free:
            report.findings.append(Finding(
                "free-block", "%s is inside a FREE block (last tag %s): whoever uses this address uses freed pool "
                "(use after free or double free)" % (format_address(report.address), h.tag_text), block.start, h.tag))
        if report.address < block.data_va:
            report.findings.append(Finding("header", "%s points into the block's pool header, not its data"
                                           % format_address(report.address), block.start))
        return
    damaged = walk.damaged_range(report.address)
    if damaged is not None:
        before = walk.block_before(damaged[0] + 1)
        text = "%s lies in damaged bytes %s-%s that no valid header accounts for" % (
            format_address(report.address), format_address(damaged[0]), format_address(damaged[1] - 1))
        culprit = None
        if before is not None:
            text += "; the last valid block before them is %s (tag %s, 0x%x bytes)" % (
                format_address(before.start), before.header.tag_text, before.size)
            culprit = before.header.tag
        report.findings.append(Finding("damaged-bytes", text, damaged[0], culprit))


def _from_special(report: PoolReport, page: SpecialPoolPage, on_guard: bool) -> None:
    report.kind = "special"
    report.special = page
    kind = "paged" if page.paged else "nonpaged"
    report.allocation = Allocation(page.page_va, page.requested, page.allocation, page.tag,
                                   "free" if page.freed else "allocated", "special pool (%s)" % kind,
                                   "special pool page", header=None)
    if page.freed:
        report.findings.append(Finding("free-block", "the special-pool page %s was freed (signature 98764321): the "
                                       "allocation %s (tag %s) is gone; an access here is a use after free"
                                       % (format_address(page.page_va), format_address(page.allocation), page.tag_text),
                                       page.page_va, page.tag))
        return
    if on_guard:
        past = report.address - page.end
        report.findings.append(Finding(
            "guard-page", "%s is on the guard page after the special-pool allocation %s (tag %s, 0x%x bytes "
            "requested): an access 0x%x bytes past its end, an overrun by the allocation's owner"
            % (format_address(report.address), format_address(page.allocation), page.tag_text, page.requested, past),
            report.address, page.tag))
    elif page.fill_damage is not None:
        report.findings.append(Finding(
            "fill-damage", "the fill byte 0x%02x of special-pool page %s is overwritten at %s: an %s of the "
            "allocation %s (tag %s)" % (page.fill, format_address(page.page_va), format_address(page.fill_damage),
                                        page.damage_kind,
                                        format_address(page.allocation), page.tag_text), page.fill_damage, page.tag))
    if not on_guard and not page.allocation <= report.address < page.end:
        report.findings.append(Finding("outside", "%s is outside the allocation (%s-%s), in the page's fill bytes"
                                       % (format_address(report.address), format_address(page.allocation),
                                          format_address(page.end - 1)),
                                       report.address))


def _from_big(report: PoolReport, lookup: BigPoolLookup) -> None:
    entry = lookup.entry
    assert entry is not None
    report.kind = "big"
    report.allocation = Allocation(entry.va, entry.size, entry.va, entry.tag, "free" if entry.free else "allocated",
                                   "POOL_TYPE 0x%x" % entry.pool_type, "big pool table (%s)" % lookup.layout)
    if entry.free:
        report.findings.append(Finding("free-block", "the big pool allocation %s (tag %s) is marked freed in the "
                                       "table: an access here is a use after free"
                                       % (format_address(entry.va), entry.tag_text), entry.va, entry.tag))


def _from_nearest(report: PoolReport, found: NearestHeader, why: str) -> None:
    report.kind = "nearest-header"
    report.nearest = found
    h = found.allocation
    report.allocation = Allocation(h.va, h.block_size, h.va + HEADER_SIZE, h.tag, h.state, pool_type_text(h.pool_type),
                                   "nearest pool header below the address (%s)" % why, best_effort=True, header=h)


def find_allocation(target, symbolizer, address: int, big_pool: bool = True) -> PoolReport:
    """The allocation holding ``address`` with every finding around it; ``PytriageError`` only for an
    address that cannot be pool at all."""
    if not _is_kernel(address):
        raise PytriageError("%s is not a kernel address: pool lives in kernel space (ffff8000`00000000 and up)"
                            % format_address(address))
    page_va = address & ~(PAGE - 1)
    report = PoolReport(address, page_va, header_layout=header_layout_note(symbolizer))
    build = target.os_build
    segment_heap = build is not None and build >= SEGMENT_HEAP_BUILD
    page = _read_page(target, page_va)

    first_break = None
    if page is not None:
        special = special_pool_page(page, page_va, lambda: not target.is_valid(page_va + PAGE))
        if special is not None:
            _from_special(report, special, on_guard=False)
            return report
        walk = walk_page(page, page_va)
        if walk.starts_clean and (not segment_heap or walk.intact):
            _from_block(report, walk)
            if report.allocation is not None or report.findings:
                return report
        if not segment_heap and walk.breaks and walk.breaks[0].header_va == page_va:
            first_break = walk.breaks[0]
    else:
        previous = _read_page(target, page_va - PAGE)
        special = special_pool_page(previous, page_va - PAGE, lambda: True) if previous is not None else None
        if special is not None and not special.freed:
            _from_special(report, special, on_guard=True)
            return report

    if big_pool:
        lookup = find_big_allocation(target, symbolizer, address)
        report.big = lookup
        if lookup.entry is not None:
            _from_big(report, lookup)
            if page is None:
                report.notes.append("the page %s itself is not in the dump" % format_address(page_va))
            return report
        if lookup.unavailable:
            report.notes.append(lookup.unavailable)
    else:
        report.notes.append("big pool table not searched (--no-big-pool)")
    if first_break is not None:                     # neither big pool nor special pool explains the page
        report.findings.append(Finding("chain-break", "the page's first header is damaged: %s"
                                       % first_break.describe(), page_va))

    saved = _saved_note(target, address)
    if not target.is_valid(address, 1):
        report.notes.append(saved or "%s is not in the dump: the page is paged out, freed, never mapped, or left out "
                            "of this dump kind" % format_address(address))
        return report
    why = "segment heap pages cannot be walked from the page start" if segment_heap else \
        "the page does not walk as a classic pool page"
    if page is None:
        why = "only part of the page is in this %s dump" % (target.dump_kind or "")
    found, lowest = nearest_header(target, address)
    if found is not None:
        _from_nearest(report, found, why)
        return report
    if saved is not None and lowest > address - PAGE:
        report.notes.append("no pool header in the saved bytes from %s to %s: this triage dump does not keep the "
                            "memory further back, where the allocation's header would be"
                            % (format_address(lowest), format_address(address)))
    else:
        report.notes.append("no plausible pool header covers %s within 0x%x bytes below it: not pool memory, or a "
                            "damaged header" % (format_address(address), PAGE))
    return report

