"""The scenario spec: JSON in, validated dataclasses out (format documented in docs/scenarios.md).

Numbers may be JSON integers or strings ("0x1000", "4096", sizes like "2M"/"1G"); byte contents are hex
strings (spaces allowed) or fills. Every error names the JSON path of the bad value, so a person writing
a spec by hand sees at once what to fix.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pytriage.errors import SpecError

PAGE = 0x1000
_SIZE_RE = re.compile(r"^(\d+)\s*([KMG])$", re.IGNORECASE)
_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
KERNEL_MIN, KERNEL_MAX = 0xFFFF800000000000, 0xFFFFFFFFFFFFFFFF


def parse_int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise SpecError("%s: expected a number, got %r" % (path, value))
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().replace("`", "")
        m = _SIZE_RE.match(text)
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
        try:
            return int(text, 0)
        except ValueError:
            pass
    raise SpecError("%s: expected a number (int, \"0x..\" or a size like \"2M\"), got %r" % (path, value))


def parse_hex_bytes(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise SpecError("%s: expected a hex string" % path)
    text = re.sub(r"\s+", "", value)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SpecError("%s: not valid hex bytes" % path) from None


def parse_data(obj: Dict[str, Any], path: str, default_size: int = 0) -> bytes:
    """Bytes of a region from "hex", "ascii", "utf16" or "fill"+"size" (a repeated hex pattern)."""
    if "hex" in obj:
        return parse_hex_bytes(obj["hex"], path + ".hex")
    if "ascii" in obj:
        return str(obj["ascii"]).encode("latin-1", "replace")
    if "utf16" in obj:
        return str(obj["utf16"]).encode("utf-16-le")
    size = parse_int(obj.get("size", default_size), path + ".size")
    if size < 0 or size > (1 << 34):
        raise SpecError("%s.size: %d is out of range" % (path, size))
    pattern = parse_hex_bytes(obj.get("fill", "00"), path + ".fill") or b"\x00"
    if pattern == b"\x00":
        return bytes(size)                  # one allocation; the writer stores all-zero pages as zero
    whole, rest = divmod(size, len(pattern))
    return pattern * whole + pattern[:rest]


def _obj(value: Any, path: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError("%s: expected an object" % path)
    return value


def _list(value: Any, path: str) -> List[Any]:
    if not isinstance(value, list):
        raise SpecError("%s: expected a list" % path)
    return value


require_object = _obj      # for the spec's sections parsed in their own modules (scenarios/pool.py)
require_list = _list


def _aligned(value: int, align: int, path: str) -> int:
    if value % align:
        raise SpecError("%s: 0x%x is not aligned to 0x%x" % (path, value, align))
    return value


def _kernel_va(value: int, path: str) -> int:
    if not KERNEL_MIN <= value <= KERNEL_MAX:
        raise SpecError("%s: 0x%x is not a canonical kernel address" % (path, value))
    return value


@dataclass
class RunSpec:
    base_page: int
    pages: int


@dataclass
class FunctionSpec:
    name: str
    rva: int
    code: bytes
    unwind: Optional[bytes] = None
    export: bool = True
    chain: Optional[str] = None        # the primary function this one's unwind info is chained to


@dataclass
class ModuleSpec:
    name: str
    base: int
    size: int
    timestamp: int
    path: str
    pdb_guid: str
    pdb_age: int
    functions: List[FunctionSpec] = field(default_factory=list)
    data_symbols: Dict[str, int] = field(default_factory=dict)   # name -> rva in .data
    data_size: int = PAGE
    pdb_name: str = ""                 # CodeView PDB name; "" = <image stem>.pdb (ntkrnlmp.pdb for the kernel)
    symbols: bool = True               # False: no PDB and no ISF table (a third-party driver without symbols)


@dataclass
class RegionSpec:
    va: int
    data: bytes
    pa: Optional[int] = None       # place at this physical address instead of allocating
    present: bool = True           # False: mapped in the page tables but the page is left out of the dump


@dataclass
class LargePageSpec:
    va: int
    pa: int
    size: int                      # 2 MB or 1 GB


@dataclass
class StackFrameSpec:
    """One frame of the crashing thread's stack (``stack[n]``, frame 0 first), resolved to an address."""
    path: str                          # "stack[2]", for errors
    module: Optional[ModuleSpec]       # None: an "address" frame, in no module
    rva: int                           # the frame's rip (a return address above frame 0) as an image RVA; the
    #                                    address itself for a frame in no module
    name: str                          # as a debugger shows it: nt!KiPageFault+0x1a, dnelwf64+0x3243
    function: Optional[FunctionSpec] = None      # the spec function containing rva, if any
    registers: Dict[str, int] = field(default_factory=dict)
    error_code: int = 0                # what the processor pushes when this frame is a trap handler
    epilog: bool = False               # frame 0 / an interrupted frame stopped inside its epilog
    register_refs: Dict[str, str] = field(default_factory=dict)   # registers given as references ("@seed"),
    #                                    resolved by the builder once the nbl section's addresses are known

    @property
    def address(self) -> int:
        return self.rva if self.module is None else self.module.base + self.rva


@dataclass
class ScenarioSpec:
    name: str
    summary: str
    build: int
    major_version: int
    processors: int
    product_type: int
    suite_mask: int
    system_time: int
    uptime_100ns: int
    bugcheck_code: int
    bugcheck_parameters: List[int]
    runs: List[RunSpec]
    kernel: ModuleSpec
    modules: List[ModuleSpec]
    regions: List[RegionSpec]
    large_pages: List[LargePageSpec]
    context: Dict[str, int]
    pool_base: int
    pfn_database: int
    raw: Dict[str, Any] = field(default_factory=dict)
    stack: List[StackFrameSpec] = field(default_factory=list)
    pool: Any = None                     # scenarios.pool.PoolSpec when the spec has a "pool" section
    nbl: Any = None                      # scenarios.nbl.NblSpec when the spec has an "nbl" section


_GUID_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
_PDB_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.pdb$")
# Image and PDB names become symbol-store paths (<name>/<key>/<name>): plain file names only, no "..".
_IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SYMBOL_NAME_RE = re.compile(r"^[\x21-\x7e]{1,1024}$")
_KERNEL_IMAGES = ("ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe")


def _module(obj: Dict[str, Any], path: str, default_guid_seed: int) -> ModuleSpec:
    name = obj.get("name")
    if not isinstance(name, str) or not _IMAGE_NAME_RE.match(name):
        raise SpecError("%s.name: expected an image file name like \"tcpip.sys\" (letters, digits, . _ -)" % path)
    base = _aligned(_kernel_va(parse_int(obj.get("base"), path + ".base"), path + ".base"), PAGE, path + ".base")
    size = _aligned(parse_int(obj.get("size", "0x10000"), path + ".size"), PAGE, path + ".size")
    if not PAGE * 3 <= size <= (64 << 20):
        raise SpecError("%s.size: 0x%x is outside 0x3000..64 MB" % (path, size))
    guid = str(obj.get("pdb_guid", "%032X" % (0x5059545249414745 * (default_guid_seed + 1) & ((1 << 128) - 1))))
    if not _GUID_RE.match(guid):
        raise SpecError("%s.pdb_guid: expected 32 hex digits" % path)
    functions = []
    for i, f in enumerate(_list(obj.get("functions", []), path + ".functions")):
        fpath = "%s.functions[%d]" % (path, i)
        f = _obj(f, fpath)
        fname = f.get("name")
        if not isinstance(fname, str) or not _SYMBOL_NAME_RE.match(fname):
            raise SpecError("%s.name: expected a symbol name (printable ASCII, no spaces)" % fpath)
        code = parse_data(f, fpath) if any(k in f for k in ("hex", "fill", "size")) else b"\xc3"
        unwind = parse_hex_bytes(f["unwind"], fpath + ".unwind") if "unwind" in f else None
        chain = f.get("chain")
        if chain is not None and (not isinstance(chain, str) or not _SYMBOL_NAME_RE.match(chain)):
            raise SpecError("%s.chain: expected the name of the primary function of the module" % fpath)
        functions.append(FunctionSpec(fname, parse_int(f.get("rva"), fpath + ".rva"), code, unwind,
                                      bool(f.get("export", True)), chain))
    _check_chains(functions, path)
    pdb_name = obj.get("pdb_name", "ntkrnlmp.pdb" if name.lower() in _KERNEL_IMAGES else "")
    if not isinstance(pdb_name, str) or (pdb_name and not _PDB_NAME_RE.match(pdb_name)):
        raise SpecError("%s.pdb_name: expected a file name like \"tcpip.pdb\"" % path)
    symbols = obj.get("symbols", True)
    if not isinstance(symbols, bool):
        raise SpecError("%s.symbols: expected true or false" % path)
    if not symbols and path == "kernel":
        raise SpecError("kernel.symbols: the kernel's symbols carry the types the builder lays out; they cannot be"
                        " left out")
    data_symbols = {}
    for sname, rva in _obj(obj.get("data_symbols", {}), path + ".data_symbols").items():
        spath = "%s.data_symbols.%s" % (path, sname)
        if not _SYMBOL_NAME_RE.match(sname):
            raise SpecError("%s: a symbol name is printable ASCII without spaces" % spath)
        value = data_symbols[sname] = parse_int(rva, spath)
        if not PAGE <= value < size:        # the PDB records a public as section:offset
            raise SpecError("%s: rva 0x%x is outside the image's sections (0x1000..0x%x)" % (spath, value, size))
    return ModuleSpec(
        name=name, base=base, size=size,
        timestamp=parse_int(obj.get("timestamp", 0x5F000000 + default_guid_seed), path + ".timestamp") & 0xFFFFFFFF,
        path=str(obj.get("path", "\\SystemRoot\\System32\\drivers\\" + name)),
        pdb_guid=guid.upper(), pdb_age=parse_int(obj.get("pdb_age", 1), path + ".pdb_age"),
        functions=functions, data_symbols=data_symbols, pdb_name=pdb_name, symbols=symbols,
        data_size=_aligned(parse_int(obj.get("data_size", PAGE), path + ".data_size"), PAGE, path + ".data_size"))


def _check_chains(functions: List[FunctionSpec], path: str) -> None:
    """``chain`` names another function of the module; chains end at a function without one."""
    by_name = {f.name: f for f in functions}
    for i, f in enumerate(functions):
        seen = {f.name}
        current = f
        while current.chain is not None:
            parent = by_name.get(current.chain)
            if parent is None:
                raise SpecError("%s.functions[%d].chain: the module has no function %r" % (path, i, current.chain))
            if parent.name in seen:
                raise SpecError("%s.functions[%d].chain: the chain of %s loops back to %s"
                                % (path, i, f.name, parent.name))
            seen.add(parent.name)
            current = parent


def effective_pdb_name(mod: ModuleSpec) -> str:
    """The CodeView PDB name of a module: its ``pdb_name`` or ``<image stem>.pdb``."""
    return mod.pdb_name or (mod.name.rsplit(".", 1)[0] if "." in mod.name else mod.name) + ".pdb"


def _check_symbol_store_keys(mods: List[ModuleSpec]) -> None:
    """Two modules must not share a symbol-store file: one would overwrite the other's PDB or image."""
    pdbs: Dict[Tuple[str, str, int], str] = {}
    images: Dict[Tuple[str, int, int], str] = {}
    for mod in mods:
        pdb_key = (effective_pdb_name(mod).lower(), mod.pdb_guid, mod.pdb_age)
        image_key = (mod.name.lower(), mod.timestamp, mod.size)
        for table, key, what in ((pdbs, pdb_key, "PDB name, GUID and age"),
                                 (images, image_key, "image name, timestamp and size")):
            if key in table:
                raise SpecError("modules: %s and %s have the same %s (one symbol-store entry)"
                                % (table[key], mod.name, what))
            table[key] = mod.name


_FRAME_REGISTERS = ("rax", "rcx", "rdx", "rbx", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
                    "r14", "r15")


def debugger_name(mod: ModuleSpec, kernel: bool) -> str:
    """The module name a debugger prints in ``module!symbol``: nt for the kernel, else the image stem."""
    return "nt" if kernel else (mod.name.rsplit(".", 1)[0] if "." in mod.name else mod.name)


def modules_by_name(kernel: ModuleSpec, modules: List[ModuleSpec]) -> Dict[str, ModuleSpec]:
    """Every module under its lower-case image name and its debugger name (``nt``, ``ndis``): how a spec's
    ``module!symbol`` references name them."""
    by_name: Dict[str, ModuleSpec] = {}
    for mod in [kernel] + modules:
        by_name.setdefault(mod.name.lower(), mod)
        by_name.setdefault(debugger_name(mod, mod is kernel).lower(), mod)
    return by_name


EXPORT_REACH = 0x10000                 # how far past the last export an export still names addresses


def shown_function(mod: ModuleSpec, rva: int) -> Optional[FunctionSpec]:
    """The function a debugger names the address ``mod.base + rva`` after, or None (``module+0xrva``).

    With symbols, the spec function containing ``rva``. Without (``"symbols": false``) only the image's
    exports have names, and an export names the addresses from its start up to the next export (or
    ``EXPORT_REACH`` bytes past the last one): what pytriage's symbolizer and the debugger show.
    """
    if mod.symbols:
        return next((f for f in mod.functions if f.rva <= rva < f.rva + len(f.code)), None)
    exports = sorted((f for f in mod.functions if f.export), key=lambda f: f.rva)
    below = [f for f in exports if f.rva <= rva]
    if not below:
        return None
    above = [f.rva for f in exports if f.rva > rva]
    return below[-1] if rva < (above[0] if above else below[-1].rva + EXPORT_REACH) else None


def shown_name(mod: ModuleSpec, kernel: bool, rva: int) -> str:
    """``module!Function+0xoff`` (or ``module+0xrva``) as a debugger prints the address ``mod.base + rva``."""
    stem = debugger_name(mod, kernel)
    function = shown_function(mod, rva)
    if function is None:
        return "%s+0x%x" % (stem, rva)
    disp = rva - function.rva
    return "%s!%s%s" % (stem, function.name, "+0x%x" % disp if disp else "")


def _stack(value: Any, kernel: ModuleSpec, modules: List[ModuleSpec]) -> List[StackFrameSpec]:
    """``stack``: frames innermost first, each ``{"function": "mod!Name", "offset"}``, ``{"module", "offset"}`` or
    ``{"address"}`` (in no module)."""
    by_name = modules_by_name(kernel, modules)
    frames = []
    for i, raw in enumerate(_list(value, "stack")):
        path = "stack[%d]" % i
        raw = _obj(raw, path)
        unknown = set(raw) - {"function", "module", "address", "offset", "registers", "error_code", "epilog"}
        if unknown:
            raise SpecError("%s: unknown key(s) %s" % (path, ", ".join(sorted(unknown))))
        if "address" in raw:
            frames.append(_address_frame(raw, path, [kernel] + modules))
            continue
        offset = parse_int(raw.get("offset", 0), path + ".offset")
        if offset < 0:
            raise SpecError("%s.offset: must not be negative" % path)
        if ("function" in raw) == ("module" in raw):
            raise SpecError("%s: give either \"function\": \"module!Name\" or \"module\" (offset = RVA), or an "
                            "\"address\" in no module" % path)
        where = str(raw.get("function", raw.get("module")))
        mod_name, _, func_name = where.partition("!")
        mod = by_name.get(mod_name.lower())
        if mod is None:
            raise SpecError("%s: no module %r in the spec (use its image name or nt)" % (path, mod_name))
        function = None
        if "function" in raw:
            function = next((f for f in mod.functions if f.name == func_name), None)
            if function is None:
                raise SpecError("%s.function: %s has no function %r" % (path, mod.name, func_name))
            if offset >= len(function.code):
                raise SpecError("%s.offset: 0x%x is past the end of %s (0x%x bytes)"
                                % (path, offset, func_name, len(function.code)))
            rva = function.rva + offset
        else:
            rva = offset
            if not PAGE <= rva < mod.size:
                raise SpecError("%s.offset: rva 0x%x is outside %s's sections (0x1000..0x%x)"
                                % (path, rva, mod.name, mod.size))
            function = next((f for f in mod.functions if f.rva <= rva < f.rva + len(f.code)), None)
        name = shown_name(mod, mod is kernel, rva)
        registers, refs = _frame_registers(raw, path)
        epilog = raw.get("epilog", False)
        if not isinstance(epilog, bool):
            raise SpecError("%s.epilog: expected true or false" % path)
        frames.append(StackFrameSpec(path, mod, rva, name, function, registers,
                                     parse_int(raw.get("error_code", 0), path + ".error_code"), epilog, refs))
    if not frames:
        raise SpecError("stack: at least one frame is needed (or leave the key out)")
    return frames


def _frame_registers(raw: Dict[str, Any], path: str) -> Tuple[Dict[str, int], Dict[str, str]]:
    """A frame's ``registers``: numbers, and references ("@id+0x18" into the nbl section, "module!symbol")
    kept as text, since those addresses exist only once the builder has placed the section."""
    from pytriage.scenarios.nbl import reference_kind  # nbl.py uses this module's parsers

    registers, refs = {}, {}
    for reg, val in _obj(raw.get("registers", {}), path + ".registers").items():
        rpath = "%s.registers.%s" % (path, reg)
        if str(reg).lower() not in _FRAME_REGISTERS:
            raise SpecError("%s: not a general register a frame can set (rax .. r15, not rsp)" % rpath)
        kind = reference_kind(val)
        if kind == "$rsp":
            raise SpecError("%s: $rsp is where the stack ends up, not known while its frames are laid out" % rpath)
        if kind is not None:
            refs[str(reg).lower()] = str(val)
        else:
            registers[str(reg).lower()] = parse_int(val, rpath) & ((1 << 64) - 1)
    return registers, refs


def k_call_site(address: int) -> str:
    """An address in no module as `k` prints it in the Call Site column: ``0x1``, ``0x00000032`00360035``."""
    return "0x%x" % address if address >> 32 == 0 else "0x%08x`%08x" % (address >> 32, address & 0xFFFFFFFF)


def _address_frame(raw: Dict[str, Any], path: str, mods: List[ModuleSpec]) -> StackFrameSpec:
    """``{"address": ...}``: a frame in no module, where a call through a corrupt function pointer went (the
    stack planner accepts it only as an interrupted frame: a leaf whose return address is at its rsp)."""
    for key in ("offset", "epilog", "error_code", "function", "module"):
        if key in raw:
            raise SpecError("%s.%s: an \"address\" frame is in no module and no function" % (path, key))
    address = parse_int(raw["address"], path + ".address") & ((1 << 64) - 1)
    for mod in mods:
        if mod.base <= address < mod.base + mod.size:
            raise SpecError("%s.address: 0x%x is inside %s (name the frame with \"function\" or \"module\")"
                            % (path, address, mod.name))
    registers, refs = _frame_registers(raw, path)
    return StackFrameSpec(path, None, address, k_call_site(address), None, registers, register_refs=refs)


def parse_spec(doc: Any, source: str = "spec") -> ScenarioSpec:
    """Validate a decoded JSON document and return the typed spec."""
    doc = _obj(doc, source)
    os_ = _obj(doc.get("os", {}), "os")
    bug = _obj(doc.get("bugcheck", {}), "bugcheck")
    params = [parse_int(p, "bugcheck.parameters[%d]" % i) for i, p in enumerate(_list(bug.get("parameters", [0] * 4),
                                                                                        "bugcheck.parameters"))]
    if len(params) != 4:
        raise SpecError("bugcheck.parameters: expected 4 values, got %d" % len(params))
    runs = []
    for i, r in enumerate(_list(_obj(doc.get("physical_memory", {}), "physical_memory").get("runs", []),
                                "physical_memory.runs")):
        rpath = "physical_memory.runs[%d]" % i
        r = _obj(r, rpath)
        base = _aligned(parse_int(r.get("base"), rpath + ".base"), PAGE, rpath + ".base")
        size = _aligned(parse_int(r.get("size"), rpath + ".size"), PAGE, rpath + ".size")
        if size <= 0:
            raise SpecError("%s.size: must be positive" % rpath)
        runs.append(RunSpec(base // PAGE, size // PAGE))
    if not runs:
        raise SpecError("physical_memory.runs: at least one run is needed")
    if len(runs) > 43:
        raise SpecError("physical_memory.runs: at most 43 runs fit in DUMP_HEADER64")
    ordered = sorted(runs, key=lambda r: r.base_page)
    for a, b in zip(ordered, ordered[1:]):
        if a.base_page + a.pages > b.base_page:
            raise SpecError("physical_memory.runs: runs overlap at PFN 0x%x" % b.base_page)
    kernel = _module(_obj(doc.get("kernel", {"name": "ntoskrnl.exe", "base": "0xfffff80470000000"}), "kernel"),
                     "kernel", 0)
    if "path" not in doc.get("kernel", {}):
        kernel.path = "\\SystemRoot\\system32\\" + kernel.name
    modules = [_module(_obj(m, "modules[%d]" % i), "modules[%d]" % i, i + 1)
               for i, m in enumerate(_list(doc.get("modules", []), "modules"))]
    _check_symbol_store_keys([kernel] + modules)
    spans = sorted([(kernel.base, kernel.size, "kernel")] + [(m.base, m.size, m.name) for m in modules])
    for (a, asz, an), (b, _bsz, bn) in zip(spans, spans[1:]):
        if a + asz > b:
            raise SpecError("modules: %s and %s overlap" % (an, bn))
    regions = []
    for i, reg in enumerate(_list(doc.get("memory", []), "memory")):
        rpath = "memory[%d]" % i
        reg = _obj(reg, rpath)
        pa = reg.get("pa")
        regions.append(RegionSpec(
            va=_kernel_va(parse_int(reg.get("va"), rpath + ".va"), rpath + ".va"), data=parse_data(reg, rpath),
            pa=None if pa is None else _aligned(parse_int(pa, rpath + ".pa"), PAGE, rpath + ".pa"),
            present=bool(reg.get("present", True))))
    larges = []
    for i, lp in enumerate(_list(doc.get("large_pages", []), "large_pages")):
        lpath = "large_pages[%d]" % i
        lp = _obj(lp, lpath)
        size = parse_int(lp.get("size"), lpath + ".size")
        if size not in (1 << 21, 1 << 30):
            raise SpecError("%s.size: large pages are 2M or 1G" % lpath)
        larges.append(LargePageSpec(
            va=_aligned(_kernel_va(parse_int(lp.get("va"), lpath + ".va"), lpath + ".va"), size, lpath + ".va"),
            pa=_aligned(parse_int(lp.get("pa"), lpath + ".pa"), size, lpath + ".pa"), size=size))
    context = {str(k).lower(): parse_int(v, "context.%s" % k)
               for k, v in _obj(doc.get("context", {}), "context").items()}
    return ScenarioSpec(
        name=str(doc.get("name", "scenario")), summary=str(doc.get("summary", "")),
        build=parse_int(os_.get("build", 19041), "os.build"),
        major_version=parse_int(os_.get("major_version", 15), "os.major_version"),
        processors=parse_int(os_.get("processors", 1), "os.processors"),
        product_type=parse_int(os_.get("product_type", 1), "os.product_type"),
        suite_mask=parse_int(os_.get("suite_mask", 0x110), "os.suite_mask"),
        system_time=parse_int(os_.get("system_time", "0x01d707f23dbb3399"), "os.system_time"),
        uptime_100ns=parse_int(os_.get("uptime_100ns", 37470697), "os.uptime_100ns"),
        bugcheck_code=parse_int(bug.get("code", 0), "bugcheck.code") & 0xFFFFFFFF,
        bugcheck_parameters=[p & 0xFFFFFFFFFFFFFFFF for p in params],
        runs=runs, kernel=kernel, modules=modules, regions=regions, large_pages=larges, context=context,
        pool_base=_kernel_va(parse_int(doc.get("pool_base", "0xffffc08be0000000"), "pool_base"), "pool_base"),
        pfn_database=parse_int(doc.get("pfn_database", "0xffffe70000000000"), "pfn_database"),
        raw=doc, stack=_stack(doc["stack"], kernel, modules) if "stack" in doc else [],
        pool=_pool(doc.get("pool")), nbl=_nbl(doc.get("nbl")))


def _pool(value: Any) -> Any:
    from pytriage.scenarios.pool import parse_pool  # pool.py uses this module's parsers

    return parse_pool(value)


def _nbl(value: Any) -> Any:
    from pytriage.scenarios.nbl import parse_nbl  # nbl.py uses this module's parsers

    return parse_nbl(value)


def load_spec(path: str) -> ScenarioSpec:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise SpecError("cannot read scenario spec %s: %s" % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise SpecError("%s is not valid JSON: %s" % (path, exc)) from None
    return parse_spec(doc, path)
