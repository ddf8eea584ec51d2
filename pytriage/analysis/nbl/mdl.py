"""MDL chains and the packet bytes a NET_BUFFER describes.

A NET_BUFFER's data starts ``CurrentMdlOffset`` bytes into ``CurrentMdl`` and runs ``DataLength`` bytes
along the MDL chain. Each MDL's bytes are read through ``MappedSystemVa`` when the MDL says it is mapped
(or describes nonpaged pool); when that VA is not in the dump (or there is none), through the PFN array
that follows the MDL header, from physical memory (full and kernel dumps keep pages a system VA no
longer maps). Bytes neither way reaches end the capture there, and the gap is said; the packet keeps
its real length, so a summary and the pcapng say "74 bytes, 20 captured".

Every loop is bounded: MDL chains by count and by a visited set (a chain can loop), sizes by what a
packet can be, PFN arrays by the MDL's own ``Size``.
"""

from dataclasses import dataclass, field
from typing import List, Tuple

from pytriage.analysis.nbl.chain import ChainGuard
from pytriage.analysis.nbl.layouts import Layout
from pytriage.commands.render import hex64
from pytriage.errors import MemoryReadError, PytriageError, format_address

PAGE = 0x1000
MAX_MDLS = 256                     # per NET_BUFFER; real chains have a handful
MAX_PACKET = 0x40000               # 256 KB: a large send offload NB is at most 64 KB... with slack
MDL_FLAGS = ((0x0001, "MAPPED_TO_SYSTEM_VA"), (0x0002, "PAGES_LOCKED"), (0x0004, "SOURCE_IS_NONPAGED_POOL"),
             (0x0008, "ALLOCATED_FIXED_SIZE"), (0x0010, "PARTIAL"), (0x0020, "PARTIAL_HAS_BEEN_MAPPED"),
             (0x0040, "IO_PAGE_READ"), (0x0080, "WRITE_OPERATION"), (0x0100, "LOCKED_PAGE_TABLES"),
             (0x0200, "FREE_EXTRA_PTES"), (0x0400, "DESCRIBES_AWE"), (0x0800, "IO_SPACE"),
             (0x1000, "NETWORK_HEADER"), (0x2000, "MAPPING_CAN_FAIL"), (0x4000, "PAGE_CONTENTS_INVARIANT"),
             (0x8000, "INTERNAL"))
_MAPPED = 0x0001 | 0x0004
_MDL_FIELDS = {"next": "Next", "size": "Size", "flags": "MdlFlags", "process": "Process",
               "mapped_va": "MappedSystemVa", "start_va": "StartVa", "byte_count": "ByteCount",
               "byte_offset": "ByteOffset"}


def mdl_flag_names(flags: int) -> str:
    names = [name for bit, name in MDL_FLAGS if flags & bit]
    return "|".join(names) if names else "0"


@dataclass
class MdlInfo:
    address: int
    next: int = 0
    size: int = 0
    flags: int = 0
    process: int = 0
    mapped_va: int = 0
    start_va: int = 0
    byte_count: int = 0
    byte_offset: int = 0
    pfns: List[int] = field(default_factory=list)
    error: str = ""                 # why the MDL itself could not be read
    notes: List[str] = field(default_factory=list)

    @property
    def mapped(self) -> bool:
        return bool(self.flags & _MAPPED) and self.mapped_va != 0

    def to_json(self) -> dict:
        return {"address": hex64(self.address), "next": hex64(self.next), "size": self.size,
                "flags": self.flags, "flag_names": mdl_flag_names(self.flags), "process": hex64(self.process),
                "mapped_system_va": hex64(self.mapped_va), "start_va": hex64(self.start_va),
                "byte_count": self.byte_count, "byte_offset": self.byte_offset,
                "pfns": ["0x%x" % p for p in self.pfns], "error": self.error, "notes": list(self.notes)}


@dataclass
class PacketBytes:
    data: bytes                     # captured bytes, from the start of the packet
    length: int                     # NET_BUFFER DataLength (what the packet really has)
    sources: List[str] = field(default_factory=list)     # per MDL read: "va", "pfn"
    gap: str = ""                   # why the capture stops short of ``length``

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.length


def read_mdl(target, layout: Layout, address: int) -> MdlInfo:
    """Decode the MDL at ``address`` and its PFN array (as many entries as its ``Size`` says, at most what
    its byte range spans)."""
    info = MdlInfo(address)
    try:
        raw = target.read(address, layout.span)
    except MemoryReadError as exc:
        info.error = "MDL %s is not in the dump (%s)" % (format_address(address), exc)
        return info
    layout.fill(info, raw, _MDL_FIELDS)
    if info.byte_offset >= PAGE:
        info.notes.append("ByteOffset 0x%x is not inside a page: a damaged MDL" % info.byte_offset)
    spans = (info.byte_offset % PAGE + info.byte_count + PAGE - 1) // PAGE
    declared = max(0, (info.size - layout.size) // 8)
    if declared != spans:
        info.notes.append("Size 0x%x declares %d PFN entries; the byte range spans %d pages"
                          % (info.size, declared, spans))
    count = min(declared, spans, MAX_PACKET // PAGE + 1)
    if count:
        try:
            entries = target.read(address + layout.size, 8 * count)
        except MemoryReadError:
            info.notes.append("the PFN array after the MDL is not in the dump")
        else:
            info.pfns = [int.from_bytes(entries[i:i + 8], "little") for i in range(0, len(entries), 8)]
    return info


def _read_physical(target, info: MdlInfo, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` into the MDL's buffer, page by page through its PFNs."""
    out = bytearray()
    position = info.byte_offset % PAGE + offset
    while size > 0:
        index, in_page = divmod(position, PAGE)
        if index >= len(info.pfns):
            raise MemoryReadError(position, "byte 0x%x is past the MDL's PFN array" % offset)
        chunk = min(size, PAGE - in_page)
        out += target.read_physical(info.pfns[index] * PAGE + in_page, chunk)
        position += chunk
        size -= chunk
    return bytes(out)


def read_range(target, info: MdlInfo, offset: int, size: int) -> Tuple[bytes, str, str]:
    """(bytes, how they were read, why not) for ``size`` bytes at ``offset`` into the MDL's buffer."""
    why = []
    if info.mapped:
        try:
            return target.read(info.mapped_va + offset, size), "va", ""
        except MemoryReadError:
            why.append("MappedSystemVa %s is not in the dump" % format_address(info.mapped_va + offset))
    elif info.mapped_va:
        why.append("MdlFlags 0x%x do not say MappedSystemVa is mapped" % info.flags)
    else:
        why.append("no system mapping")
    if info.pfns:
        try:
            return _read_physical(target, info, offset, size), "pfn", ""
        except (MemoryReadError, PytriageError) as exc:
            why.append("PFN 0x%x: %s" % (info.pfns[min(len(info.pfns) - 1, (info.byte_offset % PAGE + offset) // PAGE)],
                                         exc))
    else:
        why.append("no PFN array")
    return b"", "", "; ".join(why)


def walk_mdls(target, layout: Layout, first: int, limit: int = MAX_MDLS) -> Tuple[List[MdlInfo], str]:
    """The MDL chain from ``first``: (MDLs, why it stopped early or "")."""
    mdls: List[MdlInfo] = []
    guard = ChainGuard(limit)
    current = first
    while current:
        stop = guard.stop(current)
        if stop is not None:
            return mdls, ("the MDL chain loops back to %s" % format_address(current) if stop[0] == "loop" else
                          "more than %d MDLs: stopped" % limit)
        info = read_mdl(target, layout, current)
        mdls.append(info)
        if info.error:
            return mdls, info.error
        current = info.next
    return mdls, ""


def packet_bytes(target, mdls: List[MdlInfo], first_offset: int, length: int,
                 limit: int = MAX_PACKET) -> PacketBytes:
    """The packet: ``length`` bytes from ``first_offset`` into ``mdls[0]`` along the chain."""
    wanted = min(length, limit)
    packet = PacketBytes(b"", length)
    if length > limit:
        packet.gap = "DataLength 0x%x is more than a packet can be; only the first 0x%x bytes are read" % (length,
                                                                                                          limit)
    out = bytearray()
    offset = first_offset
    for info in mdls:
        if len(out) >= wanted:
            break
        if info.error:
            packet.gap = info.error
            break
        available = info.byte_count - offset
        if available <= 0:
            offset -= info.byte_count
            continue
        take = min(available, wanted - len(out))
        data, how, why = read_range(target, info, offset, take)
        if not data:
            packet.gap = "bytes 0x%x-0x%x (MDL %s): %s" % (len(out), len(out) + take - 1,
                                                            format_address(info.address), why)
            break
        out += data
        packet.sources.append(how)
        offset = 0
    else:
        if len(out) < wanted and not packet.gap:
            packet.gap = "the MDL chain ends after 0x%x of 0x%x bytes" % (len(out), length)
    packet.data = bytes(out)
    return packet
