"""`pytriage stack DUMP`: the crashing thread's call stack as WinDbg's `k` / `kn` prints it.

Columns ``Child-SP``, ``RetAddr``, ``Call Site`` (with ``-n`` a ``#`` column first, as `kn`), 64-bit
values split by a backtick, ``(TrapFrame @ ...)`` on a trap handler's frame. A frame found by scanning
the stack instead of unwinding is marked ``[scanned]`` (``[scanned, call not verified]`` when the code
before its return address was not available); a walk that did not reach the outermost frame ends with
a ``Stopped:`` line, and what the walk had to work around follows as ``Note:`` lines.
"""

from typing import Dict, List, Optional, Tuple

from pytriage.analysis.stack_walk import SCANNED, TRAP_SEARCH, StackFrame, StackWalk
from pytriage.analysis.trap_frame import read_trap_frame, trap_frame_layout, trap_frame_problem
from pytriage.dump.context import parse_context
from pytriage.errors import PytriageError, format_address

SCHEMA = "pytriage.stack/1"
CONTEXT_AMD64_SIZE = 0x4D0
UNKNOWN = "????????`????????"


def context_at(target, address: int) -> Dict[str, int]:
    """The x64 CONTEXT record at ``address`` (WinDbg's ``.cxr``), e.g. a 0x7E bugcheck's parameter 4."""
    return parse_context(target.read(address, CONTEXT_AMD64_SIZE), "AMD64")


def processor_context(target, number: int) -> Dict[str, int]:
    """Processor ``number``'s ``KPRCB.Context`` registers (WinDbg ``~Ns``), or why they are not there."""
    contexts = target.processor_contexts()
    for ctx in contexts:
        if ctx.number == number:
            if ctx.registers is None:
                raise PytriageError("processor %d: %s" % (number, ctx.error))
            return ctx.registers
    have = ", ".join(str(c.number) for c in contexts) or "none"
    raise PytriageError("processor %d: this dump has contexts for processor(s) %s" % (number, have))


def trap_context(target, address: int, symbolizer=None) -> Dict[str, int]:
    """The interrupted registers a ``_KTRAP_FRAME`` at ``address`` holds (WinDbg's ``.trap``): rip, rsp,
    rbp, the volatile registers; a frame that does not look like a trap frame is refused, not guessed."""
    regs = read_trap_frame(target, address, trap_frame_layout(symbolizer))
    problem = trap_frame_problem(regs, address)
    if problem:
        raise PytriageError("%s does not look like a _KTRAP_FRAME: %s" % (format_address(address), problem))
    return regs


def start_context(target, rip: Optional[int], rsp: Optional[int], rbp: Optional[int],
                  cxr: Optional[int], processor: Optional[int] = None, trap: Optional[int] = None,
                  symbolizer=None, thread: Optional[int] = None) -> Tuple[Dict[str, int], str]:
    """The registers a walk starts from and how to name that start."""
    if sum(x is not None for x in (rip, cxr, processor, trap, thread)) > 1:
        raise PytriageError("give one start: --cxr, --trap, --processor, --thread or --rip/--rsp")
    if thread is not None:
        if rsp is not None or rbp is not None:
            raise PytriageError("--thread starts from the thread's saved state: no --rsp/--rbp with it")
        start = target.thread_start(thread)
        return start.registers, start.source
    if processor is not None:
        if rsp is not None:
            raise PytriageError("--processor starts from that processor's context: no --rsp with it")
        return processor_context(target, processor), "processor %d (KPRCB.Context)" % processor
    if trap is not None:
        if rsp is not None:
            raise PytriageError("--trap starts from the trap frame's registers: no --rsp with it")
        return trap_context(target, trap, symbolizer), "_KTRAP_FRAME at %s" % format_address(trap)
    if (rip is None) != (rsp is None):
        raise PytriageError("--rip and --rsp go together: give both, or neither")
    if rip is not None:
        regs = {"rip": rip, "rsp": rsp}
        if rbp is not None:
            regs["rbp"] = rbp
        return regs, "--rip/--rsp"
    if rbp is not None:
        raise PytriageError("--rbp needs --rip and --rsp")
    if cxr is not None:
        return context_at(target, cxr), "CONTEXT at %s" % format_address(cxr)
    return target.context_record(), "context record"


def _mark(frame: StackFrame) -> str:
    text = ""
    if frame.trap_frame is not None:
        text += " (TrapFrame @ %s)" % format_address(frame.trap_frame)
    if frame.found_by == SCANNED:
        verified = frame.scan is not None and frame.scan.evidence == "call"
        text += " [scanned]" if verified else " [scanned, call not verified]"
    elif frame.found_by == TRAP_SEARCH:
        text += " [trap frame search]"
    return text


def render_text(walk: StackWalk, numbers: bool = False) -> List[str]:
    lines = [(" # " if numbers else "") + "Child-SP          RetAddr           Call Site"]
    for frame in walk.frames:
        ret = UNKNOWN if frame.return_address is None else format_address(frame.return_address)
        lines.append("%s%s %s %s%s" % ("%02x " % frame.number if numbers else "", format_address(frame.child_sp),
                                       ret, frame.call_site, _mark(frame)))
    if not walk.complete:
        lines.append("")
        lines.append("Stopped: %s" % walk.stop_text)
    if walk.notes:
        lines.append("")
        lines.extend("Note: %s" % note for note in walk.notes)
    return lines


def to_json(walk: StackWalk) -> Dict[str, object]:
    record: Dict[str, object] = {"schema": SCHEMA}
    record.update(walk.to_json())
    return record
