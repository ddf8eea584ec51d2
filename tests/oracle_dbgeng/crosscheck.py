"""Field-by-field comparison of three accounts of one dump: the scenario spec (what was meant), the
debugger engine (what Microsoft's reader sees) and pytriage (what we report).

Every comparison is recorded as a ``Check`` so the tier can print the list of facts it compared and
their count, and a failing test shows every disagreement at once, not just the first.
"""

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from pytriage.commands.info import DumpInfo, windbg_session_time
from pytriage.commands.render import format_uptime, windows_version_line
from pytriage.target.base import Target
from pytriage.target.model import debugger_module_name
from tests.oracle_dbgeng import engine as E

REGISTERS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rip", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12",
             "r13", "r14", "r15", "cs", "ss", "ds", "es", "fs", "gs", "efl"]


def _show(value: object) -> str:
    if isinstance(value, int):
        return "0x%x" % value
    if isinstance(value, bytes):
        return value[:16].hex() + ("..." if len(value) > 16 else "")
    return repr(value)


@dataclass
class Check:
    fact: str
    values: Dict[str, object]          # source ("spec", "dbgeng", "pytriage") -> value

    @property
    def ok(self) -> bool:
        vals = list(self.values.values())
        return all(v == vals[0] for v in vals[1:])

    def describe(self) -> str:
        return "%s: %s" % (self.fact, ", ".join("%s=%s" % (k, _show(v)) for k, v in self.values.items()))


@dataclass
class CrossCheck:
    dump: str
    checks: List[Check] = field(default_factory=list)

    def add(self, fact: str, **values: object) -> None:
        self.checks.append(Check(fact, dict(values)))

    @property
    def mismatches(self) -> List[Check]:
        return [c for c in self.checks if not c.ok]

    def report(self) -> str:
        bad = self.mismatches
        head = "%s: %d facts compared, %d disagree" % (self.dump, len(self.checks), len(bad))
        return "\n".join([head] + ["  MISMATCH " + c.describe() for c in bad])


def header_commands() -> List[str]:
    return ["vertarget", ".bugcheck", "r", "lm"]


def check_header(cc: CrossCheck, outs: List[E.CommandOutput], info: DumpInfo, spec=None,
                 registers: Optional[Dict[str, int]] = None, registers_source: str = "pytriage") -> None:
    """vertarget, .bugcheck, r and lm (the first four outputs) against our info (and the spec).

    ``registers`` replaces our header context as what `r` is compared with (the corpus dump's `r` shows
    the KPRCB context, which the corpus facts record), labelled ``registers_source``.
    """
    vt = E.parse_vertarget(outs[0])
    cc.add("vertarget version line", dbgeng=vt["version_line"],
           pytriage=windows_version_line(info.build, info.major_version, info.processors, info.machine))
    extra = {"spec": spec.kernel.base} if spec is not None else {}
    cc.add("kernel base", dbgeng=vt["kernel_base"], pytriage=info.kernel_base, **extra)
    cc.add("PsLoadedModuleList", dbgeng=vt["ps_loaded_module_list"], pytriage=info.ps_loaded_module_list)
    cc.add("debug session time", dbgeng=vt["session_time"], pytriage=windbg_session_time(info.system_time_utc))
    cc.add("system uptime", dbgeng=vt["uptime"], pytriage=format_uptime(info.uptime_seconds))

    code, args = E.parse_bugcheck(outs[1])
    extra_code = {"spec": spec.bugcheck_code} if spec is not None else {}
    cc.add("bugcheck code", dbgeng=code, pytriage=info.bugcheck_code, **extra_code)
    for i in range(4):
        extra_arg = {"spec": spec.bugcheck_parameters[i]} if spec is not None else {}
        cc.add("bugcheck parameter %d" % (i + 1), dbgeng=args[i], pytriage=info.bugcheck_parameters[i], **extra_arg)

    check_registers(cc, outs[2], registers if registers is not None else dict(info.context or {}),
                    registers_source, spec)

    rows = E.parse_lm(outs[3])
    cc.add("module count", dbgeng=len(rows), pytriage=len(info.modules))
    engine_by_base = {start: (end, name) for start, end, name in rows}
    spec_by_base = {}
    if spec is not None:
        for mod in [spec.kernel] + spec.modules:
            stem = "nt" if mod is spec.kernel else mod.name.rsplit(".", 1)[0]
            spec_by_base[mod.base] = (mod.base + mod.size, stem)
    for module in info.modules:
        values = {"dbgeng": engine_by_base.get(module.base), "pytriage": (module.end, module.debugger_name)}
        if spec is not None:
            values["spec"] = spec_by_base.get(module.base)
        cc.add("lm %s" % module.debugger_name, **values)


def check_registers(cc: CrossCheck, out: E.CommandOutput, ours: Dict[str, int], source: str = "pytriage",
                    spec=None, label: str = "register") -> None:
    regs = E.parse_registers(out)
    ours = dict(ours, efl=ours.get("rflags", ours.get("efl")))
    for name in REGISTERS:
        if source != "pytriage" and ours.get(name) is None:
            continue                     # an external record that does not list this register
        values = {"dbgeng": regs.get(name), source: ours.get(name)}
        if spec is not None and name in spec.context:
            values["spec"] = spec.context[name]
        cc.add("%s %s" % (label, name), **values)


def memory_commands(built) -> List[str]:
    """db at every spec region (virtual, and physical through the builder's page tables) and dq of the
    KiProcessorBlock array and the PsLoadedModuleList head."""
    cmds = []
    for region in built.spec.regions:
        if region.present and region.data:
            n = min(len(region.data), 0x40)
            cmds.append("db %x L%x" % (region.va, n))
            cmds.append("db /p %x L%x" % (built.space.translate(region.va), n))
    cmds.append("dq %x L%x" % (built.kernel_symbols["KiProcessorBlock"], built.spec.processors))
    cmds.append("dq %x L2" % built.kernel_symbols["PsLoadedModuleList"])
    return cmds


def check_memory(cc: CrossCheck, outs: List[E.CommandOutput], built, target: Target) -> None:
    i = 0
    for region in built.spec.regions:
        if not (region.present and region.data):
            continue
        n = min(len(region.data), 0x40)
        start, data = E.parse_db(outs[i])
        cc.add("db %x" % region.va, dbgeng=(start, data), spec=(region.va, region.data[:n]),
               pytriage=(region.va, target.read(region.va, n)))
        pa = built.space.translate(region.va)
        start, data = E.parse_db(outs[i + 1])
        cc.add("db /p %x" % pa, dbgeng=(start, data), spec=(pa, region.data[:n]),
               pytriage=(pa, target.read_physical(pa, n)))
        i += 2
    kpb = built.kernel_symbols["KiProcessorBlock"]
    ours = [target.read_pointer(kpb + 8 * n) for n in range(built.spec.processors)]
    cc.add("dq KiProcessorBlock", dbgeng=E.parse_dq(outs[i]), pytriage=ours)
    head = built.kernel_symbols["PsLoadedModuleList"]
    cc.add("dq PsLoadedModuleList", dbgeng=E.parse_dq(outs[i + 1]),
           pytriage=[target.read_pointer(head), target.read_pointer(head + 8)])


# --- symbols: the scenario's symbol store (real PDBs) as the engine's symbol path ------------------

_DT_BASE_TYPES = {"unsigned char": "UChar", "char": "Char", "unsigned short": "Uint2B", "short": "Int2B",
                  "unsigned long": "Uint4B", "long": "Int4B", "unsigned int": "Uint4B", "int": "Int4B",
                  "unsigned long long": "Uint8B", "long long": "Int8B", "wchar": "Wchar", "void": "Void"}


def dt_type_text(desc: Dict[str, Any], types: Dict[str, Any]) -> str:
    """What `dt -v` prints for a member of this ISF type (the kinds the scenario kernel's ISF uses)."""
    kind = desc["kind"]
    if kind == "base":
        return _DT_BASE_TYPES[desc["name"]]
    if kind == "pointer":
        return "Ptr64 to " + dt_type_text(desc["subtype"], types)
    if kind in ("struct", "union"):
        udt = types[desc["name"]]
        return "%s %s, %d elements, 0x%x bytes" % (kind, desc["name"], len(udt["fields"]), udt["size"])
    if kind == "array":
        return "[%d] %s" % (desc["count"], dt_type_text(desc["subtype"], types))
    raise ValueError("no dt rendering for ISF type kind %r" % kind)


def kernel_isf(built) -> Dict[str, Any]:
    """The ISF table the builder wrote for the kernel (the PDB's types come from the same table)."""
    image = built.modules[0].image
    path = os.path.join(built.symbols_path, "windows", image.pdb_name, "%s-%d.json" % (image.pdb_guid, image.pdb_age))
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _module_name(bm, index: int) -> str:
    return debugger_module_name(bm.spec.name, index == 0)


def _probe_offset(code: bytes) -> int:
    return len(code) // 2


def symbol_commands(built) -> List[str]:
    """`.reload` then x, ln, dt on what the builder put in the PDBs and in memory (sympath = symstore)."""
    cmds = [".reload"]
    for index, bm in enumerate(built.modules):
        cmds.append("x %s!*" % _module_name(bm, index))
    for bm in built.modules:
        for f in bm.spec.functions:
            cmds.append("ln %x" % (bm.spec.base + f.rva + _probe_offset(f.code)))
    for bm in built.modules:
        cmds.append("dt nt!_KLDR_DATA_TABLE_ENTRY %x" % bm.ldr_entry)
    for name in kernel_isf(built)["user_types"]:
        cmds.append("dt -v nt!%s" % name)
    cmds.append("dt nt!_PHYSICAL_MEMORY_DESCRIPTOR poi(nt!MmPhysicalMemoryBlock)")
    for i in range(len(built.spec.runs)):
        cmds.append("dt nt!_PHYSICAL_MEMORY_RUN poi(nt!MmPhysicalMemoryBlock)+0x%x" % (0x10 + 0x10 * i))
    return cmds


def check_symbols(cc: CrossCheck, outs: List[E.CommandOutput], built, info: DumpInfo, target: Target) -> None:
    """x / ln / dt against the builder's symbols and layouts, the spec and pytriage's reads."""
    if outs[0].command != ".reload":
        raise E.EngineError("symbol outputs must start with .reload, not %r" % outs[0].command)
    i = 1
    for index, bm in enumerate(built.modules):
        mod = _module_name(bm, index)
        functions = {f.name for f in bm.spec.functions}
        ours = sorted(("%s!%s" % (mod, name), bm.spec.base + rva, "function" if name in functions else "data")
                      for name, rva in bm.symbols.items())
        theirs = sorted(("%s!%s" % (m, name), addr, kind) for m, addr, name, kind in E.parse_x(outs[i]))
        cc.add("x %s" % mod, dbgeng=theirs, builder=ours)
        i += 1
    for index, bm in enumerate(built.modules):
        mod = _module_name(bm, index)
        for f in bm.spec.functions:
            off = _probe_offset(f.code)
            fact = "ln %s!%s%s" % (mod, f.name, "+0x%x" % off if off else "")
            cc.add(fact, dbgeng=E.parse_ln(outs[i]), spec=(bm.spec.base + f.rva, "%s!%s" % (mod, f.name), off))
            i += 1
    ours_by_base = {m.base: m for m in info.modules}
    for index, bm in enumerate(built.modules):
        members = {name: text for _off, name, text in E.parse_dt_members(outs[i])}
        missing = {"DllBase", "SizeOfImage", "TimeDateStamp", "BaseDllName"} - set(members)
        if missing:
            raise E.EngineError("dt _KLDR_DATA_TABLE_ENTRY lacks %s:\n%s" % (sorted(missing), outs[i].text))
        engine = (E.dt_pointer(members["DllBase"]), E.dt_number(members["SizeOfImage"]),
                  E.dt_number(members["TimeDateStamp"]), E.dt_unicode_string(members["BaseDllName"]))
        mine = ours_by_base.get(bm.spec.base)
        cc.add("dt _KLDR_DATA_TABLE_ENTRY %s" % _module_name(bm, index), dbgeng=engine,
               spec=(bm.spec.base, bm.spec.size, bm.spec.timestamp, bm.spec.name),
               pytriage=None if mine is None else (mine.base, mine.size, mine.timestamp, mine.name))
        i += 1
    types = kernel_isf(built)["user_types"]
    for name, udt in types.items():
        fields = sorted(udt["fields"].items(), key=lambda kv: (kv[1]["offset"], kv[1]["type"].get("bit_position", 0)))
        isf_layout = (udt["kind"], name, len(fields), udt["size"],
                      [(f["offset"], fname, dt_type_text(f["type"], types)) for fname, f in fields])
        cc.add("dt -v %s" % name, dbgeng=E.parse_dt_layout(outs[i]), isf=isf_layout)
        i += 1
    runs = [(r.base_page, r.pages) for r in built.spec.runs]
    descriptor = target.read_pointer(built.kernel_symbols["MmPhysicalMemoryBlock"])
    members = {name: text for _off, name, text in E.parse_dt_members(outs[i])}
    cc.add("dt _PHYSICAL_MEMORY_DESCRIPTOR poi(nt!MmPhysicalMemoryBlock)",
           dbgeng=(E.dt_number(members["NumberOfRuns"]), E.dt_number(members["NumberOfPages"])),
           spec=(len(runs), sum(p for _, p in runs)),
           pytriage=(struct.unpack("<I", target.read(descriptor, 4))[0],
                     struct.unpack("<Q", target.read(descriptor + 8, 8))[0]))
    i += 1
    for n, run in enumerate(runs):
        members = {name: text for _off, name, text in E.parse_dt_members(outs[i])}
        cc.add("dt _PHYSICAL_MEMORY_RUN %d" % n,
               dbgeng=(E.dt_number(members["BasePage"]), E.dt_number(members["PageCount"])), spec=run,
               pytriage=struct.unpack("<QQ", target.read(descriptor + 0x10 + 0x10 * n, 16)))
        i += 1
    if i != len(outs):
        raise E.EngineError("%d symbol outputs left over" % (len(outs) - i))
