"""Field-by-field comparison of three accounts of one dump: the scenario spec (what was meant), the
debugger engine (what Microsoft's reader sees) and pytriage (what we report).

Every comparison is recorded as a ``Check`` so the tier can print the list of facts it compared and
their count, and a failing test shows every disagreement at once, not just the first.
"""

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pytriage.commands import dt as pytriage_dt
from pytriage.commands.info import DumpInfo, windbg_session_time
from pytriage.commands.render import format_uptime, windows_version_line
from pytriage.errors import PytriageError
from pytriage.scenarios.spec import debugger_name, shown_function
from pytriage.scenarios.stack import NONVOLATILE, VOLATILE
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.symbolizer import Symbolizer
from pytriage.symbols.sympath import resolve_symbol_path
from pytriage.symbols.types import StructLayout, TypeRef, windbg_base_name
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
    # Same value, different spelling: (dt command, member) -> (engine text, pytriage text). Not a failure:
    # pytriage's dt format is owned elsewhere; the tier reports these so the owner sees every one.

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
                 registers: Optional[Dict[str, int]] = None, registers_source: str = "pytriage",
                 spec_context: Optional[Dict[str, int]] = None) -> None:
    """vertarget, .bugcheck, r and lm (the first four outputs) against our info (and the spec).

    ``registers`` replaces our header context as what `r` is compared with (the corpus dump's `r` shows
    the KPRCB context, which the corpus facts record), labelled ``registers_source``. ``spec_context``
    is the crash context the spec asked for (``BuiltScenario.context``: its ``context`` and, with a
    ``stack``, rip/rsp/registers of frame 0); default ``spec.context``.
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
                    registers_source, spec_context if spec_context is not None else
                    (spec.context if spec is not None else None))

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
                    spec_context: Optional[Dict[str, int]] = None, label: str = "register") -> None:
    regs = E.parse_registers(out)
    ours = dict(ours, efl=ours.get("rflags", ours.get("efl")))
    for name in REGISTERS:
        if source != "pytriage" and ours.get(name) is None:
            continue                     # an external record that does not list this register
        values = {"dbgeng": regs.get(name), source: ours.get(name)}
        if spec_context is not None and name in spec_context:
            values["spec"] = spec_context[name]
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
    if kind == "bitfield":
        return "Bitfield Pos %d, %d Bit%s" % (desc["bit_position"], desc["bit_length"],
                                              "" if desc["bit_length"] == 1 else "s")
    if kind in ("struct", "union") and desc["name"] not in types:      # declared, never defined (_EPROCESS)
        return "%s %s, 0 elements, 0x0 bytes" % (kind, desc["name"])
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


def pytriage_symbolizer(target: Target, sympath: str) -> Symbolizer:
    """pytriage's symbolizer with ``sympath`` (a symbol store folder) as its only symbol path, as
    ``pytriage sym/dt --symbols <sympath>`` opens it."""
    return Symbolizer(target, store=SymbolStore(resolve_symbol_path(sympath)), isf_dirs=[])


def pytriage_ln(symbolizer: Symbolizer, address: int) -> Tuple[int, str, int]:
    """pytriage's answer in `ln`'s shape: (symbol start, "module!symbol", displacement)."""
    res = symbolizer.resolve(address)
    if res.module is None or res.symbol is None:
        return (address - res.displacement, str(res), res.displacement)
    return (address - res.displacement, "%s!%s" % (res.module.debugger_name, res.symbol), res.displacement)


def pytriage_x(symbolizer: Symbolizer, module) -> object:
    """Every symbol pytriage knows for ``module`` as `x` lists them: (module!name, address, kind).

    The names come from the module's symbol source, each address from ``Symbolizer.address_of`` (the
    public API of `pytriage sym NAME`), the kind from the PDB public's function flag.
    """
    info = symbolizer.module_symbols(module)
    if info.kind in ("none", "export"):        # a module without its PDB: its exports (functions) or nothing
        return sorted(("%s!%s" % (module.debugger_name, name), address, "function")
                      for name, address in symbolizer.shown_symbols(module))
    if info.kind != "pdb":
        return "pytriage uses %s symbols for %s" % (info.kind, module.debugger_name)
    functions = {name for name, _seg, _off, flags in info.source.publics() if flags & 2}
    rows = set()
    for name, _rva in info.source.symbols():
        qualified = "%s!%s" % (module.debugger_name, name)
        rows.add((qualified, symbolizer.address_of(qualified), "function" if name in functions else "data"))
    return sorted(rows)


def _ln_targets(built) -> List[Tuple[int, Optional[Tuple[int, str, int]], str]]:
    """Addresses `ln` is asked about, with the spec's answer: a probe inside every spec function, then
    every stack frame's rip that is not one of them; each with how the spec names it. In a module without
    symbols (``"symbols": false``) the answer is the export that names the address, or None (named
    ``module+0xrva``): the engine prints nothing."""
    targets: Dict[int, Tuple[Optional[Tuple[int, str, int]], str]] = {}

    def expect(mod, address: int) -> Tuple[Optional[Tuple[int, str, int]], str]:
        function = shown_function(mod, address - mod.base)
        stem = debugger_name(mod, mod is built.spec.kernel)
        if function is None:
            return None, "%s+0x%x" % (stem, address - mod.base)
        start, name = mod.base + function.rva, "%s!%s" % (stem, function.name)
        return (start, name, address - start), "%s%s" % (name, "+0x%x" % (address - start) if address > start else "")

    for bm in built.modules:
        for f in bm.spec.functions:
            address = bm.spec.base + f.rva + _probe_offset(f.code)
            targets.setdefault(address, expect(bm.spec, address))
    for frame in built.spec.stack:
        if frame.function is not None:
            targets.setdefault(frame.address, expect(frame.module, frame.address))
    return [(address, expected, label) for address, (expected, label) in targets.items()]


def symbol_commands(built) -> List[str]:
    """`.reload` then x, ln, dt on what the builder put in the PDBs and in memory (sympath = symstore)."""
    cmds = [".reload"]
    for index, bm in enumerate(built.modules):
        cmds.append("x %s!*" % _module_name(bm, index))
    for address, _expected, _label in _ln_targets(built):
        cmds.append("ln %x" % address)
    for bm in built.modules:
        cmds.append("dt nt!_KLDR_DATA_TABLE_ENTRY %x" % bm.ldr_entry)
    for name in kernel_isf(built)["user_types"]:
        cmds.append("dt -v nt!%s" % name)
    for name in kernel_isf(built)["user_types"]:
        cmds.append("dt nt!%s" % name)
    entry = built.modules[-1].ldr_entry
    cmds.append("dt nt!_LIST_ENTRY %x" % entry)                     # its InLoadOrderLinks
    cmds.append("dt nt!_UNICODE_STRING %x" % (entry + 0x58))        # its BaseDllName
    cmds.append("dt nt!_PHYSICAL_MEMORY_DESCRIPTOR poi(nt!MmPhysicalMemoryBlock)")
    for i in range(len(built.spec.runs)):
        cmds.append("dt nt!_PHYSICAL_MEMORY_RUN poi(nt!MmPhysicalMemoryBlock)+0x%x" % (0x10 + 0x10 * i))
    return cmds


# --- dt: the engine's text against pytriage's dt (pytriage/commands/dt.py) ------------------------------

def check_dt_lines(cc: CrossCheck, fact: str, out: E.CommandOutput, ours: List[str]) -> None:
    """Engine `dt` text against what `pytriage dt` prints, line for line and character for character:
    the summary line (``[ Flink - Blink ]``, ``"text"``), every member's offset, name padding and value
    spelling. The engine's lines are parsed strictly first, so an engine output we do not understand
    fails as such rather than as a mismatch."""
    E.parse_dt_members(out)
    cc.add(fact, dbgeng=[line.rstrip() for line in out.lines],
           pytriage=[line.rstrip() for line in ours if line.strip()])


def pytriage_dt_v(symbolizer: Symbolizer, module: str, layout: StructLayout) -> Tuple[object, ...]:
    """pytriage's layout of a type in `dt -v`'s shape (the test renders it; pytriage's dt has no -v)."""
    def render(ref: Optional[TypeRef]) -> str:
        if ref is None:
            return "Void"
        if ref.kind == "base":
            return windbg_base_name(ref.name)
        if ref.kind == "pointer":
            return "Ptr64 to " + render(ref.target)
        if ref.kind == "array":
            return "[%d] %s" % (ref.count, render(ref.target))
        if ref.kind in ("struct", "union", "class"):
            try:
                nested = symbolizer.type_layout("%s!%s" % (module, ref.name))[0]
            except PytriageError:                           # declared, never defined (_EPROCESS)
                return "%s %s, 0 elements, 0x0 bytes" % (ref.kind, ref.name)
            count = len(nested.fields) if isinstance(nested, StructLayout) else 0
            return "%s %s, %d elements, 0x%x bytes" % (ref.kind, ref.name, count, nested.size)
        return "%s %s" % (ref.kind, ref.name)
    def member(f) -> str:
        if f.is_bitfield:
            return "Bitfield Pos %d, %d Bit%s" % (f.bit_position, f.bit_length, "" if f.bit_length == 1 else "s")
        return render(f.type)
    return (layout.kind, layout.name, len(layout.fields), layout.size,
            [(f.offset, f.name, member(f)) for f in layout.fields])


def _pytriage_layout(symbolizer: Symbolizer, type_name: str) -> Optional[StructLayout]:
    try:
        layout, _where = symbolizer.type_layout(type_name)
    except PytriageError:
        return None
    return layout if isinstance(layout, StructLayout) else None


def check_symbols(cc: CrossCheck, outs: List[E.CommandOutput], built, info: DumpInfo, target: Target,
                  symbolizer: Symbolizer) -> None:
    """x / ln / dt against the builder's symbols and layouts, the spec, pytriage's reads and pytriage's
    symbolizer and dt (``symbolizer`` reads the same symbol store as the engine)."""
    if outs[0].command != ".reload":
        raise E.EngineError("symbol outputs must start with .reload, not %r" % outs[0].command)
    i = 1
    for index, bm in enumerate(built.modules):
        mod = _module_name(bm, index)
        functions = {f.name for f in bm.spec.functions}
        ours = sorted(("%s!%s" % (mod, name), bm.spec.base + rva, "function" if name in functions else "data")
                      for name, rva in bm.symbols.items())
        out = outs[i]
        module = target.module_by_name(mod)
        if not bm.spec.symbols:       # no PDB: the engine says so first, then lists the exports (if any)
            exported = {f.name for f in bm.spec.functions if f.export}
            ours = [row for row in ours if row[0].split("!", 1)[1] in exported]
            error = out.lines[0] if out.lines and out.lines[0].startswith("*** ERROR: ") else ""
            engine_kind = "export" if "Defaulted to export symbols" in error else \
                "none" if "symbols could not be loaded" in error else error
            cc.add("x %s: symbol source" % mod, dbgeng=engine_kind, builder="export" if ours else "none",
                   pytriage=symbolizer.module_symbols(module).kind if module is not None else None)
            out = E.CommandOutput(out.command, "\n".join(out.lines[1:] if error else out.lines), out.hr)
        theirs = sorted(("%s!%s" % (m, name), addr, kind) for m, addr, name, kind in E.parse_x(out))
        cc.add("x %s" % mod, dbgeng=theirs, builder=ours,
               pytriage=pytriage_x(symbolizer, module) if module is not None else None)
        i += 1
    for address, expected, label in _ln_targets(built):
        if expected is None:          # a module without symbols or exports: the engine names nothing
            cc.add("ln " + label, dbgeng=E.without_image_noise(outs[i].lines), spec=[],
                   pytriage=[] if symbolizer.resolve(address).symbol is None else [symbolizer.format(address)])
        else:
            cc.add("ln " + label, dbgeng=E.parse_ln(outs[i]), spec=expected, pytriage=pytriage_ln(symbolizer, address))
        i += 1
    ours_by_base = {m.base: m for m in info.modules}
    kldr = _pytriage_layout(symbolizer, "nt!_KLDR_DATA_TABLE_ENTRY")
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
        check_dt_lines(cc, "dt values: _KLDR_DATA_TABLE_ENTRY %s" % _module_name(bm, index), outs[i],
                       _value_lines(kldr, target, bm.ldr_entry, symbolizer))
        i += 1
    types = kernel_isf(built)["user_types"]
    for name, udt in types.items():
        fields = sorted(udt["fields"].items(), key=lambda kv: (kv[1]["offset"], kv[1]["type"].get("bit_position", 0)))
        isf_layout = (udt["kind"], name, len(fields), udt["size"],
                      [(f["offset"], fname, dt_type_text(f["type"], types)) for fname, f in fields])
        layout = _pytriage_layout(symbolizer, "nt!" + name)
        cc.add("dt -v %s" % name, dbgeng=E.parse_dt_layout(outs[i]), isf=isf_layout,
               pytriage=pytriage_dt_v(symbolizer, "nt", layout) if layout is not None else None)
        i += 1
    for name in types:
        layout = _pytriage_layout(symbolizer, "nt!" + name)
        check_dt_lines(cc, "dt layout: %s" % name, outs[i],
                       pytriage_dt.layout_lines(None, layout) if layout is not None else [""])
        i += 1
    entry = built.modules[-1].ldr_entry
    mod = _module_name(built.modules[-1], len(built.modules) - 1)
    for type_name, address in (("_LIST_ENTRY", entry), ("_UNICODE_STRING", entry + 0x58)):
        check_dt_lines(cc, "dt values: %s %s" % (type_name, mod), outs[i],
                       _value_lines(_pytriage_layout(symbolizer, "nt!" + type_name), target, address, symbolizer))
        i += 1
    runs = [(r.base_page, r.pages) for r in built.spec.runs]
    descriptor = target.read_pointer(built.kernel_symbols["MmPhysicalMemoryBlock"])
    members = {name: text for _off, name, text in E.parse_dt_members(outs[i])}
    cc.add("dt _PHYSICAL_MEMORY_DESCRIPTOR poi(nt!MmPhysicalMemoryBlock)",
           dbgeng=(E.dt_number(members["NumberOfRuns"]), E.dt_number(members["NumberOfPages"])),
           spec=(len(runs), sum(p for _, p in runs)),
           pytriage=(struct.unpack("<I", target.read(descriptor, 4))[0],
                     struct.unpack("<Q", target.read(descriptor + 8, 8))[0]))
    check_dt_lines(cc, "dt values: _PHYSICAL_MEMORY_DESCRIPTOR", outs[i],
                   _value_lines(_pytriage_layout(symbolizer, "nt!_PHYSICAL_MEMORY_DESCRIPTOR"), target, descriptor,
                                symbolizer))
    i += 1
    run_layout = _pytriage_layout(symbolizer, "nt!_PHYSICAL_MEMORY_RUN")
    for n, run in enumerate(runs):
        members = {name: text for _off, name, text in E.parse_dt_members(outs[i])}
        cc.add("dt _PHYSICAL_MEMORY_RUN %d" % n,
               dbgeng=(E.dt_number(members["BasePage"]), E.dt_number(members["PageCount"])), spec=run,
               pytriage=struct.unpack("<QQ", target.read(descriptor + 0x10 + 0x10 * n, 16)))
        check_dt_lines(cc, "dt values: _PHYSICAL_MEMORY_RUN %d" % n, outs[i],
                       _value_lines(run_layout, target, descriptor + 0x10 + 0x10 * n, symbolizer))
        i += 1
    if i != len(outs):
        raise E.EngineError("%d symbol outputs left over" % (len(outs) - i))


def _value_lines(layout: Optional[StructLayout], target: Target, address: int, symbolizer: Symbolizer) -> List[str]:
    """What `pytriage dt nt!<type> <address>` prints, or nothing without the type."""
    if layout is None:
        return [""]
    return pytriage_dt.value_lines(None, layout, target, address, symbolizer)


# --- the crashing thread's stack (spec "stack"): k, .frame /r, .trap ------------------------------------

def stack_commands(built) -> List[str]:
    """`kvn` from the dump's context, `.frame /r` for every frame, `.trap` + `kn` for each trap frame the
    builder laid out, and `.cxr` to go back to the dump's context."""
    if built.stack is None:
        return []
    cmds = ["kvn"] + [".frame /r %x" % f.number for f in built.stack.frames]
    for frame in built.stack.frames:
        if frame.trap_frame is not None:
            cmds += [".trap %x" % frame.trap_frame, "kn"]
    return cmds + [".cxr"]


def _k_row(frame) -> Tuple[int, int, str]:
    return (frame.child_sp, frame.return_address, frame.call_site if isinstance(frame, E.StackFrame) else frame.name)


def pytriage_k_row(frame) -> Tuple[int, Optional[int], str, Optional[int]]:
    """pytriage's frame (``pytriage stack``) in `kvn`'s columns: Child-SP, RetAddr, call site, TrapFrame."""
    return (frame.child_sp, frame.return_address, frame.call_site, frame.trap_frame)


def check_stack(cc: CrossCheck, outs: List[E.CommandOutput], built, walk=None) -> None:
    """The engine's walk against the builder's plan: each frame's Child-SP, RetAddr, call site and trap
    frame; the nonvolatile registers the engine restores for each frame (the values the prologs pushed);
    the registers of each trap frame and the walk from it. ``walk`` is pytriage's own walk from the
    dump's context (``Target.stack``, what `pytriage stack` prints): frame by frame against the engine's
    `kvn` and the plan, and its restored nonvolatile registers against the engine's `.frame /r`."""
    plan = built.stack
    if plan is None:
        if outs:
            raise E.EngineError("stack outputs without a stack in the spec")
        return
    walked = E.parse_k(outs[0])
    cc.add("k frame count", dbgeng=len(walked), builder=len(plan.frames))
    if walk is not None:
        cc.add("k = pytriage stack: frame count", dbgeng=len(walked), pytriage=len(walk.frames),
               builder=len(plan.frames))
        for n in range(max(len(walked), len(walk.frames))):
            theirs = walked[n] if n < len(walked) else None
            mine = walk.frames[n] if n < len(walk.frames) else None
            planned = plan.frames[n] if n < len(plan.frames) else None
            label = planned.name if planned is not None else (mine or theirs).call_site  # type: ignore[union-attr]
            cc.add("k = pytriage stack: %02x %s" % (n, label),
                   dbgeng=None if theirs is None else _k_row(theirs) + (theirs.trap_frame,),
                   pytriage=None if mine is None else pytriage_k_row(mine),
                   builder=None if planned is None else _k_row(planned) + (planned.trap_frame,))
    for n in range(max(len(walked), len(plan.frames))):
        theirs = walked[n] if n < len(walked) else None
        mine = plan.frames[n] if n < len(plan.frames) else None
        label = mine.name if mine is not None else theirs.call_site      # type: ignore[union-attr]
        cc.add("k: %02x %s" % (n, label),
               dbgeng=None if theirs is None else _k_row(theirs) + (theirs.trap_frame,),
               builder=None if mine is None else _k_row(mine) + (mine.trap_frame,))
    i = 1
    for frame in plan.frames:
        line, regs = E.parse_frame_registers(outs[i])
        engine = (line.number, regs.get("rip"), regs.get("rsp"), {r: regs.get(r) for r in NONVOLATILE})
        cc.add(".frame /r: %02x" % frame.number, dbgeng=engine,
               builder=(frame.number, frame.rip, frame.child_sp, {r: frame.registers[r] for r in NONVOLATILE}))
        if walk is not None:
            mine = walk.frames[frame.number] if frame.number < len(walk.frames) else None
            cc.add(".frame /r = pytriage registers: %02x" % frame.number, dbgeng=engine,
                   pytriage=None if mine is None else (mine.number, mine.instruction_pointer, mine.child_sp,
                                                       {r: mine.registers.get(r) for r in NONVOLATILE}))
        i += 1
    for frame in plan.frames:
        if frame.trap_frame is None:
            continue
        interrupted = plan.frames[frame.number + 1]
        regs = E.parse_registers(outs[i], needed=E.GPRS)
        cc.add(".trap %x" % frame.trap_frame,
               dbgeng=(regs.get("rip"), regs.get("rsp"), {r: regs.get(r) for r in VOLATILE}),
               builder=(interrupted.rip, interrupted.child_sp, {r: interrupted.registers[r] for r in VOLATILE}))
        cc.add("k after .trap %x" % frame.trap_frame, dbgeng=[_k_row(f) for f in E.parse_k(outs[i + 1])],
               builder=[_k_row(f) for f in plan.frames[frame.number + 1:]])
        i += 2
    if outs[i].command != ".cxr" or i + 1 != len(outs):
        raise E.EngineError("stack outputs not understood from %r" % outs[i].command)


# --- the real corpus dump with the corpus symbol store (amdppm.pdb) ---------------------------------------

CORPUS_AMDPPM_FRAMES = range(8, 14)     # facts' stack frames in amdppm: the engine's walk from .cxr (README)


def rizin_to_windbg(symbol: str) -> str:
    """``pdb.amdppm.WriteIoMemRawEx+112`` (rizin, decimal) -> ``amdppm!WriteIoMemRawEx+0x70``."""
    _pdb, module, rest = symbol.split(".", 2)
    name, _, offset = rest.partition("+")
    return "%s!%s%s" % (module, name, "+0x%x" % int(offset) if offset and int(offset) else "")


def corpus_symbol_commands(facts: Dict[str, Any]) -> List[str]:
    """`kn` after `.cxr` (the caller runs it first), `x amdppm!*` and `ln` at every amdppm frame."""
    frames = facts["stack"]["frames"]
    return ["kn", "x amdppm!*"] + ["ln %x" % int(frames[n]["address"], 16) for n in CORPUS_AMDPPM_FRAMES]


def check_corpus_symbols(cc: CrossCheck, outs: List[E.CommandOutput], facts: Dict[str, Any], target: Target,
                         symbolizer: Symbolizer, walk=None) -> None:
    """The engine's walk from the 0x7E CONTEXT, its `x` and `ln` with amdppm.pdb, against the corpus facts
    (rizin's walk), pytriage's walk from the same CONTEXT (``walk``) and pytriage's symbolizer reading the
    same store."""
    frames = facts["stack"]["frames"]
    walked = E.parse_k(outs[0])
    for k, n in enumerate(CORPUS_AMDPPM_FRAMES):
        theirs = walked[k] if k < len(walked) else None
        expected = rizin_to_windbg(frames[n]["rizin_symbol"])
        extra = {}
        if walk is not None:
            mine = walk.frames[k] if k < len(walk.frames) else None
            extra["pytriage"] = None if mine is None else pytriage_k_row(mine)[:3]
        cc.add("k: %02x %s" % (k, expected), dbgeng=None if theirs is None else _k_row(theirs),
               corpus_facts=(int(frames[n]["sp"], 16), int(frames[n + 1]["address"], 16), expected), **extra)
    rows = E.parse_x(outs[1])
    module = target.module_by_name("amdppm")
    # Every name the engine lists, undecorated as dbghelp shows it (``_imp_X`` for the PDB's ``__imp_X``,
    # ``FxStubInitTypes`` for ``?FxStubInitTypes@@YAJXZ``, no string literals), at the same address.
    ours = sorted(("amdppm!" + name, address) for name, address in symbolizer.shown_symbols(module)) \
        if module else []
    cc.add("x amdppm: all %d names" % len(rows), dbgeng=sorted((m + "!" + name, addr) for m, addr, name, _k in rows),
           pytriage=ours)
    for k, n in enumerate(CORPUS_AMDPPM_FRAMES):
        address = int(frames[n]["address"], 16)
        expected = rizin_to_windbg(frames[n]["rizin_symbol"])
        name, _, off = expected.partition("+0x")
        start = address - (int(off, 16) if off else 0)
        cc.add("ln %s" % expected, dbgeng=E.parse_ln(outs[2 + k]), corpus_facts=(start, name, address - start),
               pytriage=pytriage_ln(symbolizer, address))
