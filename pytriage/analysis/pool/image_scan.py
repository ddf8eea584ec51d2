"""Which loaded driver allocates with a tag: the tag as an instruction's immediate, confirmed with capstone.

A driver that calls ``ExAllocatePoolWithTag(type, size, 'Filt')`` carries the tag in its code as a
32-bit immediate, typically ``mov r8d, 746c6946h`` (41 B8 46 69 6C 74: the third argument of the x64
calling convention), or ``mov edx, imm32`` for ``ExFreePoolWithTag``, or a store to a stack slot or a
parameter structure (``NdisAllocateNetBufferListPool``'s PoolTag). Finding the four bytes is not
enough: they also occur in strings, tables and other instructions' displacements. Each hit is
confirmed by disassembling from a known instruction boundary, the start of the function that covers
it in ``.pdata``, and keeping it only when an instruction's immediate operand is exactly those four
bytes. Code no ``.pdata`` entry covers is decoded from the nearest start that yields such an
instruction, and marked unconfirmed. Only executable sections are searched.

The image bytes come from dump memory page by page through the target's cache, or from the image
file on the symbol path when the dump lacks them (``UnwindCatalog``). After the instruction the next
``call`` within a few instructions is resolved (through the import slot it reads) to name the
allocator, e.g. ``nt!ExAllocatePoolWithTag``.
"""

import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import capstone
from capstone import x86 as cs_x86

from pytriage.analysis.function_table import UnwindCatalog, read_sources
from pytriage.analysis.pool.header import PAGE, tag_bytes, tag_text
from pytriage.errors import MemoryReadError, PytriageError, UnwindError
from pytriage.target.model import Module

MAX_FUNCTION_BYTES = 0x20000          # linear sweep limit from a function start
FOLLOW_INSTRUCTIONS = 12              # how far after the tag to look for the allocator call
_ROLES = {
    "ecx": "1st argument (rcx)", "rcx": "1st argument (rcx)",
    "edx": "2nd argument (rdx): the Tag of ExFreePoolWithTag", "rdx": "2nd argument (rdx)",
    "r8d": "3rd argument (r8): the Tag of ExAllocatePoolWithTag / ExAllocatePool2 / NdisAllocateMemoryWithTag",
    "r8": "3rd argument (r8)",
    "r9d": "4th argument (r9)", "r9": "4th argument (r9)",
}


@dataclass
class TagUse:
    module: str                      # debugger name
    image: str                       # file name
    address: int
    rva: int
    symbol: str                      # module!symbol+0xoff
    instruction: str                 # "mov r8d, 0x746c6946"
    encoding: str                    # hex bytes
    role: str
    confirmed: bool                  # decoded from a .pdata function start
    call: Optional[str] = None       # the next call's target, symbolized

    def to_json(self) -> dict:
        return {"module": self.module, "image": self.image, "address": "0x%x" % self.address, "rva": "0x%x" % self.rva,
                "symbol": self.symbol, "instruction": self.instruction, "bytes": self.encoding, "role": self.role,
                "confirmed": self.confirmed, "call": self.call}


@dataclass
class TagScan:
    tag: int
    uses: List[TagUse] = field(default_factory=list)
    modules_scanned: int = 0
    bytes_scanned: int = 0
    raw_hits: int = 0
    rejected: int = 0
    skipped: List[str] = field(default_factory=list)     # "module: why"
    seconds: float = 0.0

    @property
    def tag_text(self) -> str:
        return tag_text(self.tag)


def _disassembler() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md


def _role(insn) -> str:
    if insn.mnemonic in ("cmp", "test"):
        return "compared with (a tag check, not an allocation)"
    if insn.mnemonic == "push":
        return "pushed"
    operands = insn.operands
    if operands and operands[0].type == cs_x86.X86_OP_REG:
        name = insn.reg_name(operands[0].reg)
        return _ROLES.get(name, "loaded into %s" % name)
    if operands and operands[0].type == cs_x86.X86_OP_MEM:
        return "stored to memory (a stack argument or a structure field such as a pool-parameters PoolTag)"
    return "immediate operand"


def _immediate_at(insn, hit: int) -> bool:
    """Is the instruction's immediate operand exactly the four bytes at address ``hit``?"""
    try:
        offset, size = insn.imm_offset, insn.imm_size
    except (AttributeError, capstone.CsError):
        return False
    return size == 4 and offset > 0 and insn.address + offset == hit


class TagScanner:
    """Scans loaded images for one tag; one instance per command (it caches decoded functions)."""

    def __init__(self, target, symbolizer, store=None, progress: Optional[Callable[[int, int, str, int], None]] = None):
        self.target = target
        self.symbolizer = symbolizer
        self.catalog = UnwindCatalog(target, store if store is not None else getattr(symbolizer, "store", None))
        self.progress = progress
        self.md = _disassembler()
        self._sweeps: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}

    def scan(self, tag: int, modules: Optional[List[Module]] = None) -> TagScan:
        started = time.perf_counter()
        result = TagScan(tag)
        needle = tag_bytes(tag)
        todo = list(modules if modules is not None else self.target.modules())
        for index, module in enumerate(todo):
            if self.progress is not None:
                self.progress(index, len(todo), module.debugger_name or module.name, result.bytes_scanned)
            self._scan_module(module, needle, result)
        result.seconds = time.perf_counter() - started
        result.uses.sort(key=lambda u: (not u.confirmed, u.module.lower(), u.rva))
        return result

    # -- one module -----------------------------------------------------------------------------------
    def _scan_module(self, module: Module, needle: bytes, result: TagScan) -> None:
        image = self.catalog.image(module)
        headers = image.headers
        if headers is None:
            result.skipped.append("%s: %s" % (module.debugger_name, image.reason or "no image headers"))
            return
        sections = [s for s in headers.sections if s.executable and s.size]
        if not sections:
            result.skipped.append("%s: no executable section" % module.debugger_name)
            return
        result.modules_scanned += 1
        missing = 0
        for section in sections:
            end = min(section.rva + section.size, module.size)
            tail = b""
            for rva in range(section.rva, end, PAGE):
                size = min(PAGE, end - rva)
                try:
                    chunk = read_sources(module, image.sources, rva, size)
                except (UnwindError, MemoryReadError):
                    missing += 1
                    tail = b""
                    continue
                result.bytes_scanned += len(chunk)
                window = tail + chunk
                window_rva = rva - len(tail)
                position = window.find(needle)
                while position >= 0:
                    if position + len(needle) > len(tail):       # not already seen in the previous window
                        result.raw_hits += 1
                        use = self._confirm(module, image, window_rva + position)
                        if use is None:
                            result.rejected += 1
                        else:
                            result.uses.append(use)
                    position = window.find(needle, position + 1)
                tail = window[-(len(needle) - 1):]
        if missing:
            result.skipped.append("%s: %d code page(s) are neither in the dump nor in an image file on the symbol "
                                  "path" % (module.debugger_name, missing))

    # -- confirming a hit -----------------------------------------------------------------------------
    def _code(self, module: Module, image, rva: int, size: int) -> bytes:
        return read_sources(module, image.sources, rva, size)

    def _sweep(self, module: Module, image, begin: int, end: int) -> List[Tuple[int, int]]:
        key = (module.base, begin)
        cached = self._sweeps.get(key)
        if cached is None:
            code = self._code(module, image, begin, min(end - begin, MAX_FUNCTION_BYTES))
            cached = [(insn[0] - module.base, insn[1]) for insn in self.md.disasm_lite(code, module.base + begin)]
            self._sweeps[key] = cached
        return cached

    def _confirm(self, module: Module, image, hit_rva: int) -> Optional[TagUse]:
        starts: List[int] = []
        confirmed = False
        table = image.table
        function = None
        if table is not None:
            try:
                function = table.lookup(hit_rva)
            except UnwindError:
                function = None
        if function is not None:
            try:
                for rva, size in self._sweep(module, image, function.begin, function.end):
                    if rva <= hit_rva < rva + size:
                        starts = [rva]
                        confirmed = True
                        break
            except (UnwindError, MemoryReadError):
                starts = []
            if not starts:
                return None                     # inside a function, yet not on an instruction it decodes to
        else:
            starts = [hit_rva - k for k in range(1, 12) if hit_rva - k >= 0]
        for start in starts:
            try:
                code = self._code(module, image, start, min(15, module.size - start))
            except (UnwindError, MemoryReadError):
                continue
            insn = next(self.md.disasm(code, module.base + start, 1), None)
            if insn is None or not _immediate_at(insn, module.base + hit_rva):
                continue
            if insn.mnemonic not in ("mov", "push", "cmp", "test", "and", "or", "xor", "add", "sub", "lea"):
                continue
            return TagUse(module.debugger_name, module.name, module.base + start, start,
                          self.symbolizer.format(module.base + start) if self.symbolizer else
                          "%s+0x%x" % (module.debugger_name, start),
                          ("%s %s" % (insn.mnemonic, insn.op_str)).strip(), bytes(insn.bytes).hex(), _role(insn),
                          confirmed, self._next_call(module, image, start + insn.size))
        return None

    def _next_call(self, module: Module, image, rva: int) -> Optional[str]:
        try:
            code = self._code(module, image, rva, min(FOLLOW_INSTRUCTIONS * 15, module.size - rva))
        except (UnwindError, MemoryReadError):
            return None
        for insn in self.md.disasm(code, module.base + rva, FOLLOW_INSTRUCTIONS):
            if insn.mnemonic in ("ret", "jmp", "int3"):
                return None
            if insn.mnemonic != "call":
                continue
            operand = insn.operands[0] if insn.operands else None
            if operand is None:
                return None
            if operand.type == cs_x86.X86_OP_IMM:
                return self._name(operand.imm)
            if operand.type == cs_x86.X86_OP_MEM and operand.mem.base == cs_x86.X86_REG_RIP:
                slot = insn.address + insn.size + operand.mem.disp
                try:
                    pointer = struct.unpack("<Q", self.target.read(slot, 8))[0]
                except MemoryReadError:
                    return "[%s] (import slot not in the dump)" % self._name(slot)
                return self._name(pointer)
            return "%s (indirect)" % insn.op_str
        return None

    def _name(self, address: int) -> str:
        if self.symbolizer is None:
            return "0x%x" % address
        try:
            return self.symbolizer.format(address)
        except PytriageError:
            return "0x%x" % address
