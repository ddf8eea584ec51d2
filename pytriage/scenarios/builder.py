"""Scenario spec -> synthetic 64-bit kernel dump (full or bitmap) + symbols (DESIGN 10).

The machine is built the way Windows lays it out, so that our reader, kdmp-parser and dbgeng read it
alike: page tables rooted at DirectoryTableBase, module images (real PE files) mapped at their bases,
nt!PsLoadedModuleList with `_KLDR_DATA_TABLE_ENTRY`s in pool memory, a KDDEBUGGER_DATA64 block,
KUSER_SHARED_DATA, the bugcheck and the crash CONTEXT in the header.

Symbols are written twice, for two kinds of readers: ISF JSON tables (``<stem>.symbols``) and a symbol
store (``<stem>.symstore``) laid out like Microsoft's, with a real PDB per module (``pdb_writer``) and
the module's image file, so that a debugger given the store as its symbol path finds both by the keys
it reads from the dump (CodeView GUID/age, TimeDateStamp/SizeOfImage).
"""

import dataclasses
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from pytriage.dump import structs as S
from pytriage.errors import SpecError
from pytriage.scenarios import isf, kernel_state, pdb_writer, stack
from pytriage.scenarios import pool as pool_layout
from pytriage.scenarios.memory import PAGE, AddressSpace, PhysicalImage
from pytriage.scenarios.nbl import NblBuild, Ref, planned_layout
from pytriage.scenarios.pe_image import DEFAULT_UNWIND_INFO, PeFunction, PeImage, PeSection, build_pe_image, guid_bytes
from pytriage.scenarios.spec import ModuleSpec, ScenarioSpec, modules_by_name
from pytriage.scenarios.stack import StackPlan
from pytriage.scenarios.writer import write_bitmap, write_full

KUSER_SHARED_DATA = 0xFFFFF78000000000
# Kernel .data layout (offsets inside the kernel's .data section).
K_PS_LOADED_MODULE_LIST = 0x000
K_PS_ACTIVE_PROCESS_HEAD = 0x010
K_MM_PFN_DATABASE = 0x020
K_KI_PROCESSOR_BLOCK = 0x040        # 8 bytes per processor, up to 64 (ends at 0x240)
K_KI_BUGCHECK_DATA = 0x240          # code + 4 parameters, 5 x 8 bytes
K_MM_PHYSICAL_MEMORY_BLOCK = 0x270  # pointer to the PHYSICAL_MEMORY_DESCRIPTOR at K_PHYSICAL_MEMORY
K_PHYSICAL_MEMORY = 0x800           # PHYSICAL_MEMORY_DESCRIPTOR: 16 + 16 bytes per run
K_KD_DEBUGGER_DATA_BLOCK = 0x400    # KDDEBUGGER_DATA64, 0x380 bytes
K_POOL_VARIABLES = {"PoolBigPageTable": 0x300, "PoolBigPageTableSize": 0x308,    # the spec's "pool" section
                    "PoolTrackTable": 0x310, "PoolTrackTableSize": 0x318}
STACK_SIZE = 0x6000                 # a kernel thread's stack (KERNEL_STACK_SIZE)
MAX_STACK_SIZE = 0x100000           # the crashing thread's, when the spec's frames need more
# KDDEBUGGER_DATA64 fields (offsets checked against the corpus dump's saved copy).
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_STORE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


@dataclass
class BuiltModule:
    spec: ModuleSpec
    image: PeImage
    ldr_entry: int                      # VA of its _KLDR_DATA_TABLE_ENTRY
    symbols: Dict[str, int] = field(default_factory=dict)     # name -> RVA


@dataclass
class BuiltScenario:
    spec: ScenarioSpec
    dump_path: str
    symbols_path: str                   # folder of ISF tables (windows/<pdb>/<GUID>-<age>.json)
    dump_type: str                      # "full" or "bitmap"
    phys: PhysicalImage
    space: AddressSpace
    modules: List[BuiltModule]
    kernel_symbols: Dict[str, int]      # name -> VA
    file_size: int
    symstore_path: str = ""             # symbol store: <pdb>/<GUID><age>/<pdb> and <image>/<%08X%x>/<image>
    stack: Optional[StackPlan] = None    # the crashing thread's frames as laid out (spec "stack")
    context: Dict[str, int] = field(default_factory=dict)   # the crash CONTEXT's registers the spec set or the
    #                                     stack gave (rip, rsp and every register named); others are defaults
    nbl_addresses: Dict[str, int] = field(default_factory=dict)   # the "nbl" section's NBLs and blocks by id

    def expected(self, va: int, size: int) -> Optional[bytes]:
        """What the builder put at ``va`` (None when a page is unmapped or left out of the dump)."""
        out = bytearray()
        while size > 0:
            chunk = min(size, PAGE - (va & (PAGE - 1)))
            pa = self.space.translate(va)
            if pa is None or pa // PAGE in self.phys.absent or not self.phys.in_runs(pa // PAGE):
                return None
            if self.dump_type == "bitmap" and pa // PAGE not in self.phys.pages \
                    and pa // PAGE not in self.phys.zero_present:
                return None
            out += self.phys.read(pa, chunk)
            va += chunk
            size -= chunk
        return bytes(out)


class _Pool:
    """Bump allocator for kernel structures in the scenario's nonpaged-pool range."""

    def __init__(self, space: AddressSpace, base: int) -> None:
        self.space = space
        self.cursor = base

    def reserve(self, size: int, align: int = 16) -> int:
        """Address the next ``alloc`` with this alignment will return (for self-referencing structures)."""
        return (self.cursor + align - 1) // align * align

    def alloc(self, data: bytes, align: int = 16) -> int:
        self.cursor = self.reserve(len(data), align)
        va = self.cursor
        self.space.write(va, data)
        self.cursor += len(data)
        return va


def _build_image(mod: ModuleSpec) -> Tuple[PeImage, int]:
    """The module's PE image and the RVA of its .data section."""
    code = bytearray()
    functions = []
    code_rva = 0x1000
    for f in sorted(mod.functions, key=lambda f: f.rva):
        start = f.rva - code_rva
        if start < len(code):
            raise SpecError("%s: function %s at rva 0x%x overlaps the previous one" % (mod.name, f.name, f.rva))
        code += b"\xcc" * (start - len(code)) + f.code
        functions.append(PeFunction(f.name, f.rva, len(f.code), f.unwind, f.export, f.chain))
    if not code:
        code = bytearray(b"\xc3")
    data_rva = code_rva + (len(code) + PAGE - 1) // PAGE * PAGE
    data_size = max(mod.data_size, PAGE)     # the kernel's .data holds the list heads and KDBG (< 0x800)
    extra = [PeSection(".data", data_rva, bytes(data_size), data_size)]
    try:
        image = build_pe_image(mod.name, mod.base, mod.timestamp, bytes(code), functions, mod.pdb_guid,
                               mod.pdb_age, pdb_name=mod.pdb_name or None, extra_sections=extra,
                               size_of_image=mod.size, code_rva=code_rva)
    except ValueError as exc:
        raise SpecError("module %s: %s" % (mod.name, exc)) from None
    return image, data_rva


def _stack_frames(spec: ScenarioSpec, resolve: Callable[[str, str], int]) -> List[stack.FrameCode]:
    """The spec's frames with the code and unwind data the stack planner needs; frame 0 takes the context's
    general registers (rip and rsp are derived from the stack). ``resolve(text, path)`` gives the value of a
    register written as a reference ("@seed")."""
    frames = []
    for i, f in enumerate(spec.stack):
        registers = dict(f.registers)
        for name, text in f.register_refs.items():
            registers[name] = resolve(text, "%s.registers.%s" % (f.path, name))
        if i == 0:
            for name, value in spec.context.items():
                if name in stack.FRAME_REGISTERS:
                    if name in registers and registers[name] != value:
                        raise SpecError("%s.registers.%s: 0x%x disagrees with context.%s (0x%x)"
                                        % (f.path, name, registers[name], name, value))
                    registers[name] = value
        func = f.function
        chain = []
        parent = func
        while parent is not None and parent.chain is not None:
            parent = next(g for g in f.module.functions if g.name == parent.chain)
            chain.append(parent.unwind if parent.unwind is not None else DEFAULT_UNWIND_INFO)
        frames.append(stack.FrameCode(
            path=f.path, name=f.name, address=f.address, registers=registers,
            code=func.code if func is not None else None,
            code_offset=f.rva - func.rva if func is not None else 0,
            unwind=(func.unwind if func.unwind is not None else DEFAULT_UNWIND_INFO) if func is not None else None,
            error_code=f.error_code, chain=chain, epilog=f.epilog, outside=f.module is None))
    return frames


def _reference_resolver(spec: ScenarioSpec, built: List[BuiltModule]) -> Callable[[str, str], int]:
    """Resolves a reference the way the nbl section does (an NBL or block of the section, a module's symbol).
    The stack is laid out before the section, so the section's addresses come from a layout that only plans
    them (computed on first use: most specs have no such reference)."""
    layouts: List[NblBuild] = []

    def resolve(text: str, path: str) -> int:
        if not layouts:
            layouts.append(planned_layout(spec.nbl, _symbol_lookup(spec, built)))
        return layouts[0].resolve(Ref(text, path))
    return resolve


def _symbol_lookup(spec: ScenarioSpec, built: List[BuiltModule]) -> Callable[[str], Optional[int]]:
    """``module!name`` -> the address of a spec function or data symbol of a built module (None if unknown)."""
    by_name = modules_by_name(spec.kernel, spec.modules)
    built_for = {id(bm.spec): bm for bm in built}

    def symbol(text: str) -> Optional[int]:
        module, _, name = text.partition("!")
        mod = by_name.get(module.lower())
        bm = built_for[id(mod)] if mod is not None else None
        if bm is None or name not in bm.symbols:
            return None
        return bm.spec.base + bm.symbols[name]
    return symbol


def _unicode_string(pool: _Pool, text: str) -> bytes:
    raw = text.encode("utf-16-le")
    buffer = pool.alloc(raw + b"\0\0")
    return struct.pack("<HH4xQ", len(raw), len(raw) + 2, buffer)


def _context_bytes(regs: Dict[str, int]) -> bytes:
    ctx = bytearray(S.CONTEXT_AMD64_SIZE)
    values = {"context_flags": 0x10001F, "mxcsr": 0x1F80, "cs": 0x10, "ds": 0x2B, "es": 0x2B, "fs": 0x53,
              "gs": 0x2B, "ss": 0x18, "rflags": 0x40286}
    values.update(regs)
    unknown = set(values) - set(S.CONTEXT_AMD64.offsets)
    if unknown:
        raise SpecError("context: unknown register(s) %s" % ", ".join(sorted(unknown)))
    ctx[:] = S.CONTEXT_AMD64.pack(values)
    struct.pack_into("<I", ctx, 0x100 + 0x18, values["mxcsr"])     # FltSave.MxCsr
    struct.pack_into("<I", ctx, 0x100 + 0x1C, 0xFFFF)              # FltSave.MxCsr_Mask
    struct.pack_into("<H", ctx, 0x100, 0x27F)                      # FltSave.ControlWord
    return bytes(ctx)


def build_scenario(spec: ScenarioSpec, out_dir: str, dump_type: str = "bitmap") -> BuiltScenario:
    if dump_type not in ("full", "bitmap"):
        raise SpecError("dump type must be 'full' or 'bitmap', not %r" % dump_type)
    if not 1 <= spec.processors <= 64:
        raise SpecError("os.processors: 1..64 supported, got %d" % spec.processors)
    phys = PhysicalImage([(r.base_page, r.pages) for r in spec.runs])
    space = AddressSpace(phys)
    for lp in spec.large_pages:
        space.map_large(lp.va, lp.pa, lp.size)

    # Module images, mapped page by page at their bases.
    built: List[BuiltModule] = []
    data_rvas = []
    for mod in [spec.kernel] + spec.modules:
        image, data_rva = _build_image(mod)
        for offset in range(0, image.size_of_image, PAGE):
            space.map_page(mod.base + offset, phys.alloc() * PAGE, executable=True)
            phys.write(space.translate(mod.base + offset), image.data[offset:offset + PAGE])  # type: ignore[arg-type]
        symbols = {f.name: f.rva for f in mod.functions}
        symbols.update(mod.data_symbols)
        built.append(BuiltModule(mod, image, 0, symbols))
        data_rvas.append(data_rva)

    kernel = built[0]
    kdata = spec.kernel.base + data_rvas[0]
    ksyms = {"PsLoadedModuleList": kdata + K_PS_LOADED_MODULE_LIST,
             "PsActiveProcessHead": kdata + K_PS_ACTIVE_PROCESS_HEAD,
             "MmPfnDatabase": kdata + K_MM_PFN_DATABASE,
             "KiProcessorBlock": kdata + K_KI_PROCESSOR_BLOCK,
             "KdDebuggerDataBlock": kdata + K_KD_DEBUGGER_DATA_BLOCK}

    # nt!PsLoadedModuleList -> _KLDR_DATA_TABLE_ENTRY chain in pool.
    pool = _Pool(space, spec.pool_base)
    head = ksyms["PsLoadedModuleList"]
    entries = []
    for bm in built:
        entry = bytearray(0xA0)
        entry_point = bm.spec.base + (bm.spec.functions[0].rva if bm.spec.functions else 0x1000)
        struct.pack_into("<QQI", entry, 0x30, bm.spec.base, entry_point, bm.spec.size)
        entry[0x48:0x58] = _unicode_string(pool, bm.spec.path)
        entry[0x58:0x68] = _unicode_string(pool, bm.spec.name)
        struct.pack_into("<IH", entry, 0x68, 0x49104000, 1)
        struct.pack_into("<I", entry, 0x78, bm.image.checksum)
        struct.pack_into("<I", entry, 0x9C, bm.spec.timestamp)
        bm.ldr_entry = pool.alloc(bytes(entry))
        entries.append(bm.ldr_entry)
    chain = [head] + entries
    for i, node in enumerate(chain):
        flink = chain[(i + 1) % len(chain)]
        blink = chain[i - 1]
        space.write(node, struct.pack("<QQ", flink, blink))
    active = ksyms["PsActiveProcessHead"]
    space.write(ksyms["MmPfnDatabase"], struct.pack("<Q", spec.pfn_database))

    # Kernel variables, processors and KDDEBUGGER_DATA64 (unencoded): what debuggers look for first.
    for name, offset, raw in kernel_state.kernel_variables(spec.build):
        ksyms[name] = kdata + offset
        space.write(ksyms[name], raw)
    bugcheck_data = ksyms["KiBugcheckData"] = kdata + K_KI_BUGCHECK_DATA
    space.write(bugcheck_data, struct.pack("<5Q", spec.bugcheck_code, *spec.bugcheck_parameters))
    descriptor = kdata + K_PHYSICAL_MEMORY
    runs = [(r.base_page, r.pages) for r in spec.runs]
    space.write(descriptor, struct.pack("<IxxxxQ", len(runs), sum(p for _, p in runs))
                + b"".join(struct.pack("<QQ", b, p) for b, p in runs))
    ksyms["MmPhysicalMemoryBlock"] = kdata + K_MM_PHYSICAL_MEMORY_BLOCK
    space.write(ksyms["MmPhysicalMemoryBlock"], struct.pack("<Q", descriptor))

    crash_regs = dict(spec.context)
    frames = _stack_frames(spec, _reference_resolver(spec, built))
    plan = None
    if frames:
        probe = 1 << 40                                  # a dry run tells how deep the frames go
        depth = probe - stack.plan_stack(frames, probe).lowest
        crash_stack_size = max(STACK_SIZE, (depth + 0x2000) // PAGE * PAGE)
        if crash_stack_size > MAX_STACK_SIZE:
            raise SpecError("stack: the frames need 0x%x bytes of stack, more than 0x%x" % (depth, MAX_STACK_SIZE))
    else:
        crash_stack_size = STACK_SIZE
    crash_regs.setdefault("rip", spec.kernel.base + (spec.kernel.functions[0].rva if spec.kernel.functions
                                                     else 0x1000))
    contexts, stack_tops = [], []
    for n in range(spec.processors):
        size = crash_stack_size if n == 0 else STACK_SIZE
        stack_top = pool.reserve(size, PAGE) + size
        pool.alloc(bytes(size), PAGE)                    # a mapped kernel stack per processor
        if n == 0 and frames:
            plan = stack.plan_stack(frames, stack_top)
            for va, value in sorted(plan.writes.items()):
                space.write(va, struct.pack("<Q", value))
            for va, raw in sorted(stack.trap_frame_writes(plan).items()):
                space.write(va, raw)
            for name in ("rip", "rsp"):
                if name in spec.context and spec.context[name] != plan.context[name]:
                    raise SpecError("context.%s: 0x%x disagrees with the stack, whose frame 0 gives 0x%x (leave "
                                    "it out: the builder derives it)" % (name, spec.context[name], plan.context[name]))
            crash_regs.update(plan.context)
        regs = dict(crash_regs) if n == 0 else {"rip": crash_regs["rip"], "rsp": stack_top - 0x100}
        if n == 0 and not frames and "rsp" in regs and space.translate(regs["rsp"]) is not None:
            stack_top = (regs["rsp"] + 0x6000) & ~(PAGE - 1)
        regs.setdefault("rsp", stack_top - 0x100)
        if n == 0:
            crash_regs = regs
        contexts.append(_context_bytes(regs))
        stack_tops.append(stack_top)
    processors = kernel_state.build_processors(pool.alloc, pool.reserve, spec.processors, contexts,
                                               space.pml4, stack_tops)
    space.write(ksyms["KiProcessorBlock"], b"".join(struct.pack("<Q", p.prcb) for p in processors.processors))
    active_links = processors.system_process + kernel_state.PROCESS_ACTIVE_LINKS
    space.write(active, struct.pack("<QQ", active_links, active_links))
    space.write(active_links, struct.pack("<QQ", active, active))

    kdbg_va = ksyms["KdDebuggerDataBlock"]
    pointers = {name: ksyms[name] for name in kernel_state.KDBG_POINTERS if name in ksyms}
    pointers["KernBase"] = spec.kernel.base
    space.write(kdbg_va, kernel_state.kdbg_block(kdbg_va, pointers))
    for name, va in ksyms.items():
        kernel.symbols[name] = va - spec.kernel.base
    shared = bytearray(PAGE)
    struct.pack_into("<I", shared, 0x260, spec.build)
    struct.pack_into("<II", shared, 0x26C, 10, 0)
    struct.pack_into("<I", shared, 0x264, 0x8664)        # NativeProcessorArchitecture-ish marker
    space.map_page(KUSER_SHARED_DATA, phys.alloc() * PAGE, writable=False, executable=False)
    phys.write(space.translate(KUSER_SHARED_DATA), bytes(shared))  # type: ignore[arg-type]

    pool_spec = spec.pool
    nbl_addresses: Dict[str, int] = {}
    if spec.nbl is not None:                             # NBL blocks are classic pool pages too
        nbl_pages, nbl_addresses = _layout_nbls(spec, space, phys, built, crash_regs["rsp"])
        base = pool_spec if pool_spec is not None else pool_layout.PoolSpec()
        pool_spec = dataclasses.replace(base, pages=list(base.pages) + nbl_pages)
    if pool_spec is not None:
        def set_variable(name: str, raw: bytes) -> None:
            ksyms[name] = kdata + K_POOL_VARIABLES[name]
            kernel.symbols[name] = ksyms[name] - spec.kernel.base
            space.write(ksyms[name], raw)

        pool_layout.write_pool(space, pool.alloc, pool_spec, set_variable)

    # Free-form memory regions from the spec.
    for i, region in enumerate(spec.regions):
        _place_region(space, phys, region, i)

    regs = crash_regs
    context = contexts[0]
    exception = S.EXCEPTION_RECORD64.pack({"ExceptionCode": 0x80000003, "ExceptionFlags": 1,
                                           "ExceptionAddress": regs["rip"],
                                           "ExceptionInformation": (0,) * 15})
    fields = {
        "MajorVersion": spec.major_version, "MinorVersion": spec.build, "DirectoryTableBase": space.pml4,
        "PfnDataBase": spec.pfn_database, "PsLoadedModuleList": head, "PsActiveProcessHead": active,
        "MachineImageType": 0x8664, "NumberProcessors": spec.processors, "BugCheckCode": spec.bugcheck_code,
        "BugCheckParameter1": spec.bugcheck_parameters[0], "BugCheckParameter2": spec.bugcheck_parameters[1],
        "BugCheckParameter3": spec.bugcheck_parameters[2], "BugCheckParameter4": spec.bugcheck_parameters[3],
        "KdDebuggerDataBlock": kdbg_va, "SystemTime": spec.system_time, "SystemUpTime": spec.uptime_100ns,
        "MiniDumpFields": 0, "SecondaryDataState": 0, "ProductType": spec.product_type,
        "SuiteMask": spec.suite_mask, "WriterStatus": 0, "KdSecondaryVersion": 0,
    }
    os.makedirs(out_dir, exist_ok=True)
    stem = _SAFE_NAME.sub("_", spec.name).strip("._") or "scenario"
    dump_path = os.path.join(out_dir, "%s-%s.dmp" % (stem, dump_type))
    if dump_type == "full":
        size = write_full(dump_path, fields, phys, context, exception)
    else:
        size = write_bitmap(dump_path, fields, phys, context, exception)

    symbols_path = os.path.join(out_dir, "%s.symbols" % stem)
    tables: List[Optional[Dict[str, object]]] = []      # per module; None: "symbols": false, no table or PDB
    for index, bm in enumerate(built):
        types = isf.kernel_types() if index == 0 else {}
        tables.append(isf.isf_document(bm.image.pdb_name, bm.image.pdb_guid, bm.image.pdb_age, bm.symbols, types)
                      if bm.spec.symbols else None)
    isf.write_isf_tree(symbols_path, [(bm.image.pdb_name, bm.image.pdb_guid, bm.image.pdb_age, doc)
                                      for bm, doc in zip(built, tables) if doc is not None])
    symstore_path = os.path.join(out_dir, "%s.symstore" % stem)
    write_symbol_store(symstore_path, built, tables)
    return BuiltScenario(spec, dump_path, symbols_path, dump_type, phys, space, built, ksyms, size, symstore_path,
                         plan, dict(crash_regs), nbl_addresses)


def _layout_nbls(spec: ScenarioSpec, space: AddressSpace, phys: PhysicalImage, built: List[BuiltModule],
                 rsp: int) -> Tuple[list, Dict[str, int]]:
    """Place the spec's ``nbl`` section: its pool pages (written with the ``pool`` section's) and the address
    of every NBL and block by id."""
    layout = NblBuild(spec.nbl, space, phys, _symbol_lookup(spec, built), rsp)
    layout.plan()
    return layout.fill(), dict(layout.addresses)


def module_pdb(bm: BuiltModule, isf_table: Optional[Dict[str, object]] = None) -> bytes:
    """The PDB of a built module: its publics (functions flagged as code) and the ISF table's types."""
    publics = [pdb_writer.PdbPublic(name, rva) for name, rva in bm.symbols.items()]
    try:
        return pdb_writer.build_pdb(guid_bytes(bm.image.pdb_guid), bm.image.pdb_age,
                                    pdb_writer.section_headers_from_pe(bm.image.data), publics, isf_table,
                                    signature=bm.image.timestamp, pdb_name=bm.image.pdb_name)
    except ValueError as exc:
        raise SpecError("module %s: cannot write its PDB: %s" % (bm.spec.name, exc)) from None


def write_symbol_store(root: str, modules: List[BuiltModule], isf_tables: List[Optional[Dict[str, object]]]) -> None:
    """``root/<pdb>/<GUID><age>/<pdb>`` (the module's PDB) and ``root/<image>/<%08X%x>/<image>`` (its file).

    A module whose table is None (spec ``"symbols": false``) gets its image file only: a debugger then
    names its addresses by exports or as ``module+0xoffset``, as for a third-party driver shipped
    without symbols.

    The image file is the image as the builder mapped it (its images are "flat": file layout = memory
    layout); in the dump only writable sections differ since, like the kernel's .data the builder fills
    in afterwards. Names come from the validated spec: a module name and a PDB name are plain file names
    (checked again here), so nothing lands outside ``root``.
    """
    for bm, table in zip(modules, isf_tables):
        files = [(bm.spec.name, bm.image.symbol_store_key, bm.image.data)]
        if table is not None:
            files.insert(0, (bm.image.pdb_name, bm.image.pdb_store_key, module_pdb(bm, table)))
        for name, key, data in files:
            if not _STORE_NAME.fullmatch(name):
                raise SpecError("module %s: %r cannot be a symbol store file name" % (bm.spec.name, name))
            folder = os.path.join(root, name, key)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(data)


def _place_region(space: AddressSpace, phys: PhysicalImage, region, index: int) -> None:
    if region.pa is None:
        space.write(region.va, region.data)
        pages = range(region.va & ~(PAGE - 1), region.va + max(len(region.data), 1), PAGE)
    else:
        offset_in_page = region.va & (PAGE - 1)
        pages = range(region.va & ~(PAGE - 1), region.va + max(len(region.data), 1), PAGE)
        for n, page_va in enumerate(pages):
            pa = region.pa + n * PAGE
            existing = space.translate(page_va)
            if existing is None:
                phys.claim(pa // PAGE)
                space.map_page(page_va, pa, executable=False)
            elif existing != pa:
                raise SpecError("memory[%d]: va 0x%x is already mapped elsewhere" % (index, page_va))
        phys.write(region.pa + offset_in_page, region.data)
    if not region.present:
        for page_va in pages:
            pa = space.translate(page_va)
            if pa is not None:
                phys.mark_absent(pa // PAGE)
