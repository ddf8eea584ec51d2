"""`pytriage info DUMP`: what the dump is, the bugcheck, the crash context and the module list.

The result is gathered once into ``DumpInfo`` (no printing there) and rendered as WinDbg-like text
(`vertarget`, `.bugcheck`, `r`, `lm` shapes) or as the JSON record documented in docs/cli.md.
"""

import datetime
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from tabulate import tabulate

from pytriage.commands.render import format_address, format_uptime, hex64, windows_version_line
from pytriage.dump.secondary import SecondaryBlob
from pytriage.errors import PytriageError
from pytriage.target.model import Module, ReadStats
from pytriage.target.offline import OfflineDumpTarget

INFO_SCHEMA_VERSION = 1


@dataclass
class DumpInfo:
    path: str
    file_size: int
    dump_type: int
    dump_type_name: str
    machine: str
    is64: bool
    major_version: int
    build: int
    processors: int
    directory_table_base: int
    ps_loaded_module_list: int
    ps_active_process_head: int
    kd_debugger_data_block: int
    system_time_utc: Optional[str]
    uptime_seconds: float
    bugcheck_code: int
    bugcheck_parameters: List[int]
    memory: str                                   # how memory is read, or why it cannot be
    context: Optional[Dict[str, int]] = None
    modules: List[Module] = field(default_factory=list)
    module_source: str = ""
    warnings: List[str] = field(default_factory=list)
    secondary_data: List[SecondaryBlob] = field(default_factory=list)   # bugcheck callback blobs
    stats: Optional[ReadStats] = None

    @property
    def kernel_base(self) -> Optional[int]:
        return self.modules[0].base if self.modules else None


def gather_info(target: OfflineDumpTarget, path: str) -> DumpInfo:
    dump = target.dump
    h = dump.header
    if dump.unsupported_reason:
        memory = "not readable: %s" % dump.unsupported_reason
    elif dump.triage is not None:
        memory = "triage: %d saved ranges (stack and data blocks), no page tables" % len(dump.triage.regions())
    else:
        assert dump.physical is not None
        memory = "%s: %d pages stored, x64 4-level paging from DirectoryTableBase" % (
            dump.physical.kind, dump.physical.page_count())
    info = DumpInfo(
        path=path, file_size=dump.file.size, dump_type=h.dump_type, dump_type_name=h.dump_type_name,
        machine=h.machine, is64=h.is64, major_version=h.major_version, build=h.build, processors=h.processors,
        directory_table_base=h.directory_table_base, ps_loaded_module_list=h.ps_loaded_module_list,
        ps_active_process_head=h.ps_active_process_head, kd_debugger_data_block=h.kd_debugger_data_block,
        system_time_utc=h.system_time_utc, uptime_seconds=h.uptime_seconds, bugcheck_code=h.bugcheck_code,
        bugcheck_parameters=list(h.bugcheck_parameters), memory=memory)
    if dump.triage is not None:
        info.secondary_data = list(dump.triage.secondary_data)
    try:
        info.context = target.context_record()
    except PytriageError as exc:
        info.warnings.append("context record: %s" % exc)
    listing = target.module_list()
    info.modules = listing.modules
    info.module_source = listing.source
    info.warnings.extend(listing.warnings)
    info.stats = target.stats
    return info


def info_to_json(info: DumpInfo, with_stats: bool = False) -> Dict[str, object]:
    record: Dict[str, object] = {
        "schema": "pytriage.info/%d" % INFO_SCHEMA_VERSION,
        "file": {"path": info.path, "size": info.file_size},
        "dump_type": info.dump_type,
        "dump_type_name": info.dump_type_name,
        "machine": info.machine,
        "os": {"major_version": info.major_version, "build": info.build, "processors": info.processors},
        "directory_table_base": hex64(info.directory_table_base),
        "ps_loaded_module_list": hex64(info.ps_loaded_module_list),
        "ps_active_process_head": hex64(info.ps_active_process_head),
        "kd_debugger_data_block": hex64(info.kd_debugger_data_block),
        "kernel_base": None if info.kernel_base is None else hex64(info.kernel_base),
        "system_time_utc": info.system_time_utc,
        "uptime_seconds": round(info.uptime_seconds, 7),
        "bugcheck": {"code": "0x%08x" % info.bugcheck_code,
                     "parameters": [hex64(p) for p in info.bugcheck_parameters]},
        "memory": info.memory,
        "context": None if info.context is None else {k: hex64(v) for k, v in info.context.items()},
        "module_source": info.module_source,
        "modules": [m.to_json() for m in info.modules],
        "secondary_data": [{"tag": b.tag, "offset": "0x%x" % b.data_offset, "size": b.size}
                           for b in info.secondary_data],
        "warnings": list(info.warnings),
    }
    if with_stats and info.stats is not None:
        record["stats"] = info.stats.to_json()
    return record


def windbg_session_time(iso_utc: Optional[str]) -> str:
    """`Thu Sep 21 15:52:49.284 2023 (UTC + 0:00)`: vertarget's shape, in UTC (a dump has no time zone)."""
    if not iso_utc:
        return "unknown"
    when = datetime.datetime.strptime(iso_utc, "%Y-%m-%dT%H:%M:%S.%fZ")
    # the day is space-padded ("Sep  7"), as the engine prints it
    return "%s %2d %s.%03d %d (UTC + 0:00)" % (when.strftime("%a %b"), when.day, when.strftime("%H:%M:%S"),
                                              when.microsecond // 1000, when.year)


def _short(value: int) -> str:
    """Bugcheck arguments as `.bugcheck` prints them: 64-bit values split, small ones bare."""
    return format_address(value) if value >> 32 else "%x" % value


def _registers_text(regs: Dict[str, int]) -> List[str]:
    if "rip" not in regs:   # ARM64
        names = ["x%d" % i for i in range(29)] + ["fp", "lr", "sp", "pc"]
        cells = ["%3s=%016x" % (n, regs[n]) for n in names]
        return ["  ".join(cells[i:i + 4]) for i in range(0, len(cells), 4)]
    rows = [("rax", "rbx", "rcx"), ("rdx", "rsi", "rdi"), ("rip", "rsp", "rbp"),
            ("r8", "r9", "r10"), ("r11", "r12", "r13"), ("r14", "r15")]
    lines = [" ".join("%3s=%016x" % (n, regs[n]) for n in row) for row in rows]
    lines.append("cs=%04x  ss=%04x  ds=%04x  es=%04x  fs=%04x  gs=%04x             efl=%08x"
                 % (regs["cs"], regs["ss"], regs["ds"], regs["es"], regs["fs"], regs["gs"], regs["rflags"]))
    return lines


def render_info_text(info: DumpInfo, with_stats: bool = False) -> str:
    out: List[str] = []
    out.append("Dump file: %s (%d bytes)" % (os.path.basename(info.path), info.file_size))
    out.append("Dump type: %d (%s), %s, %d-bit" % (info.dump_type, info.dump_type_name, info.machine,
                                                   64 if info.is64 else 32))
    out.append(windows_version_line(info.build, info.major_version, info.processors, info.machine))
    kernel = "Kernel base = %s" % ("0x" + format_address(info.kernel_base) if info.kernel_base is not None else "?")
    out.append("%s PsLoadedModuleList = 0x%s" % (kernel, format_address(info.ps_loaded_module_list)))
    out.append("Debug session time: %s" % windbg_session_time(info.system_time_utc))
    out.append("System Uptime: %s" % format_uptime(info.uptime_seconds))
    out.append("DirectoryTableBase: %s  KdDebuggerDataBlock: %s" % (
        format_address(info.directory_table_base), format_address(info.kd_debugger_data_block)))
    out.append("Memory: %s" % info.memory)
    out.append("")
    out.append("Bugcheck code %08X" % info.bugcheck_code)
    out.append("Arguments " + " ".join(_short(p) for p in info.bugcheck_parameters))
    if info.context is not None:
        out.append("")
        out.append("Context record (DUMP_HEADER64 at 0x348):")
        out.extend(_registers_text(info.context))
    out.append("")
    out.append("Modules: %d (%s)" % (len(info.modules), info.module_source))
    rows = [[format_address(m.base), format_address(m.end), m.debugger_name,
             "%08x" % m.timestamp if m.timestamp is not None else "", m.image_path or m.name]
            for m in sorted(info.modules, key=lambda m: m.base)]
    if rows:
        out.append(tabulate(rows, headers=["start", "end", "module", "timestamp", "image"],
                            tablefmt="plain", disable_numparse=True))
    if info.secondary_data:
        out.append("")
        out.append("Secondary data: %d blobs from bugcheck callbacks, 0x%x bytes (tags: pytriage info --json)"
                   % (len(info.secondary_data), sum(b.size for b in info.secondary_data)))
    for warning in info.warnings:
        out.append("WARNING: %s" % warning)
    if with_stats and info.stats is not None:
        s = info.stats
        out.append("")
        out.append("Target reads: %d calls, %d bytes, %d cache hits, %d failed"
                   % (s.read_calls, s.bytes_read, s.cache_hits, s.failed_reads))
    return "\n".join(out)
