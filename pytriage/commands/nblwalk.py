"""`!nblwalk` / `pytriage nblwalk`: what was in flight and whether its bookkeeping was intact (DESIGN 8).

Walks a NET_BUFFER_LIST chain (``analysis.nbl.walk``), names whose memory every NBL, pool handle and
source handle is (pool tag -> driver, through the same owner sources as ``!pooltag``), decodes the
packets, validates nwifi's DOT11 completion stacks and, with ``--pcap``, writes the packets to a
pcapng file. JSON: schema ``pytriage.nblwalk/1`` (docs/cli.md).
"""

from dataclasses import dataclass
from typing import List, Optional

from pytriage.analysis.function_table import UnwindCatalog
from pytriage.analysis.memory_owner import MemoryOwner, MemoryOwnerFinder
from pytriage.analysis.nbl.layouts import NblLayouts
from pytriage.analysis.nbl.mdl import mdl_flag_names
from pytriage.analysis.nbl.pcapng import CapturedPacket, write_pcapng
from pytriage.analysis.nbl.walk import (
    DEFAULT_MAX_NBLS,
    NblInfo,
    NblWalk,
    NblWalker,
    NetBufferInfo,
    WalkOptions,
    flag_owners,
    nbl_flag_names,
    status_name,
)
from pytriage.commands.memory import hexdump_lines
from pytriage.commands.pooltag import PoolTagContext, PoolTagOptions
from pytriage.commands.render import format_address, hex64

SCHEMA = "pytriage.nblwalk/1"
HEX_PREVIEW = 64                     # packet bytes shown with -v and kept in JSON


@dataclass
class NblWalkOptions:
    max_nbls: int = DEFAULT_MAX_NBLS
    verbose: bool = False
    pcap: Optional[str] = None
    dot11: str = "auto"
    owners: bool = True
    packets: bool = True
    scan: str = "auto"
    pooltag_file: Optional[str] = None


def nbl_walk(target, symbolizer, address: int, options: NblWalkOptions, progress_stream=None) -> dict:
    """Walk from ``address``; the JSON record (with the walk itself under ``_walk`` for the text renderer)."""
    ctx = PoolTagContext(target, symbolizer, PoolTagOptions(scan=options.scan, pooltag_file=options.pooltag_file),
                         progress_stream)
    finder = MemoryOwnerFinder(target, symbolizer, lambda tag: ctx.owners(tag)[0],
                               UnwindCatalog(target, getattr(symbolizer, "store", None)))
    layouts = NblLayouts(symbolizer)
    walker = NblWalker(target, layouts, finder, WalkOptions(max_nbls=options.max_nbls, owners=options.owners,
                                                            dot11=options.dot11, packets=options.packets))
    walk = walker.walk(address)
    record = walk_to_json(walk)
    if options.pcap:
        record["pcap"] = _write_pcap(target, walk, options.pcap)
    record["_walk"] = walk
    return record


def _packets(walk: NblWalk) -> List[CapturedPacket]:
    out = []
    for nbl in walk.nbls:
        for nb in nbl.net_buffers:
            if nb.packet is None or nb.summary is None or not nb.packet.data:
                continue
            out.append(CapturedPacket(nb.packet.data, max(nb.packet.length, len(nb.packet.data)), nb.summary.link,
                                      "NBL %s NB#%d (walk #%d)" % (format_address(nbl.address), nb.index,
                                                                   nbl.index)))
    return out


def _write_pcap(target, walk: NblWalk, path: str) -> dict:
    packets = _packets(walk)
    when = getattr(target, "crash_time", None)
    counts = write_pcapng(path, packets, when if when is not None else 0.0)
    return {"path": path, "packets": len(packets), "by_link": counts,
            "timestamp": "crash time" if when is not None else "unknown (1970-01-01)"}


# -- JSON ---------------------------------------------------------------------------------------------------
def _owner(memory: Optional[MemoryOwner]) -> Optional[dict]:
    return memory.to_json() if memory is not None else None


def _net_buffer_json(nb: NetBufferInfo) -> dict:
    packet = nb.packet
    return {"index": nb.index, "address": hex64(nb.address), "next": hex64(nb.next),
            "current_mdl": hex64(nb.current_mdl), "current_mdl_offset": nb.current_mdl_offset,
            "data_length": nb.data_length, "mdl_chain": hex64(nb.mdl_chain), "data_offset": nb.data_offset,
            "pool_handle": hex64(nb.pool_handle), "mdls": [m.to_json() for m in nb.mdls],
            "packet": None if packet is None else {
                "captured": len(packet.data), "length": packet.length, "complete": packet.complete,
                "sources": list(packet.sources), "gap": packet.gap, "hex": packet.data[:HEX_PREVIEW].hex()},
            "summary": nb.summary.to_json() if nb.summary is not None else None,
            "notes": list(nb.notes), "error": nb.error}


def _nbl_json(nbl: NblInfo) -> dict:
    return {"index": nbl.index, "address": hex64(nbl.address), "error": nbl.error, "next": hex64(nbl.next),
            "first_net_buffer": hex64(nbl.first_net_buffer), "context": hex64(nbl.context),
            "parent": hex64(nbl.parent), "pool_handle": hex64(nbl.pool_handle),
            "source_handle": hex64(nbl.source_handle), "nbl_flags": nbl.nbl_flags,
            "nbl_flag_names": nbl_flag_names(nbl.nbl_flags), "child_ref_count": nbl.child_ref_count,
            "flags": nbl.flags, "flag_owners": flag_owners(nbl.flags), "status": "0x%08x" % nbl.status,
            "status_name": status_name(nbl.status), "memory": _owner(nbl.memory),
            "pool_handle_memory": _owner(nbl.pool_handle_memory),
            "source_handle_memory": _owner(nbl.source_handle_memory),
            "context_size": nbl.context_size, "context_offset": nbl.context_offset,
            "net_buffers": [_net_buffer_json(nb) for nb in nbl.net_buffers],
            "dot11": nbl.dot11.to_json() if nbl.dot11 is not None else None, "notes": list(nbl.notes)}


def walk_to_json(walk: NblWalk) -> dict:
    return {"schema": SCHEMA, "start": hex64(walk.start), "count": len(walk.nbls), "complete": walk.complete,
            "stop": walk.stop, "nbls": [_nbl_json(n) for n in walk.nbls],
            "layouts": walk.layouts.to_json() if walk.layouts is not None else {}, "notes": list(walk.notes),
            "pcap": None}


# -- text ---------------------------------------------------------------------------------------------------
def _memory_line(label: str, memory: Optional[MemoryOwner]) -> List[str]:
    return [] if memory is None else ["  %-15s %s" % (label, memory.text)]


def _net_buffer_lines(nb: NetBufferInfo, verbose: bool) -> List[str]:
    if nb.error:
        return ["  NB#%d %s: %s" % (nb.index, format_address(nb.address), nb.error)]
    lines = ["  NB#%d %s  DataLength 0x%x  DataOffset 0x%x  CurrentMdl %s +0x%x  %d MDL%s" % (
        nb.index, format_address(nb.address), nb.data_length, nb.data_offset, format_address(nb.current_mdl),
        nb.current_mdl_offset, len(nb.mdls), "" if len(nb.mdls) == 1 else "s")]
    if nb.packet is not None and not nb.packet.data:
        lines.append("      packet: none of its 0x%x bytes can be read" % nb.packet.length)
    elif nb.summary is not None:
        lines.append("      %s" % nb.summary.text)
    if nb.packet is not None and nb.packet.gap:
        lines.append("      %s: %s" % ("unreadable" if not nb.packet.data else "partial", nb.packet.gap))
    if verbose:
        for mdl in nb.mdls:
            if mdl.error:
                lines.append("      MDL %s: %s" % (format_address(mdl.address), mdl.error))
                continue
            lines.append("      MDL %s  ByteCount 0x%x  ByteOffset 0x%x  MappedSystemVa %s  StartVa %s  "
                         "MdlFlags 0x%x (%s)  PFN %s" % (
                             format_address(mdl.address), mdl.byte_count, mdl.byte_offset,
                             format_address(mdl.mapped_va), format_address(mdl.start_va), mdl.flags,
                             mdl_flag_names(mdl.flags), " ".join("%x" % p for p in mdl.pfns) or "-"))
            lines.extend("        note: %s" % n for n in mdl.notes)
        if nb.packet is not None and nb.packet.data:
            via = "+".join(dict.fromkeys(nb.packet.sources)) or "-"
            lines.append("      first 0x%x of 0x%x bytes (read through %s):" % (
                min(HEX_PREVIEW, len(nb.packet.data)), nb.packet.length, "MappedSystemVa" if via == "va" else
                "PFN array" if via == "pfn" else via))
            lines.extend("        " + line.split("  ", 1)[1] for line in
                         hexdump_lines(0, nb.packet.data[:HEX_PREVIEW]))
    lines.extend("      note: %s" % n for n in nb.notes)
    return lines


def _dot11_lines(nbl: NblInfo) -> List[str]:
    report = nbl.dot11
    if report is None:
        return []
    lines = ["  DOT11 completion stack (%s):" % report.layout_source]
    if report.error:
        return lines + ["    %s" % report.error]
    depth = "%d entr%s" % (report.depth, "y" if report.depth == 1 else "ies") if report.depth is not None else \
        "pTOS outside the array"
    lines.append("    packet context %s  pBOS %s  pTOS %s  (%s)" % (
        format_address(report.packet_context), format_address(report.pbos), format_address(report.ptos), depth))
    for entry in report.entries:
        where = "[%d]" % entry.index if entry.index is not None else "pTOS-0x18"
        mark = "  " if entry.check.ok else "!!"
        lines.append("    %s %-9s %s  pRoutine %s  pCtxt %s  pCtxt2 %s" % (
            mark, where, format_address(entry.address), entry.check.text, format_address(entry.ctxt),
            format_address(entry.ctxt2)))
        if entry.owner is not None:
            lines.append("                 entry memory: %s" % entry.owner.text)
    for finding in report.findings:
        lines.append("    !! %s" % finding)
    lines.append("    Verdict: %s" % report.verdict)
    return lines


def _pointer(value: int) -> str:
    return format_address(value) if value else "(null)"


def _flags(value: int, names) -> str:
    return "0x%x (%s)" % (value, names(value)) if value else "0"


def _nbl_lines(nbl: NblInfo, verbose: bool) -> List[str]:
    if nbl.error:
        return ["NBL #%d %s: %s" % (nbl.index, format_address(nbl.address), nbl.error)]
    status = status_name(nbl.status)
    lines = ["NBL #%d %s  Flags %s  NblFlags %s  Status 0x%08x%s" % (
        nbl.index, format_address(nbl.address), _flags(nbl.flags, flag_owners), _flags(nbl.nbl_flags, nbl_flag_names),
        nbl.status, " " + status if status else "")]
    context = _pointer(nbl.context)
    if nbl.context and nbl.context_size is not None:
        context += " (Size 0x%x, Offset 0x%x)" % (nbl.context_size, nbl.context_offset or 0)
    lines.append("  Next %s  Parent %s  ChildRefCount %d  Context %s" % (
        _pointer(nbl.next), _pointer(nbl.parent), nbl.child_ref_count, context))
    lines.append("  NdisPoolHandle %s  SourceHandle %s" % (_pointer(nbl.pool_handle), _pointer(nbl.source_handle)))
    lines.extend(_memory_line("NBL memory", nbl.memory))
    lines.extend(_memory_line("NdisPoolHandle", nbl.pool_handle_memory))
    lines.extend(_memory_line("SourceHandle", nbl.source_handle_memory))
    for nb in nbl.net_buffers:
        lines.extend(_net_buffer_lines(nb, verbose))
    lines.extend(_dot11_lines(nbl))
    lines.extend("  note: %s" % n for n in nbl.notes)
    return lines


def render_text(record: dict, verbose: bool = False) -> List[str]:
    walk: NblWalk = record["_walk"]
    nbs = sum(len(n.net_buffers) for n in walk.nbls)
    mdls = sum(len(nb.mdls) for n in walk.nbls for nb in n.net_buffers)
    lines = ["NBL chain from %s: %d NBL%s, %d NET_BUFFER%s, %d MDL%s" % (
        format_address(walk.start), len(walk.nbls), "" if len(walk.nbls) == 1 else "s", nbs,
        "" if nbs == 1 else "s", mdls, "" if mdls == 1 else "s"), ""]
    for nbl in walk.nbls:
        lines.extend(_nbl_lines(nbl, verbose))
        lines.append("")
    lines.append("%s: %s" % ("Walk complete" if walk.complete else "Walk stopped", walk.stop))
    if walk.layouts is not None:
        lines.append("Layouts: %s" % "; ".join("%s %s" % item for item in walk.layouts.sources().items()))
    lines.extend("Note: %s" % n for n in walk.notes)
    pcap = record.get("pcap")
    if pcap:
        links = ", ".join("%s %d" % item for item in sorted(pcap["by_link"].items()))
        lines.append("pcapng: %d packet%s written to %s (%s; timestamps: %s)" % (
            pcap["packets"], "" if pcap["packets"] == 1 else "s", pcap["path"], links or "none", pcap["timestamp"]))
    return lines
