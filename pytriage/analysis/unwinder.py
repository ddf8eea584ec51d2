"""One step of x64 virtual unwinding: a frame's registers -> its caller's (RtlVirtualUnwind's rules).

From Microsoft's x64 exception-handling documentation:

1. Find the RUNTIME_FUNCTION covering the instruction pointer. None: a leaf function, which has not
   moved rsp; the return address is at [rsp].
2. If the instruction pointer is inside an epilog, run the rest of the epilog forward (``epilog``). This
   is checked for return addresses too, as Microsoft's unwinder does: a return address just before an
   epilog gives the same caller either way when the epilog matches the unwind codes, and the engine's
   answer when it does not.
3. Otherwise undo the prolog with the unwind codes, in array order (innermost operation first). Inside
   the prolog only the codes whose prolog offset is at or below ``rip - function start`` have run. The
   frame base for UWOP_SAVE_* offsets is the frame register minus its offset once UWOP_SET_FPREG has
   run, else rsp. A chained UNWIND_INFO (UNW_FLAG_CHAININFO) continues with the primary function's
   codes, all of which have run.
4. UWOP_PUSH_MACHFRAME: the caller's rip and rsp come from the machine frame the processor pushed (an
   interrupted frame, not a call: no return address). Otherwise pop the return address.

Return addresses of calling frames are looked up at ``return address - 1`` (the call instruction): a
call to a function that never returns can be the last instruction of its caller.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional

from pytriage.analysis.epilog import MAX_EPILOG_BYTES, parse_epilog, run_epilog
from pytriage.analysis.function_table import FunctionTable
from pytriage.analysis.unwind_codes import (
    REGISTERS,
    UWOP_ALLOC_LARGE,
    UWOP_ALLOC_SMALL,
    UWOP_PUSH_MACHFRAME,
    UWOP_PUSH_NONVOL,
    UWOP_SAVE_NONVOL,
    UWOP_SAVE_NONVOL_FAR,
    UWOP_SET_FPREG,
    RuntimeFunction,
)
from pytriage.errors import UnwindError

MASK64 = 0xFFFFFFFFFFFFFFFF
MACHINE_FRAME_RIP, MACHINE_FRAME_CS, MACHINE_FRAME_RFLAGS, MACHINE_FRAME_RSP, MACHINE_FRAME_SS = 0, 8, 0x10, 0x18, 0x20


@dataclass
class UnwindStep:
    """The caller's registers and how they were found."""
    registers: Dict[str, int]          # rip, rsp and every register the step could restore
    known: FrozenSet[str]              # registers whose values are reliable for the caller
    method: str                        # "unwind", "epilog", "leaf" or "machine-frame"
    function: Optional[RuntimeFunction] = None
    machine_frame: Optional[int] = None   # address of the machine frame (its RIP slot)
    notes: List[str] = field(default_factory=list)


def unwind_frame(table: FunctionTable, registers: Dict[str, int], known: FrozenSet[str], exact: bool,
                 read_u64: Callable[[int], int]) -> UnwindStep:
    """Unwind one frame of ``table.module``. ``exact``: the rip is where the frame stopped (frame 0, an
    interrupted frame), not a return address. ``read_u64`` reads the stack (``MemoryReadError`` passes
    through: the caller decides what an unreadable stack means); unwind data problems raise
    ``UnwindError``."""
    module = table.module
    rip, rsp = registers["rip"], registers["rsp"]
    rva = rip - module.base
    function = table.lookup(rva if exact else rva - 1)
    if function is None:
        regs = dict(registers, rip=read_u64(rsp), rsp=(rsp + 8) & MASK64)
        return UnwindStep(regs, known, "leaf")
    chain = table.chain(function)
    first = chain[0][1]
    offset = rva - function.begin
    in_prolog = 0 <= offset < first.prolog_size
    notes = []
    if not in_prolog and rva < function.end:
        try:
            steps = _epilog_at(table, function, chain, rip)
        except UnwindError as exc:
            steps = None
            notes.append("the code at the instruction pointer is not readable, so whether it is in an epilog "
                         "is not known; the unwind codes were applied (%s)" % exc)
        if steps is not None:
            for step in steps:
                if step.kind == "lea" and step.register not in known:
                    raise UnwindError("%s: the epilog at the instruction pointer restores rsp from %s, whose value "
                                      "is unknown here" % (module.debugger_name, step.register), rip)
            regs = run_epilog(steps, registers, read_u64)
            popped = {s.register for s in steps if s.kind == "pop"}
            return UnwindStep(regs, frozenset(known | popped | {"rip", "rsp"}), "epilog", function, notes=notes)
    regs = dict(registers)
    now_known = set(known)
    machine = None
    levels = [[c for c in info.codes if level > 0 or not in_prolog or c.prolog_offset <= offset]
              for level, (_entry, info) in enumerate(chain)]
    # Once UWOP_SET_FPREG has run (in the primary function, or in this fragment), save offsets are from
    # the frame register minus its offset at every level of the chain (they share the frame register).
    fp_established = any(c.op == UWOP_SET_FPREG for applied in levels for c in applied)
    for (_entry, info), applied in zip(chain, levels):
        frame_base = regs["rsp"]
        if info.frame_register and fp_established:
            name = REGISTERS[info.frame_register]
            if name not in now_known:
                raise UnwindError("%s: the function at rva 0x%x uses frame register %s, whose value is unknown "
                                  "here (a frame below was found by a stack scan)"
                                  % (module.debugger_name, function.begin, name), rip)
            frame_base = (regs[name] - info.frame_offset) & MASK64
        for code in applied:
            if code.op == UWOP_PUSH_NONVOL:
                regs[code.register] = read_u64(regs["rsp"])
                regs["rsp"] += 8
                now_known.add(code.register)
            elif code.op in (UWOP_ALLOC_SMALL, UWOP_ALLOC_LARGE):
                regs["rsp"] += code.value
            elif code.op == UWOP_SET_FPREG:
                regs["rsp"] = frame_base
            elif code.op in (UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR):
                regs[code.register] = read_u64((frame_base + code.value) & MASK64)
                now_known.add(code.register)
            elif code.op == UWOP_PUSH_MACHFRAME:
                machine = regs["rsp"] + (8 if code.info else 0)
                regs["rip"] = read_u64(machine + MACHINE_FRAME_RIP)
                regs["cs"] = read_u64(machine + MACHINE_FRAME_CS) & 0xFFFF
                regs["rflags"] = read_u64(machine + MACHINE_FRAME_RFLAGS) & 0xFFFFFFFF
                regs["ss"] = read_u64(machine + MACHINE_FRAME_SS) & 0xFFFF
                regs["rsp"] = read_u64(machine + MACHINE_FRAME_RSP)
            # UWOP_SAVE_XMM128(_FAR): XMM registers are not tracked
            regs["rsp"] &= MASK64
    if machine is not None:
        return UnwindStep(regs, frozenset(now_known | {"rip", "rsp"}), "machine-frame", function, machine, notes)
    regs["rip"] = read_u64(regs["rsp"])
    regs["rsp"] = (regs["rsp"] + 8) & MASK64
    return UnwindStep(regs, frozenset(now_known | {"rip", "rsp"}), "unwind", function, notes=notes)


def _epilog_at(table: FunctionTable, function: RuntimeFunction, chain, rip: int):
    """The epilog steps if ``rip`` is inside one of ``function``; a chained fragment's epilog must end in
    ``ret`` (it may jump back into its primary function, which is no tail call)."""
    chained = len(chain) > 1
    frame_register = chain[-1][1].frame_register or None
    rva = rip - table.module.base
    size = min(MAX_EPILOG_BYTES, max(1, function.end - rva))
    try:
        code = table.read(rva, size)
    except UnwindError:
        code = table.read(rva, min(size, 0x1000 - (rip & 0xFFF)))      # up to the end of the page
    base = table.module.base

    def inside(va: int) -> bool:
        return function.begin <= va - base < function.end

    steps = parse_epilog(code, rip, frame_register, inside)
    if steps is not None and chained and steps[-1].kind == "jmp":
        return None
    return steps
