"""Each processor's register context at the crash, the way the debugger finds it (KDBG -> KPRCB).

Why: the dump header holds one CONTEXT (on a triage dump, the faulting thread's; on others, whatever the
writer chose), but WinDbg's ``r`` and ``k`` on a kernel dump start from the bugchecking processor's
``KPRCB.Context``, and ``~Ns`` switches to processor N. KDDEBUGGER_DATA64 ("KDBG") gives
``KiProcessorBlock`` (an array of KPRCB pointers) and ``OffsetPrcbContext`` (where the CONTEXT pointer
sits in a KPRCB). A triage dump keeps only the crashing processor's KPRCB (a copy at ``PrcbOffset``)
and a decoded KDBG copy; full and bitmap dumps keep everything in memory, but there the KDBG may still be
encoded (its ``OwnerTag`` is not ``KDBG``): then we say so instead of reading garbage.
"""

import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from pytriage.dump import structs as S
from pytriage.dump.context import parse_context
from pytriage.errors import PytriageError, format_address

KDBG_OWNER_TAG = 0x10                  # DBGKD_DEBUG_DATA_HEADER64.OwnerTag: b"KDBG"
KDBG_KI_PROCESSOR_BLOCK = 0x218        # pointer to KiProcessorBlock[]
KDBG_OFFSET_PRCB_CONTEXT = 0x338       # USHORT: KPRCB.Context (pointer to the CONTEXT)
KDBG_OFFSET_PRCB_NUMBER = 0x2BE        # USHORT: KPRCB.Number
KDBG_OFFSET_PRCB_CURRENT_THREAD = 0x2B4  # USHORT: KPRCB.CurrentThread
KDBG_READ_SIZE = 0x380                 # the Windows 10 KDDEBUGGER_DATA64 (the header says how much is valid)
KDBG_MIN_SIZE = KDBG_OFFSET_PRCB_CONTEXT + 2
MAX_PROCESSORS = 2048


@dataclass
class ProcessorContext:
    """Processor ``number``'s KPRCB and the registers at ``KPRCB.Context`` (or why they are missing)."""
    number: int
    prcb: Optional[int]
    context_va: Optional[int]
    registers: Optional[Dict[str, int]]
    error: str = ""
    current_thread: Optional[int] = None    # KPRCB.CurrentThread: the thread these registers belong to

    def to_json(self) -> Dict[str, object]:
        return {"processor": self.number,
                "prcb": None if self.prcb is None else "0x%016x" % self.prcb,
                "context": None if self.context_va is None else "0x%016x" % self.context_va,
                "registers": None if self.registers is None else
                {k: "0x%x" % v for k, v in self.registers.items()},
                "current_thread": None if self.current_thread is None else "0x%016x" % self.current_thread,
                "error": self.error or None}


def kdbg_fields(kdbg: bytes, where: str) -> Dict[str, int]:
    """KiProcessorBlock and OffsetPrcbContext from a KDDEBUGGER_DATA64 image; PytriageError when it is
    too short or still encoded."""
    if len(kdbg) < KDBG_MIN_SIZE:
        raise PytriageError("KDDEBUGGER_DATA64 %s is only 0x%x bytes" % (where, len(kdbg)))
    if kdbg[KDBG_OWNER_TAG:KDBG_OWNER_TAG + 4] != b"KDBG":
        raise PytriageError("KDDEBUGGER_DATA64 %s is encoded (no KDBG tag): processor contexts unknown" % where)
    return {"KiProcessorBlock": struct.unpack_from("<Q", kdbg, KDBG_KI_PROCESSOR_BLOCK)[0],
            "OffsetPrcbContext": struct.unpack_from("<H", kdbg, KDBG_OFFSET_PRCB_CONTEXT)[0],
            "OffsetPrcbNumber": struct.unpack_from("<H", kdbg, KDBG_OFFSET_PRCB_NUMBER)[0],
            "OffsetPrcbCurrentThread": struct.unpack_from("<H", kdbg, KDBG_OFFSET_PRCB_CURRENT_THREAD)[0]}


def context_from_prcb(read: Callable[[int, int], bytes], number: int, prcb: Optional[int],
                      prcb_bytes: Optional[bytes], offset_prcb_context: int,
                      offset_current_thread: Optional[int] = None) -> ProcessorContext:
    """The CONTEXT ``KPRCB.Context`` points to (and ``KPRCB.CurrentThread`` when its offset is given);
    ``prcb_bytes`` is a saved KPRCB copy (triage) or None."""
    def pointer(offset: int, name: str) -> int:
        if prcb_bytes is not None:
            if len(prcb_bytes) < offset + 8:
                raise PytriageError("the saved KPRCB copy is too short for KPRCB.%s" % name)
            return struct.unpack_from("<Q", prcb_bytes, offset)[0]
        return struct.unpack("<Q", read((prcb or 0) + offset, 8))[0]

    thread = None
    try:
        if offset_current_thread is not None:
            thread = pointer(offset_current_thread, "CurrentThread") or None
        context_va = pointer(offset_prcb_context, "Context")
        if not context_va:
            return ProcessorContext(number, prcb, None, None, "KPRCB.Context is NULL", thread)
        raw = read(context_va, S.CONTEXT_AMD64_SIZE)
        return ProcessorContext(number, prcb, context_va, parse_context(raw, "AMD64"), current_thread=thread)
    except PytriageError as exc:
        return ProcessorContext(number, prcb, None, None, str(exc), thread)


def processor_contexts(read: Callable[[int, int], bytes], kdbg: bytes, count: int,
                       where: str) -> List[ProcessorContext]:
    """Every processor's context from an in-memory KDBG (full and bitmap dumps)."""
    fields = kdbg_fields(kdbg, where)
    out = []
    for number in range(min(count, MAX_PROCESSORS)):
        try:
            prcb = struct.unpack("<Q", read(fields["KiProcessorBlock"] + 8 * number, 8))[0]
        except PytriageError as exc:
            out.append(ProcessorContext(number, None, None, None, "KiProcessorBlock[%d]: %s" % (number, exc)))
            continue
        if not prcb:
            out.append(ProcessorContext(number, None, None, None, "KiProcessorBlock[%d] is NULL" % number))
            continue
        out.append(context_from_prcb(read, number, prcb, None, fields["OffsetPrcbContext"],
                                     fields["OffsetPrcbCurrentThread"] or None))
    return out


def describe(ctx: ProcessorContext) -> str:
    if ctx.registers is None:
        return "processor %d: %s" % (ctx.number, ctx.error)
    prcb = "a copy saved in the dump" if ctx.prcb is None else format_address(ctx.prcb)
    return "processor %d: KPRCB %s, CONTEXT %s" % (ctx.number, prcb, format_address(ctx.context_va or 0))
