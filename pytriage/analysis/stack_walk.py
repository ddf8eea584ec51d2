"""Walk a thread's kernel stack from a register context, frame by frame, as WinDbg's `k` does.

Each frame is unwound with its module's unwind data (``unwinder``), crossing interrupts and exceptions
through machine frames. When a module has no unwind data (its image is neither in the dump nor on the
symbol path), two fallbacks, each marked in the result:

- a known kernel trap handler (``nt!KiPageFault`` ...) built a ``_KTRAP_FRAME`` at its stack pointer:
  the walk continues from the interrupted context it holds (``trap-frame``);
- otherwise a bounded *scan* of the stack above the frame for a value that is a return address: it
  points into a known module just after a ``call`` instruction (``scanned``; never presented as
  certain). ``scan_unverified`` also accepts values whose preceding code is not in the dump and not on
  the symbol path (marked so), which finds more true frames and more false ones;
- and, below whatever the scan found, a *search for a ``_KTRAP_FRAME``* the kernel built on this stack
  (``trap-search``): its saved Rsp must be exactly where the processor pushed the machine frame, just
  above it, its SegCs/SegSs kernel selectors and its Rip in a module's code. A trap frame nearer than the
  scan's hit wins: the scan would otherwise skip over the interrupted frames, which are usually the
  crash's story (a bugcheck from an exception dispatch reaches the faulting driver this way). The frames
  between the two are unknown, and a note says so.

Everything is bounded: at most ``max_frames`` frames, ``max_read_bytes`` of target reads, ``scan_bytes``
per scan; the walk stops when the stack pointer does not grow, a (rip, rsp) pair repeats, the stack is
unreadable or an address is in no module, and says so in one line (``stop_text``), never a traceback.
"""

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

from pytriage.analysis.call_site import MAX_CALL_LENGTH, CallInstruction, call_ending_at
from pytriage.analysis.function_table import UnwindCatalog
from pytriage.analysis.image_reader import MemoryImage
from pytriage.analysis.trap_frame import (
    KERNEL_CS,
    TrapFrameLayout,
    is_trap_handler,
    parse_trap_frame,
    read_trap_frame,
    trap_frame_layout,
    trap_frame_problem,
)
from pytriage.analysis.unwinder import UnwindStep, unwind_frame
from pytriage.errors import MemoryReadError, PytriageError, UnwindError, format_address
from pytriage.target.model import Module

DEFAULT_MAX_FRAMES = 256
DEFAULT_MAX_READ_BYTES = 1 << 20
DEFAULT_SCAN_BYTES = 0x2000
MASK64 = 0xFFFFFFFFFFFFFFFF
GENERAL = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
           "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
NONVOLATILE = frozenset(("rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15"))
VOLATILE = frozenset(("rax", "rcx", "rdx", "r8", "r9", "r10", "r11"))
TRACKED = GENERAL + ("rip", "cs", "ss", "rflags")
# Calls that reach their callee through a dispatch thunk (CFG, retpoline): the call's target is the
# thunk, not the function of the frame below.
_DISPATCH_THUNKS = ("guard_dispatch_icall", "guard_xfg_dispatch_icall", "retpoline")

# how a frame was found (StackFrame.found_by)
CONTEXT, UNWIND, EPILOG, LEAF, MACHINE_FRAME, TRAP_FRAME, SCANNED, TRAP_SEARCH = (
    "context", "unwind", "epilog", "leaf", "machine-frame", "trap-frame", "scanned", "trap-search")
# Selectors an x64 Windows kernel runs with (KGDT64_R0_CODE, KGDT64_R0_DATA; 0 is what a processor may
# leave in SS in long mode).
KERNEL_SS = (0x18, 0x0)
# RFLAGS bits that read as fixed values: bit 1 is always 1; bits 3, 5, 15 and 22-63 are always 0.
_RFLAGS_ZERO = 0xFFFFFFFFFFC08028


@dataclass(frozen=True)
class WalkLimits:
    max_frames: int = DEFAULT_MAX_FRAMES
    max_read_bytes: int = DEFAULT_MAX_READ_BYTES
    scan_bytes: int = DEFAULT_SCAN_BYTES
    scan_unverified: bool = False


@dataclass
class ScanHit:
    """How a scanned frame's return address was found."""
    slot: int                          # stack address holding it
    value: int                         # the return address
    evidence: str                      # "call": a call instruction ends there; "code-unavailable"
    instruction: Optional[str] = None  # "call qword ptr [rax + 0x18]" at ...
    passed_over: int = 0               # values into module code rejected before this one

    def to_json(self) -> Dict[str, object]:
        return {"slot": _hex(self.slot), "evidence": self.evidence, "instruction": self.instruction,
                "passed_over": self.passed_over}


@dataclass
class StackFrame:
    number: int
    instruction_pointer: int
    child_sp: int
    found_by: str
    return_address: Optional[int] = None      # None: the walk stopped before reading it
    call_site: str = ""
    module: Optional[str] = None
    symbol: Optional[Dict[str, object]] = None
    trap_frame: Optional[int] = None
    scan: Optional[ScanHit] = None
    unwind_data: Optional[str] = None         # where this frame's unwind data came from
    registers: Dict[str, int] = field(default_factory=dict)   # the registers known in this frame

    @property
    def certain(self) -> bool:
        return self.found_by != SCANNED

    def to_json(self) -> Dict[str, object]:
        return {"number": self.number, "child_sp": _hex(self.child_sp),
                "return_address": None if self.return_address is None else _hex(self.return_address),
                "instruction_pointer": _hex(self.instruction_pointer), "call_site": self.call_site,
                "module": self.module, "symbol": self.symbol, "found_by": self.found_by,
                "scan": self.scan.to_json() if self.scan is not None else None,
                "trap_frame": None if self.trap_frame is None else _hex(self.trap_frame),
                "unwind_data": self.unwind_data,
                "registers": {name: _hex(self.registers[name]) for name in TRACKED if name in self.registers}}


@dataclass
class StackWalk:
    start_source: str
    start: Dict[str, int]
    frames: List[StackFrame] = field(default_factory=list)
    stop_reason: str = ""
    stop_text: str = ""
    notes: List[str] = field(default_factory=list)
    bytes_read: int = 0
    read_calls: int = 0
    trap_frame_layout: str = ""

    @property
    def complete(self) -> bool:
        """The walk reached the outermost frame (a return address of 0), as `k` does."""
        return self.stop_reason == "end"

    def to_json(self) -> Dict[str, object]:
        return {"start": {"source": self.start_source, "rip": _hex(self.start.get("rip", 0)),
                          "rsp": _hex(self.start.get("rsp", 0))},
                "frames": [f.to_json() for f in self.frames],
                "complete": self.complete, "stop": {"reason": self.stop_reason, "text": self.stop_text},
                "notes": list(self.notes),
                "reads": {"bytes": self.bytes_read, "calls": self.read_calls},
                "trap_frame_layout": self.trap_frame_layout}


def _hex(value: int) -> str:
    return "0x%016x" % (value & MASK64)


def k_address(value: int) -> str:
    """An address in no module, as `k` prints it in the Call Site column: ``0x1``, ``0xffffc08b`e0160000``."""
    value &= MASK64
    return "0x%x" % value if value >> 32 == 0 else "0x%08x`%08x" % (value >> 32, value & 0xFFFFFFFF)


def _passed(count: int) -> str:
    if not count:
        return ""
    return " (%d value%s pointed into module code, none after a verified call)" % (count, "" if count == 1 else "s")


def _nt_trap_handler(frame: StackFrame) -> bool:
    """Is the frame one of nt's trap handlers, the functions that save a whole KTRAP_FRAME?"""
    symbol = (frame.symbol or {}).get("symbol")
    return frame.module == "nt" and isinstance(symbol, str) and is_trap_handler(symbol)


class _Stop(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


class _Walker:
    def __init__(self, target, symbolizer, catalog: UnwindCatalog, limits: WalkLimits, walk: StackWalk) -> None:
        self.target = target
        self.symbolizer = symbolizer
        self.catalog = catalog
        self.limits = limits
        self.walk = walk
        self.bytes_at_start = target.stats.bytes_read
        self.calls_at_start = target.stats.read_calls
        self._layout: Optional[TrapFrameLayout] = None
        self._noted: Set[str] = set()
        self._interrupted = False     # step() continued from an interrupted context (a searched trap frame)

    # -- reads and names --------------------------------------------------------------------------------
    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.target.read(va & MASK64, 8), "little")

    def bytes_read(self) -> int:
        return self.target.stats.bytes_read - self.bytes_at_start

    def note(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self.walk.notes.append(text)

    def name(self, frame: StackFrame) -> None:
        address = frame.instruction_pointer
        module = self.target.module_at(address)
        frame.module = module.debugger_name if module is not None else None
        if self.symbolizer is not None and module is not None:
            try:
                resolution = self.symbolizer.resolve(address)
            except PytriageError as exc:          # a broken symbol file must not end the walk
                self.note("symbols for %s: %s" % (frame.module or format_address(address), exc))
            else:
                frame.call_site = str(resolution)
                frame.symbol = resolution.to_json()
                return
        frame.call_site = ("%s+0x%x" % (module.debugger_name, address - module.base) if module is not None
                           else k_address(address))

    def function_start(self, frame: StackFrame) -> Optional[int]:
        """Where the frame's function starts: its RUNTIME_FUNCTION, else full symbols (exports are too
        coarse to say)."""
        module = self.target.module_at(frame.instruction_pointer)
        table = self.catalog.table(module) if module is not None else None
        if table is not None:
            try:
                entry = table.lookup(frame.instruction_pointer - module.base)     # type: ignore[union-attr]
            except UnwindError:
                entry = None
            if entry is not None:
                return module.base + entry.begin                                   # type: ignore[union-attr]
        symbol = frame.symbol
        if symbol and symbol.get("symbol") and symbol.get("source") in ("pdb", "isf"):
            return frame.instruction_pointer - int(symbol["displacement"])          # type: ignore[arg-type]
        return None

    @property
    def layout(self) -> TrapFrameLayout:
        if self._layout is None:
            self._layout = trap_frame_layout(self.symbolizer)
            self.walk.trap_frame_layout = self._layout.source
        return self._layout

    # -- the walk ---------------------------------------------------------------------------------------
    def run(self, registers: Dict[str, int], known: FrozenSet[str]) -> None:
        seen: Dict[Tuple[int, int], int] = {}
        found_by, scan, exact = CONTEXT, None, True
        try:
            while True:
                rip, rsp = registers["rip"], registers["rsp"]
                number = len(self.walk.frames)
                if (rip, rsp) in seen:
                    raise _Stop("loop", "frame %02x would repeat frame %02x (rip %s, Child-SP %s): an unwind loop"
                                % (number, seen[(rip, rsp)], format_address(rip), format_address(rsp)))
                seen[(rip, rsp)] = number
                frame = StackFrame(number, rip, rsp, found_by, scan=scan,
                                   registers={k: v for k, v in registers.items() if k in known})
                self.name(frame)
                self.walk.frames.append(frame)
                if number + 1 >= self.limits.max_frames:
                    raise _Stop("max-frames", "stopped after %d frames (the frame limit)" % self.limits.max_frames)
                if self.bytes_read() > self.limits.max_read_bytes:
                    raise _Stop("read-budget", "stopped after reading %d bytes of the target (the read limit)"
                                % self.bytes_read())
                self._interrupted = False
                registers, known, found_by, scan = self.step(frame, registers, known, exact)
                exact = found_by in (MACHINE_FRAME, TRAP_FRAME) or self._interrupted
                if not exact and registers["rsp"] <= rsp:
                    raise _Stop("not-increasing", "frame %02x (%s): the stack pointer would go from %s to %s: it "
                                "must grow from one frame to its caller" % (number, frame.call_site,
                                                                            format_address(rsp),
                                                                            format_address(registers["rsp"])))
                frame.return_address = registers["rip"]
                if registers["rip"] == 0:
                    raise _Stop("end", "")
                if self.target.module_at(registers["rip"]) is None and found_by not in (MACHINE_FRAME, TRAP_FRAME):
                    # show the value, as k does, then stop: nothing is known about code outside the modules
                    self.walk.frames.append(StackFrame(number + 1, registers["rip"], registers["rsp"], found_by,
                                                       call_site=k_address(registers["rip"]), scan=scan,
                                                       registers={k: v for k, v in registers.items() if k in known}))
                    raise _Stop("no-module", "frame %02x: %s is in no loaded module (a corrupt return address, or "
                                "code outside the module list): the walk cannot go on"
                                % (number + 1, format_address(registers["rip"])))
        except _Stop as stop:
            self.walk.stop_reason, self.walk.stop_text = stop.reason, stop.text

    def step(self, frame: StackFrame, registers: Dict[str, int], known: FrozenSet[str], exact: bool):
        """The caller's registers, known registers, how it was found and the scan hit (if scanned)."""
        module = self.target.module_at(frame.instruction_pointer)
        if module is None:
            if exact:
                return self.outside_leaf(frame, registers, known)
            raise _Stop("no-module", "frame %02x: %s is in no loaded module: nothing to unwind with"
                        % (frame.number, format_address(frame.instruction_pointer)))
        image = self.catalog.image(module)
        if image.table is not None:
            try:
                result = unwind_frame(image.table, registers, known, exact, self.read_u64)
            except MemoryReadError as exc:
                raise _Stop("unreadable", "frame %02x (%s): the stack is not readable: %s"
                            % (frame.number, frame.call_site, exc)) from None
            except UnwindError as exc:
                self.note("frame %02x (%s): %s; scanning the stack instead" % (frame.number, frame.call_site, exc))
            else:
                frame.unwind_data = ", ".join(s.origin for s in image.table.used) or image.origin
                for source in image.table.used:
                    if not isinstance(source, MemoryImage):
                        self.note("%s: unwind data from the %s (not in the dump)" % (module.debugger_name,
                                                                                     source.origin))
                for text in result.notes:
                    self.note("frame %02x (%s): %s" % (frame.number, frame.call_site, text))
                return self.from_unwind(frame, result)
        else:
            self.note(image.reason)
        trapped = self.trap_frame_by_name(frame, registers, known)
        if trapped is not None:
            return trapped
        return self.scan(frame, registers)

    def outside_leaf(self, frame: StackFrame, registers: Dict[str, int], known: FrozenSet[str]):
        """An interrupted frame whose rip is in no module: a call through a garbage function pointer faulted
        fetching its first instruction, so the return address the call pushed is at rsp (a leaf), as
        WinDbg's k reads it. Only for exact contexts (a trap frame's), and only when that value returns into
        a module."""
        rsp = registers["rsp"]
        try:
            ret = self.read_u64(rsp)
        except MemoryReadError as exc:
            raise _Stop("unreadable", "frame %02x: the stack at %s is not readable: %s"
                        % (frame.number, format_address(rsp), exc)) from None
        if self.target.module_at(ret) is None:
            raise _Stop("no-module", "frame %02x: %s is in no loaded module, and the value at its stack pointer (%s) "
                        "is no return address into a module either: the walk cannot go on"
                        % (frame.number, format_address(frame.instruction_pointer), format_address(ret)))
        self.note("frame %02x: %s is in no loaded module (a call through a corrupt pointer?); unwound as a leaf: "
                  "the return address is at its stack pointer" % (frame.number,
                                                                    format_address(frame.instruction_pointer)))
        caller = dict(registers)
        caller["rip"], caller["rsp"] = ret, rsp + 8
        return caller, known, LEAF, None

    def from_unwind(self, frame: StackFrame, result: UnwindStep):
        method = {"unwind": UNWIND, "epilog": EPILOG, "leaf": LEAF, "machine-frame": MACHINE_FRAME}[result.method]
        if result.machine_frame is not None:
            frame.trap_frame = (result.machine_frame - self.layout.offsets["Rip"]) & MASK64
            if result.registers.get("cs", KERNEL_CS) & 3:
                raise _Stop("user-mode", "frame %02x (%s): the machine frame returns to user mode (cs %x): the "
                            "kernel stack ends here" % (frame.number, frame.call_site, result.registers["cs"]))
            return self._trap_volatiles(frame, result)
        return result.registers, result.known, method, None

    def _trap_volatiles(self, frame: StackFrame, result: UnwindStep):
        """An nt trap handler saved the interrupted code's volatile registers in its KTRAP_FRAME (what `.trap`
        shows): the interrupted frame gets them, not the values the handler's callees left. Other machine
        frames, and trap frames whose rip and rsp disagree with the machine frame, keep what unwinding gave."""
        registers, known = result.registers, result.known
        if not _nt_trap_handler(frame):
            return registers, known, MACHINE_FRAME, None
        try:
            trap = read_trap_frame(self.target, frame.trap_frame, self.layout)
        except MemoryReadError:
            return registers, known, MACHINE_FRAME, None
        if trap_frame_problem(trap, frame.trap_frame) is not None or trap.get("rip") != registers.get("rip") \
                or trap.get("rsp") != registers.get("rsp"):
            return registers, known, MACHINE_FRAME, None
        registers = dict(registers)
        registers.update({name: trap[name] for name in VOLATILE if name in trap})
        return registers, frozenset(known | VOLATILE), MACHINE_FRAME, None

    def trap_frame_by_name(self, frame: StackFrame, registers: Dict[str, int], known: FrozenSet[str]):
        """A kernel trap handler without unwind data: its KTRAP_FRAME is at its stack pointer."""
        if not _nt_trap_handler(frame):
            return None
        address = frame.child_sp
        try:
            trap = read_trap_frame(self.target, address, self.layout)
        except MemoryReadError as exc:
            self.note("frame %02x (%s): its trap frame at %s is not readable (%s)"
                      % (frame.number, frame.call_site, format_address(address), exc))
            return None
        problem = trap_frame_problem(trap, address)
        if problem is not None:
            self.note("frame %02x (%s): no trap frame at its stack pointer %s: %s"
                      % (frame.number, frame.call_site, format_address(address), problem))
            return None
        frame.trap_frame = address
        if trap["cs"] & 3:
            raise _Stop("user-mode", "frame %02x (%s): the trap frame at %s returns to user mode (cs %x): the "
                        "kernel stack ends here" % (frame.number, frame.call_site, format_address(address), trap["cs"]))
        regs = dict(registers)
        regs.update(trap)
        # The handler preserved the nonvolatile registers; KTRAP_FRAME holds rbp and the volatile ones.
        now_known = (known & NONVOLATILE) | VOLATILE | {"rip", "rsp", "rbp", "cs", "ss", "rflags"}
        return regs, frozenset(now_known), TRAP_FRAME, None

    # -- the scan ---------------------------------------------------------------------------------------
    def scan(self, frame: StackFrame, registers: Dict[str, int]):
        start = frame.child_sp
        end = start + self.limits.scan_bytes
        callee = (self.function_start(frame), frame.instruction_pointer)
        passed = 0
        slot = start
        hit: Optional[ScanHit] = None
        stop: Optional[_Stop] = None
        while slot < end:
            try:
                value = self.read_u64(slot)
            except MemoryReadError:
                stop = _Stop("unreadable", "frame %02x (%s): no unwind data, and the stack scan for its return "
                             "address reached unreadable memory at %s%s"
                             % (frame.number, frame.call_site, format_address(slot), _passed(passed)))
                break
            if value == frame.instruction_pointer and frame.found_by == SCANNED:
                # A scanned frame's own return address found again right above it: a stale copy (true
                # recursion from one call site would need unwind data to tell apart).
                passed += 1
                slot += 8
                continue
            hit, code_pointer = self.candidate(slot, value, callee)
            if hit is not None:
                hit.passed_over = passed
                break
            passed += code_pointer
            slot += 8
        else:
            stop = _Stop("scan-failed", "frame %02x (%s): no unwind data, and no return address in the 0x%x bytes "
                         "of stack above %s%s" % (frame.number, frame.call_site, self.limits.scan_bytes,
                                                  format_address(start), _passed(passed)))
        # A trap frame below the scan's hit (or below where the scan gave up) is nearer evidence.
        trapped = self.search_trap_frame(frame, registers, slot)
        if trapped is not None:
            return trapped
        if stop is not None:
            raise stop
        assert hit is not None
        if passed:
            self.note("frame %02x was found by scanning 0x%x bytes of stack above frame %02x, passing over "
                      "%d value%s into module code without a verified call before %s: frames may be "
                      "missing between the two" % (frame.number + 1, slot + 8 - start, frame.number, passed,
                                                   "" if passed == 1 else "s", "it" if passed == 1 else "them"))
        regs = dict(registers, rip=hit.value, rsp=(slot + 8) & MASK64)
        # After a scan nothing is known of the caller's other registers.
        return regs, frozenset(("rip", "rsp")), SCANNED, hit

    # -- the trap-frame search ----------------------------------------------------------------------------
    def search_trap_frame(self, frame: StackFrame, registers: Dict[str, int], limit: int):
        """The nearest ``_KTRAP_FRAME`` the kernel built on this stack between the frame's stack pointer and
        ``limit`` (where the scan found its candidate or gave up), or None.

        A processor interrupting kernel code without a stack switch pushes the machine frame at the
        interrupted RSP aligned down to 16 (then the error code, if any); the handler builds the rest of
        the trap frame below it. So the saved Rsp lies within 16 bytes above the trap frame's end: that,
        the kernel selectors, sane RFLAGS and a Rip in a module's code make a match. The handler called
        on with its stack pointer at the trap frame, so the value just below it is the handler's
        return address: a frame of its own when its symbol is a trap handler."""
        layout = self.layout
        size, rsp_at = layout.size, layout.offsets["Rsp"]
        start = (frame.child_sp + 7) & ~7 & MASK64
        span = self._readable_span(start, limit - start + size)
        address = start
        while address + size <= start + len(span):
            saved_rsp = int.from_bytes(span[address - start + rsp_at:address - start + rsp_at + 8], "little")
            if address + size <= saved_rsp <= address + size + 0x10:
                trap = parse_trap_frame(span[address - start:address - start + size], layout)
                found = self._trap_frame_match(frame, registers, address, trap)
                if found is not None:
                    return found
            address += 8
        return None

    def _readable_span(self, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start``, ending where the memory stops being readable."""
        out = bytearray()
        address = start
        while len(out) < length:
            chunk = min(length - len(out), 0x1000 - (address & 0xFFF))
            try:
                out += self.target.read(address, chunk)
            except MemoryReadError:
                break
            address += chunk
        return bytes(out)

    def _trap_frame_match(self, frame: StackFrame, registers: Dict[str, int], address: int,
                          trap: Dict[str, int]):
        if trap_frame_problem(trap, address) is not None or trap["cs"] != KERNEL_CS or trap["ss"] not in KERNEL_SS:
            return None
        if trap["rflags"] & _RFLAGS_ZERO or not trap["rflags"] & 2:
            return None
        module = self.target.module_at(trap["rip"])
        if module is None or self.catalog.image(module).is_executable(trap["rip"] - module.base) is False:
            return None
        distance = "0x%x bytes above frame %02x" % (address - frame.child_sp, frame.number)
        handler = self._trap_handler_return(address)
        if handler is not None:
            return_address, name = handler
            self.note("frame %02x (%s) was found through the _KTRAP_FRAME at %s on the stack, %s: frames "
                      "between the two may be missing" % (frame.number + 1, name, format_address(address),
                                                           distance))
            regs = dict(registers, rip=return_address, rsp=address)
            return regs, frozenset(("rip", "rsp")), TRAP_SEARCH, None
        self.note("frame %02x is the interrupted context of the _KTRAP_FRAME at %s on the stack, %s (the "
                  "handler that built it is not known): frames between the two may be missing"
                  % (frame.number + 1, format_address(address), distance))
        self._interrupted = True
        regs = dict(registers)
        regs.update(trap)
        return regs, frozenset(VOLATILE | {"rip", "rsp", "rbp", "cs", "ss", "rflags"}), TRAP_SEARCH, None

    def _trap_handler_return(self, trap_address: int) -> Optional[Tuple[int, str]]:
        """The return address just below the trap frame and its name, when it is in a kernel trap handler."""
        try:
            value = self.read_u64(trap_address - 8)
        except MemoryReadError:
            return None
        module = self.target.module_at(value)
        if module is None or module.debugger_name != "nt" or self.symbolizer is None:
            return None
        try:
            resolution = self.symbolizer.resolve(value)
        except PytriageError:
            return None
        if not resolution.symbol or not resolution.displacement or not is_trap_handler(resolution.symbol):
            return None
        return value, str(resolution)

    def candidate(self, slot: int, value: int, callee: Tuple[Optional[int], int]) -> Tuple[Optional[ScanHit], int]:
        """(hit or None, 1 if the value pointed into module code but was rejected)."""
        module = self.target.module_at(value)
        if module is None or value - module.base < 0x1000:
            return None, 0
        image = self.catalog.image(module)
        rva = value - module.base
        if image.is_executable(rva) is False:
            return None, 0
        code = self._code_before(module, rva)
        if code is None:
            if not self.limits.scan_unverified or image.is_executable(rva) is None:
                return None, 1
            if self._at_function_start(module, value, image):
                return None, 1
            return ScanHit(slot, value, "code-unavailable"), 0
        call = call_ending_at(code, value)
        if call is None or not self._plausible(call, callee):
            return None, 1
        return ScanHit(slot, value, "call", "%s at %s" % (call.text, format_address(call.address))), 0

    def _code_before(self, module: Module, rva: int) -> Optional[bytes]:
        for size in (MAX_CALL_LENGTH, min(MAX_CALL_LENGTH, (module.base + rva) & 0xFFF)):
            if size < 2:
                continue
            try:
                return self.catalog.read_code(module, rva - size, size)
            except UnwindError:
                continue
        return None

    def _at_function_start(self, module: Module, value: int, image) -> bool:
        if image.table is not None:
            try:
                entry = image.table.lookup(value - module.base)
            except UnwindError:
                entry = None
            if entry is not None and entry.begin == value - module.base:
                return True
        if self.symbolizer is not None:
            try:
                resolution = self.symbolizer.resolve(value)
            except PytriageError:
                return False
            return resolution.symbol is not None and resolution.displacement == 0
        return False

    def _plausible(self, call: CallInstruction, callee: Tuple[Optional[int], int]) -> bool:
        """A direct call must land in a module's code and reach the function of the frame below: its start
        when we know it, else an address at most 64 KB before that frame's instruction pointer (where its
        function can start), or a dispatch thunk (CFG ``guard_dispatch_icall``, retpolines, import jumps).
        Indirect calls cannot be checked further. This rejects most stale return addresses left in a
        frame's locals, and with them the true return addresses of calls made through thunks we cannot
        recognise (without symbols); tail calls can do the same."""
        if call.target is None:
            return True
        module = self.target.module_at(call.target)
        if module is None:
            return False
        if self.catalog.image(module).is_executable(call.target - module.base) is False:
            return False
        start, rip = callee
        if start is not None and call.target == start:
            return True
        if start is None and call.target <= rip < call.target + 0x10000:
            return True
        return self._is_thunk(call.target)

    def _is_thunk(self, address: int) -> bool:
        if self.symbolizer is not None:
            try:
                resolution = self.symbolizer.resolve(address)
            except PytriageError:
                resolution = None
            if resolution is not None and resolution.symbol and resolution.displacement == 0 and \
                    any(t in resolution.symbol for t in _DISPATCH_THUNKS):
                return True
        try:
            first = self.target.read(address, 2)
        except MemoryReadError:
            return False
        return first[0] in (0xE9, 0xEB) or first[:2] == b"\xff\x25" or (first[0] == 0x48 and first[1] == 0xFF)


def walk_stack(target, context: Dict[str, int], symbolizer=None, store=None, limits: Optional[WalkLimits] = None,
               source: str = "context record", catalog: Optional[UnwindCatalog] = None) -> StackWalk:
    """The call stack from ``context`` (``rip`` and ``rsp`` at least; other registers help frames that
    use a frame pointer). ``symbolizer`` names frames and gives ``_KTRAP_FRAME``; ``store`` (default:
    the symbolizer's) supplies image files. Never raises for what it finds on the stack: the result's
    ``stop_text`` and ``notes`` say what happened."""
    if "rip" not in context or "rsp" not in context:
        raise PytriageError("a stack walk needs rip and rsp; the context has %s" % ", ".join(sorted(context)))
    limits = limits or WalkLimits()
    if store is None and symbolizer is not None:
        store = getattr(symbolizer, "store", None)
    catalog = catalog or UnwindCatalog(target, store)
    registers = {name: int(context[name]) & MASK64 for name in TRACKED if name in context}
    walk = StackWalk(source, dict(registers))
    walker = _Walker(target, symbolizer, catalog, limits, walk)
    walker.run(registers, frozenset(registers))
    walk.bytes_read = walker.bytes_read()
    walk.read_calls = target.stats.read_calls - walker.calls_at_start
    return walk
