"""Walk a NET_BUFFER_LIST chain: each NBL, its NET_BUFFERs, their MDLs and packet bytes (DESIGN 8).

The walk follows ``Next`` from the NBL the user names. It is bounded three ways, because the chain
comes from a crashed machine: ``max_nbls`` (the user's ``--max``), a visited set (a chain that loops is
reported with the NBL it loops back to), and per-NBL limits on NET_BUFFERs and MDLs. A pointer that
does not read ends the walk at that NBL with the reason, never an exception: a partial walk is a
result. Reads are small and go through the target's page cache: NBLs allocated from one pool share
pages, so a chain costs a page per few NBLs on a live target.
"""

from dataclasses import dataclass, field
from typing import Callable, List, Optional

from pytriage.analysis.memory_owner import MemoryOwner, MemoryOwnerFinder
from pytriage.analysis.nbl.chain import ChainGuard
from pytriage.analysis.nbl.dot11 import Dot11Analyzer, Dot11Report
from pytriage.analysis.nbl.layouts import NblLayouts
from pytriage.analysis.nbl.mdl import MdlInfo, PacketBytes, packet_bytes, walk_mdls
from pytriage.analysis.nbl.packet import PacketSummary, summarize
from pytriage.errors import MemoryReadError, format_address

DEFAULT_MAX_NBLS = 1000
MAX_NET_BUFFERS = 256
NBL_FLAGS = ((0x1, "SEND_READ_ONLY"), (0x2, "RECV_READ_ONLY"), (0x100, "HD_SPLIT"), (0x200, "IS_IPV4"),
             (0x400, "IS_IPV6"), (0x800, "IS_TCP"), (0x1000, "IS_UDP"),
             (0x2000, "SPLIT_AT_UPPER_LAYER_PROTOCOL_HEADER"), (0x4000, "SPLIT_AT_UPPER_LAYER_PROTOCOL_PAYLOAD"),
             (0x8000, "IS_LOOPBACK_PACKET"))
# NET_BUFFER_LIST.Flags is split by owner (ndis/nbl.h, NDIS 6.30+): which layer set a bit says who to ask.
FLAG_OWNERS = ((0xFFF00003, "protocol"), (0x000F0000, "scratch"), (0x0000F000, "miniport"), (0x00000FFC, "NDIS"))
_NBL_FIELDS = {"next": "Next", "first_net_buffer": "FirstNetBuffer", "context": "Context",
               "parent": "ParentNetBufferList", "pool_handle": "NdisPoolHandle", "source_handle": "SourceHandle",
               "nbl_flags": "NblFlags", "child_ref_count": "ChildRefCount", "flags": "Flags", "status": "Status"}
_NB_FIELDS = {"next": "Next", "current_mdl": "CurrentMdl", "current_mdl_offset": "CurrentMdlOffset",
              "data_length": "DataLength", "mdl_chain": "MdlChain", "data_offset": "DataOffset",
              "pool_handle": "NdisPoolHandle"}
STATUS_NAMES = {0x00000000: "STATUS_SUCCESS", 0x00000103: "STATUS_PENDING", 0xC0000001: "NDIS_STATUS_FAILURE",
                0xC000009A: "NDIS_STATUS_RESOURCES", 0xC0000120: "STATUS_CANCELLED",
                0xC000023A: "STATUS_CONNECTION_INVALID", 0xC0000241: "STATUS_CONNECTION_ABORTED",
                0xC023000B: "NDIS_STATUS_MEDIA_DISCONNECTED", 0xC023000C: "NDIS_STATUS_REQUEST_ABORTED",
                0xC023000D: "NDIS_STATUS_RESET_IN_PROGRESS", 0xC023002A: "NDIS_STATUS_PAUSED",
                0xC023002F: "NDIS_STATUS_LOW_POWER_STATE", 0xC0230004: "NDIS_STATUS_NOT_ACCEPTED"}


def nbl_flag_names(value: int) -> str:
    names = [name for bit, name in NBL_FLAGS if value & bit]
    rest = value & ~sum(bit for bit, _ in NBL_FLAGS)
    if rest:
        names.append("0x%x" % rest)
    return "|".join(names) if names else "0"


def flag_owners(value: int) -> str:
    """``Flags`` split by owner: "NDIS 0x500" for the seed's 0x500."""
    parts = ["%s 0x%x" % (who, value & mask) for mask, who in FLAG_OWNERS if value & mask]
    return ", ".join(parts) if parts else "0"


def status_name(value: int) -> str:
    return STATUS_NAMES.get(value & 0xFFFFFFFF, "")


@dataclass
class NetBufferInfo:
    index: int
    address: int
    next: int = 0
    current_mdl: int = 0
    current_mdl_offset: int = 0
    data_length: int = 0
    mdl_chain: int = 0
    data_offset: int = 0
    pool_handle: int = 0
    mdls: List[MdlInfo] = field(default_factory=list)
    packet: Optional[PacketBytes] = None
    summary: Optional[PacketSummary] = None
    notes: List[str] = field(default_factory=list)
    error: str = ""


@dataclass
class NblInfo:
    index: int
    address: int
    next: int = 0
    first_net_buffer: int = 0
    context: int = 0
    parent: int = 0
    pool_handle: int = 0
    source_handle: int = 0
    nbl_flags: int = 0
    child_ref_count: int = 0
    flags: int = 0
    status: int = 0
    net_buffers: List[NetBufferInfo] = field(default_factory=list)
    memory: Optional[MemoryOwner] = None                # whose block the NBL is in
    pool_handle_memory: Optional[MemoryOwner] = None
    source_handle_memory: Optional[MemoryOwner] = None
    context_size: Optional[int] = None
    context_offset: Optional[int] = None
    dot11: Optional[Dot11Report] = None
    notes: List[str] = field(default_factory=list)
    error: str = ""                                     # the NBL itself could not be read


@dataclass
class NblWalk:
    start: int
    nbls: List[NblInfo] = field(default_factory=list)
    stop: str = "end of chain (Next is NULL)"
    complete: bool = True          # False when the walk stopped before the end of the chain
    layouts: Optional[NblLayouts] = None
    notes: List[str] = field(default_factory=list)


@dataclass
class WalkOptions:
    max_nbls: int = DEFAULT_MAX_NBLS
    owners: bool = True            # pool owners of NBL, pool handle, source handle (reads the pages' headers)
    dot11: str = "auto"            # auto (nwifi loaded and a context big enough), always, never
    packets: bool = True           # read and decode packet bytes (off: structures only, the least a walk reads)
    packet_limit: int = 0x40000
    progress: Optional[Callable[[int], None]] = None


class NblWalker:
    def __init__(self, target, layouts: NblLayouts, finder: MemoryOwnerFinder, options: WalkOptions) -> None:
        self.target = target
        self.layouts = layouts
        self.finder = finder
        self.options = options
        self.dot11 = Dot11Analyzer(target, layouts, finder)
        self._nwifi = target.module_by_name("nwifi") is not None

    def walk(self, start: int) -> NblWalk:
        result = NblWalk(start, layouts=self.layouts)
        guard = ChainGuard(self.options.max_nbls)
        current = start
        while current:
            stop = guard.stop(current)
            if stop is not None:
                result.complete = False
                result.stop = ("cycle: NBL #%d's Next points back to NBL #%d (%s)" % (
                    len(result.nbls) - 1, stop[1], format_address(current)) if stop[0] == "loop" else
                    "stopped after %d NBLs (--max %d); the chain goes on at %s" % (
                        len(result.nbls), stop[1], format_address(current)))
                break
            info = self.read_nbl(len(result.nbls), current)
            result.nbls.append(info)
            if self.options.progress is not None:
                self.options.progress(len(result.nbls))
            if info.error:
                result.stop = "NBL #%d cannot be read: %s" % (info.index, info.error)
                result.complete = False
                break
            current = info.next
        result.notes.extend(self.layouts.notes)
        return result

    # -- one NBL ---------------------------------------------------------------------------------------------
    def read_nbl(self, index: int, address: int) -> NblInfo:
        info = NblInfo(index, address)
        layout = self.layouts["_NET_BUFFER_LIST"]
        if address >> 47 not in (0, 0x1FFFF) or address % 8:
            info.error = "%s is not a %s address" % (format_address(address),
                                                     "canonical" if address % 8 == 0 else "pointer-aligned")
            return info
        try:
            raw = self.target.read(address, layout.span)
        except MemoryReadError as exc:
            info.error = "%s is not in the dump (%s)" % (format_address(address), exc)
            return info
        layout.fill(info, raw, _NBL_FIELDS, signed=("ChildRefCount",))
        self._sanity(info)
        self._net_buffers(info)
        if self.options.owners:
            info.memory = self.finder.describe(address)
            if info.pool_handle:
                info.pool_handle_memory = self.finder.describe(info.pool_handle)
            if info.source_handle:
                info.source_handle_memory = self.finder.describe(info.source_handle)
        if info.context:
            self._context(info)
        return info

    @staticmethod
    def _sanity(info: NblInfo) -> None:
        if info.first_net_buffer == 0:
            info.notes.append("FirstNetBuffer is NULL: an NBL always carries at least one NET_BUFFER")
        if info.child_ref_count < 0:
            info.notes.append("ChildRefCount %d is negative: clones were freed more often than made"
                              % info.child_ref_count)
        if info.child_ref_count > 0x10000:
            info.notes.append("ChildRefCount %d is implausible" % info.child_ref_count)
        if info.next and info.next % 8:
            info.notes.append("Next %s is not pointer-aligned" % format_address(info.next))

    def _net_buffers(self, info: NblInfo) -> None:
        layout = self.layouts["_NET_BUFFER"]
        mdl_layout = self.layouts["_MDL"]
        guard = ChainGuard(MAX_NET_BUFFERS)
        current = info.first_net_buffer
        while current:
            stop = guard.stop(current)
            if stop is not None:
                info.notes.append("the NET_BUFFER chain loops back to %s" % format_address(current)
                                  if stop[0] == "loop" else "more than %d NET_BUFFERs: stopped" % stop[1])
                return
            nb = NetBufferInfo(len(info.net_buffers), current)
            info.net_buffers.append(nb)
            try:
                raw = self.target.read(current, layout.span)
            except MemoryReadError as exc:
                nb.error = "NET_BUFFER %s is not in the dump (%s)" % (format_address(current), exc)
                return
            layout.fill(nb, raw, _NB_FIELDS)
            nb.data_length &= 0xFFFFFFFF           # a union with the 64-bit stDataLength in some headers
            self._packet(nb, mdl_layout)
            current = nb.next

    def _packet(self, nb: NetBufferInfo, mdl_layout) -> None:
        chain, why = walk_mdls(self.target, mdl_layout, nb.mdl_chain or nb.current_mdl)
        nb.mdls = chain
        if why:
            nb.notes.append(why)
        # the data starts CurrentMdlOffset bytes into CurrentMdl, which is on the MdlChain
        start = next((i for i, m in enumerate(chain) if m.address == nb.current_mdl), None)
        if start is None:
            if nb.current_mdl:
                nb.notes.append("CurrentMdl %s is not on the MdlChain" % format_address(nb.current_mdl))
                extra, _ = walk_mdls(self.target, mdl_layout, nb.current_mdl)
                chain_for_data = extra
            else:
                nb.notes.append("CurrentMdl is NULL")
                chain_for_data = []
        else:
            chain_for_data = chain[start:]
            skipped = sum(m.byte_count for m in chain[:start])
            if skipped + nb.current_mdl_offset != nb.data_offset:
                nb.notes.append("DataOffset 0x%x != bytes before CurrentMdl (0x%x) + CurrentMdlOffset (0x%x)"
                                % (nb.data_offset, skipped, nb.current_mdl_offset))
        if not nb.data_length:
            nb.notes.append("DataLength is 0")
        if not self.options.packets:
            return
        nb.packet = packet_bytes(self.target, chain_for_data, nb.current_mdl_offset, nb.data_length,
                                 self.options.packet_limit)
        nb.summary = summarize(nb.packet.data, nb.data_length)

    def _context(self, info: NblInfo) -> None:
        layout = self.layouts["_NET_BUFFER_LIST_CONTEXT"]
        try:
            raw = self.target.read(info.context, layout.span)
        except MemoryReadError as exc:
            info.notes.append("Context %s is not in the dump (%s)" % (format_address(info.context), exc))
            return
        info.context_size = layout.value(raw, "Size")
        info.context_offset = layout.value(raw, "Offset")
        data_start = info.context + layout.size + info.context_offset
        if info.context_offset > info.context_size:
            info.notes.append("context Offset 0x%x is past its Size 0x%x" % (info.context_offset, info.context_size))
            return
        mode = self.options.dot11
        room = info.context_size - info.context_offset
        needed = self.layouts["DOT11_PACKET_CONTEXT"].span
        if mode == "never" or (mode == "auto" and not (self._nwifi and room >= needed)):
            return
        related = [m for m in (info.memory, info.pool_handle_memory) if m is not None]
        info.dot11 = self.dot11.analyze(info.context, data_start, related)
